"""Independent groups (guests of unlinked nodes do not stop for each other's events), run one
at a time or several at once, vs every guest stopping for every event, in the same run.

Two scenarios through the public API, each in three modes, alternating within each repeat
so that a slower machine moment hits all: "parallel" (the defaults: groups, and as many
guests at once as CPUs could be claimed), "groups" (``parallel=1``), "serial"
(``independent_groups=False``):

* idle: N guests, each ``run=["sleep 9"]``, ``sim.run(until="20s")``, ``close()``;
* pairs: P pairs on their own point-to-point links (10 Mbit/s, 1 ms), each client pinging
  its server every 0.1 s for the run's simulated seconds.

Per case: wall seconds (median), hand-offs, runs started beside another, and each mode's
ratio to "serial" (and "parallel" to "groups").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml import Simulation


MODES = {"parallel": {}, "groups": {"parallel": 1}, "serial": {"independent_groups": False}}


def _figures(wall: float, summary: dict, sim: Simulation) -> dict:
    return {"wall_s": wall, "handoffs": summary["handoffs"], "events": summary["events"],
            "groups": summary["groups"], "runs_ahead": summary["runs_ahead"],
            "parallel_runs": sim.parallel_runs}


def idle(n: int, mode: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as tmp:
        wall = time.perf_counter()
        with Simulation(workdir=Path(tmp) / "run", seed=1, **MODES[mode]) as sim:
            for i in range(n):
                sim.add_node(f"g{i}", run=["sleep 9"])
            summary = sim.run(until="20s")
            for node in sim.guests:
                if node.result("sleep").returncode != 0:
                    raise RuntimeError(f"{node.name}: sleep 9 failed")
        return _figures(time.perf_counter() - wall, summary, sim)


def pairs(p: int, sim_seconds: int, mode: str) -> dict:
    count = int((sim_seconds - 2) / 0.1)
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as tmp:
        wall = time.perf_counter()
        with Simulation(workdir=Path(tmp) / "run", seed=1, ipv6=False, **MODES[mode]) as sim:
            clients = []
            for i in range(p):
                c, s = sim.add_node(f"c{i}"), sim.add_node(f"s{i}")
                sim.point_to_point(c, s, rate="10Mbps", delay="1ms")
                c.run(f"ping -q -c {count} -i 0.1 {s.ip}")
                clients.append(c)
            summary = sim.run(until=f"{sim_seconds}s")
            for c in clients:
                r = c.result("ping")
                if r.returncode != 0 or f"{count} received" not in r.stdout:
                    raise RuntimeError(f"{c.name}: ping failed: {r.stdout} {r.stderr}")
        return _figures(time.perf_counter() - wall, summary, sim)


def _row(samples: dict[str, list[dict]]) -> dict:
    out: dict = {}
    for mode, runs in samples.items():
        out[mode] = {**runs[0], "wall_s_median": statistics.median(r["wall_s"] for r in runs),
                     "wall_s_all": [round(r["wall_s"], 3) for r in runs]}
        del out[mode]["wall_s"]
    serial = out["serial"]
    for mode in ("parallel", "groups"):
        out[mode]["wall_over_serial"] = out[mode]["wall_s_median"] / serial["wall_s_median"]
        out[mode]["handoffs_over_serial"] = out[mode]["handoffs"] / serial["handoffs"]
    out["parallel"]["speedup_over_groups"] = (out["groups"]["wall_s_median"]
                                              / out["parallel"]["wall_s_median"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=50, help="idle guests")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--sim-seconds", type=int, default=10, help="of the pairs' run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    idle(1, "groups")  # builds the kernel and the agent if needed; warms caches
    out: dict = {"benchmark": "groups"}
    cases = {"idle": lambda g: idle(args.guests, g),
             "pairs": lambda g: pairs(args.pairs, args.sim_seconds, g)}
    for name, case in cases.items():
        samples: dict[str, list[dict]] = {mode: [] for mode in MODES}
        for _ in range(args.repeats):
            for mode in MODES:
                samples[mode].append(case(mode))
        row = out[name] = _row(samples)
        for mode in MODES:
            print(f"{name} {mode:>8}: {row[mode]['wall_s_median']:.2f} s, "
                  f"{row[mode]['handoffs']} hand-offs, {row[mode]['runs_ahead']} runs ahead, "
                  f"{row[mode]['parallel_runs']} at once", flush=True)
        print(f"{name}: parallel x{row['parallel']['speedup_over_groups']:.2f} over groups, "
              f"groups x{1 / row['groups']['wall_over_serial']:.2f} over serial", flush=True)
    out["idle"]["guests"] = args.guests
    out["pairs"]["pairs"] = args.pairs
    out["pairs"]["sim_seconds"] = args.sim_seconds
    emit(out, args.json)


if __name__ == "__main__":
    main()
