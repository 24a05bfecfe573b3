"""Booting a Simulation's guests: the agent as init (set-up with system calls) vs the older
inits, in the same run.

Two figures per init (``NS3_UML_AGENT_INIT``: "agent", the default; "exec", a one-line
init.sh that execs the agent; "shell", the shell init's set-up with a fork+exec per step):

* idle: N guests through the public API, each ``run=["sleep 9"]``, ``sim.run(until="20s")``
  and ``close()``: wall seconds, and per guest;
* boot: one guest, ``sim.run()`` (until its agent is READY) and ``close()`` (power-off):
  wall seconds per guest.

Modes alternate within each repeat, so that a slower machine moment hits all of them.
Medians, and each mode's ratio to "shell".
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml import Simulation
from ns3_uml.guest.init import AGENT_INIT_ENV

MODES = ("agent", "exec", "shell")


def _with_mode(mode: str, fn, *args) -> float:
    os.environ[AGENT_INIT_ENV] = mode
    try:
        return fn(*args)
    finally:
        del os.environ[AGENT_INIT_ENV]


def idle_run(n: int) -> float:
    """Wall seconds of N guests asleep for 9 s, run for 20 s and closed."""
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as tmp:
        wall = time.perf_counter()
        with Simulation(workdir=Path(tmp) / "run", seed=1) as sim:
            for i in range(n):
                sim.add_node(f"g{i}", run=["sleep 9"])
            sim.run(until="20s")
            for node in sim.guests:
                r = node.result("sleep")
                if r.returncode != 0:
                    raise RuntimeError(f"{node.name}: sleep 9 failed: {r}")
        return time.perf_counter() - wall


def boot_run() -> float:
    """Wall seconds of one guest's boot to READY and its power-off."""
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as tmp:
        wall = time.perf_counter()
        with Simulation(workdir=Path(tmp) / "run", seed=1) as sim:
            sim.add_node("g")
            sim.run()
        return time.perf_counter() - wall


def _summary(samples: dict[str, list[float]], per: int) -> dict:
    med = {m: statistics.median(s) for m, s in samples.items()}
    return {m: {"wall_s_median": med[m], "per_guest_s": med[m] / per,
                "wall_s_all": [round(x, 3) for x in samples[m]],
                "over_shell": med[m] / med["shell"]} for m in samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--boots", type=int, default=5, help="single-guest boots per mode")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if "shell" not in args.modes:
        parser.error("the ratios are to mode 'shell': include it")
    _with_mode("agent", boot_run)  # builds the kernel and the agent if needed; warms caches

    boot: dict[str, list[float]] = {m: [] for m in args.modes}
    for _ in range(args.boots):
        for mode in args.modes:
            boot[mode].append(_with_mode(mode, boot_run))
    out: dict = {"benchmark": "boot", "boot_poweroff_one_guest": _summary(boot, 1),
                 "idle": []}
    for mode, row in out["boot_poweroff_one_guest"].items():
        print(f"boot+power-off {mode:>5}: {row['wall_s_median']:.3f} s "
              f"(x{row['over_shell']:.2f})", flush=True)
    for n in args.guests:
        idle: dict[str, list[float]] = {m: [] for m in args.modes}
        for _ in range(args.repeats):
            for mode in args.modes:
                idle[mode].append(_with_mode(mode, idle_run, n))
        row = {"guests": n, **_summary(idle, n)}
        out["idle"].append(row)
        for mode in args.modes:
            print(f"{n:>3} idle guests {mode:>5}: {row[mode]['wall_s_median']:.2f} s, "
                  f"{row[mode]['per_guest_s']:.3f} s/guest (x{row[mode]['over_shell']:.2f})",
                  flush=True)
    emit(out, args.json)


if __name__ == "__main__":
    main()
