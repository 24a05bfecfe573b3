"""Twenty guests (ten pairs on their own links): simulated seconds per wall second, idle and
pinging, and host memory per guest.

Message mode vs shared memory, each measured in the same run (medians of --repeats); the
memory is the proportional set size (PSS) of each guest's processes, sampled while the
twenty guests run. (bench_network.py measures traffic between two guests.)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from report import emit

import ns3_uml as nu
from ns3_uml.procs import group_members


def guest_pss_kb(node: nu.UmlNode) -> int:
    """PSS of every process in the guest's process group (UML forks helpers)."""
    total = 0
    for pid in group_members(node.process.pid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def twenty(shm: bool, pinging: bool, sim_seconds: int) -> dict:
    pss: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-pairs-") as tmp:
        with nu.Simulation(workdir=tmp, seed=1, shared_memory=shm) as sim:
            for p in range(10):
                a = sim.add_node(f"a{p}", run=[f"ping -c {sim_seconds} 10.0.{p}.2"]
                                 if pinging else [f"sleep {sim_seconds}"])
                b = sim.add_node(f"b{p}", run=[f"sleep {sim_seconds + 1}"])
                sim.point_to_point(a, b, rate="100Mbps", delay="1ms")
            done = threading.Event()

            def sample() -> None:
                # The last complete sample before the run ends: past boot, however fast
                # the run is (20 idle guests may take under 3 s of wall time now).
                while not done.wait(0.3):
                    nodes = [n for n in sim.guests if n.process and n.process.pid]
                    values = [guest_pss_kb(n) for n in nodes]
                    if len(values) == 20 and all(values):
                        pss[:] = values

            sampler = threading.Thread(target=sample)
            sampler.start()
            wall = time.perf_counter()
            summary = sim.run(until=f"{sim_seconds + 3}s")
            wall = time.perf_counter() - wall
            done.set()
            sampler.join()
    return {"wall_s": wall, "sim_s": summary["sim_time_ns"] / 1e9,
            "sim_s_per_wall_s": summary["sim_time_ns"] / 1e9 / wall,
            "pss_kb_per_guest_median": statistics.median(pss) if pss else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sim-seconds", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict = {"benchmark": "twenty_guests"}
    for shm in (False, True):
        mode = "shm" if shm else "messages"
        idle = [twenty(shm, False, args.sim_seconds) for _ in range(args.repeats)]
        ping = [twenty(shm, True, args.sim_seconds) for _ in range(args.repeats)]
        pss = [r["pss_kb_per_guest_median"] for r in idle + ping
               if r["pss_kb_per_guest_median"] is not None]
        out[mode] = {
            "idle_sim_s_per_wall_s": statistics.median(r["sim_s_per_wall_s"] for r in idle),
            "ping_sim_s_per_wall_s": statistics.median(r["sim_s_per_wall_s"] for r in ping),
            "pss_kb_per_guest": statistics.median(pss) if pss else None,
            "runs": {"idle": idle, "ping": ping},
        }
        m = out[mode]
        memory = f"{m['pss_kb_per_guest'] / 1024:.1f} MiB" if pss else "n/a"
        print(f"{mode:>8}: idle {m['idle_sim_s_per_wall_s']:6.2f}, pinging "
              f"{m['ping_sim_s_per_wall_s']:6.2f} sim s/wall s | {memory} per guest",
              flush=True)
    emit(out, args.json)


if __name__ == "__main__":
    main()
