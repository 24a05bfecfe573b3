"""Independent groups (guests of unlinked nodes do not stop for each other's events) vs every
guest stopping for every event, in the same run.

Two scenarios through the public API, each with ``independent_groups`` on and off,
alternating within each repeat so that a slower machine moment hits both:

* idle: N guests, each ``run=["sleep 9"]``, ``sim.run(until="20s")``, ``close()``;
* pairs: P pairs on their own point-to-point links (10 Mbit/s, 1 ms), each client pinging
  its server every 0.1 s for the run's simulated seconds.

Per case: wall seconds (median), hand-offs and events, and the ratio on/off.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml import Simulation


def idle(n: int, groups: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as tmp:
        wall = time.perf_counter()
        with Simulation(workdir=Path(tmp) / "run", seed=1, independent_groups=groups) as sim:
            for i in range(n):
                sim.add_node(f"g{i}", run=["sleep 9"])
            summary = sim.run(until="20s")
            for node in sim.guests:
                if node.result("sleep").returncode != 0:
                    raise RuntimeError(f"{node.name}: sleep 9 failed")
        return {"wall_s": time.perf_counter() - wall, "handoffs": summary["handoffs"],
                "events": summary["events"], "groups": summary["groups"]}


def pairs(p: int, sim_seconds: int, groups: bool) -> dict:
    count = int((sim_seconds - 2) / 0.1)
    with tempfile.TemporaryDirectory(prefix="bench-groups-") as tmp:
        wall = time.perf_counter()
        with Simulation(workdir=Path(tmp) / "run", seed=1, ipv6=False,
                        independent_groups=groups) as sim:
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
        return {"wall_s": time.perf_counter() - wall, "handoffs": summary["handoffs"],
                "events": summary["events"], "groups": summary["groups"]}


def _row(samples: dict[bool, list[dict]]) -> dict:
    out = {}
    for groups, runs in samples.items():
        key = "groups" if groups else "serial"
        out[key] = {"wall_s_median": statistics.median(r["wall_s"] for r in runs),
                    "wall_s_all": [round(r["wall_s"], 3) for r in runs],
                    "handoffs": runs[0]["handoffs"], "events": runs[0]["events"],
                    "groups": runs[0]["groups"]}
    out["wall_ratio_groups_over_serial"] = (out["groups"]["wall_s_median"]
                                            / out["serial"]["wall_s_median"])
    out["handoff_ratio_groups_over_serial"] = (out["groups"]["handoffs"]
                                               / out["serial"]["handoffs"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=int, default=50, help="idle guests")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--sim-seconds", type=int, default=10, help="of the pairs' run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    idle(1, True)  # builds the kernel and the agent if needed; warms caches
    out: dict = {"benchmark": "groups"}
    cases = {"idle": lambda g: idle(args.guests, g),
             "pairs": lambda g: pairs(args.pairs, args.sim_seconds, g)}
    for name, case in cases.items():
        samples: dict[bool, list[dict]] = {True: [], False: []}
        for _ in range(args.repeats):
            for groups in (True, False):
                samples[groups].append(case(groups))
        row = out[name] = _row(samples)
        print(f"{name}: groups {row['groups']['wall_s_median']:.2f} s "
              f"({row['groups']['handoffs']} hand-offs), serial "
              f"{row['serial']['wall_s_median']:.2f} s ({row['serial']['handoffs']}): "
              f"wall x{row['wall_ratio_groups_over_serial']:.2f}", flush=True)
    out["idle"]["guests"] = args.guests
    out["pairs"]["pairs"] = args.pairs
    out["pairs"]["sim_seconds"] = args.sim_seconds
    emit(out, args.json)


if __name__ == "__main__":
    main()
