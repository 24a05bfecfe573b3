"""What a command through a guest's agent costs: wall time per command, now and scheduled.

One guest, booted once. ``node.cmd("true")`` N times (each a RUN sent now, the run stopped at
its EXIT), against the baseline measured in the same simulation: N ``node.run("true")``
scheduled one after the other and run with one ``sim.run()`` (the same agent, Python
stopped only at each command's end). Also the wall time of booting the guest to its
agent's READY, and of ``close()`` (POWEROFF through the agent). Medians of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml import Simulation
from ns3_uml.kernel import ensure_kernel


def one_run(n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as tmp:
        wall = time.perf_counter()
        sim = Simulation(workdir=Path(tmp) / "run", seed=1)
        try:
            a = sim.add_node("a")
            sim.run(until="1s")  # booted, the agent ready
            boot = time.perf_counter() - wall
            t0 = time.perf_counter()
            for _ in range(n):
                assert a.cmd("true").returncode == 0
            now = (time.perf_counter() - t0) / n
            sim_now = sim.now
            for _ in range(n):
                a.run("true")
            t0 = time.perf_counter()
            sim.run()
            scheduled = (time.perf_counter() - t0) / n
            sim_per_cmd = (sim.now - sim_now) / n
        finally:
            t0 = time.perf_counter()
            sim.close()
            close = time.perf_counter() - t0
    return {"boot_to_ready_s": boot, "cmd_now_ms": now * 1e3,
            "cmd_scheduled_ms": scheduled * 1e3, "sim_ms_per_command": sim_per_cmd * 1e3,
            "close_s": close}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ensure_kernel(progress=True)
    runs = [one_run(args.commands) for _ in range(args.repeats)]
    out: dict = {"benchmark": "agent_commands", "commands": args.commands, "runs": runs}
    for key in runs[0]:
        out[key] = statistics.median(r[key] for r in runs)
    out["now_vs_scheduled"] = out["cmd_now_ms"] / out["cmd_scheduled_ms"]
    print(f"cmd() {out['cmd_now_ms']:.1f} ms, scheduled {out['cmd_scheduled_ms']:.1f} ms per "
          f"command (ratio {out['now_vs_scheduled']:.2f}); boot to READY "
          f"{out['boot_to_ready_s']:.2f} s, close {out['close_s']:.2f} s", flush=True)
    emit(out, args.json)


if __name__ == "__main__":
    main()
