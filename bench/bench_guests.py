"""Idle real UML guests under the standalone calendar: simulated seconds per wall second.

N guests each sleep S simulated seconds and power off, under ``ns3-uml calendar --clients
N``, in message mode and with shared memory. The baseline in the same run is S = 0 (boot and
power-off only): the difference is what the idle simulated time itself costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml.guest import GuestConfig, GuestProcess
from ns3_uml.kernel import ensure_kernel


def one_run(kernel: Path, n: int, sleep_s: int, shm: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as tmp:
        sock = Path(tmp) / "cal.sock"
        cal = subprocess.Popen(
            [sys.executable, "-m", "ns3_uml", "calendar", "--socket", str(sock), "--json",
             "--clients", str(n), "--connect-timeout", "300"] + ([] if shm else ["--no-shm"]),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
        )
        for line in cal.stderr:
            if "listening" in line:
                break
        guests = []
        wall = time.perf_counter()
        try:
            for i in range(n):
                cfg = GuestConfig(name=f"g{i}", client_id=i + 1, tt_socket=sock,
                                  workdir=Path(tmp) / f"g{i}",
                                  commands=[f"sleep {sleep_s}", "cat /proc/uptime"])
                g = GuestProcess(cfg, kernel=kernel)
                g.start()
                guests.append(g)
            for g in guests:
                if g.wait(timeout=600) != 0:
                    raise RuntimeError(f"guest failed: {g.console_log.read_text()[-2000:]}")
            out, err = cal.communicate(timeout=120)
            wall = time.perf_counter() - wall
            if cal.returncode != 0:
                raise RuntimeError(err)
            uptimes = [float(g.read_outputs()[1].stdout.split()[0]) for g in guests]
        finally:
            for g in guests:
                g.kill()
            if cal.poll() is None:
                cal.kill()
                cal.wait()
    summary = json.loads(out)
    return {
        "wall_s": wall,
        "calendar_wall_s": summary["wall_s"],
        "sim_s": max(uptimes),
        "handoffs": summary["handoffs"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--sleep", type=int, default=100, help="simulated seconds idle")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kernel = ensure_kernel(progress=True)

    results = []
    for n in args.guests:
        row: dict = {"guests": n, "sleep_s": args.sleep}
        for shm in (False, True):
            mode = "shm" if shm else "messages"
            idle = [one_run(kernel, n, args.sleep, shm) for _ in range(args.repeats)]
            base = [one_run(kernel, n, 0, shm) for _ in range(args.repeats)]
            wall = statistics.median(r["wall_s"] for r in idle)
            wall0 = statistics.median(r["wall_s"] for r in base)
            row[mode] = {
                "wall_s_median": wall,
                "wall_s_all": [round(r["wall_s"], 3) for r in idle],
                "baseline_sleep0_wall_s_median": wall0,
                "sim_s": statistics.median(r["sim_s"] for r in idle),
                "sim_s_per_wall_s": statistics.median(r["sim_s"] / r["wall_s"] for r in idle),
                "idle_over_baseline_wall": wall / wall0,
                "handoffs": statistics.median(r["handoffs"] for r in idle),
            }
            print(
                f"{n:>3} guests {mode:>8}: {row[mode]['sim_s_per_wall_s']:8.1f} sim s/wall s, "
                f"wall {wall:.2f} s vs {wall0:.2f} s asleep 0 s "
                f"(x{row[mode]['idle_over_baseline_wall']:.2f})",
                flush=True,
            )
        results.append(row)
    emit({"benchmark": "idle_guests", "results": results}, args.json)


if __name__ == "__main__":
    main()
