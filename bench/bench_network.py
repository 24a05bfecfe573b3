"""Guests on the wire: frames per wall second, twenty guests, host memory per guest.

Message mode vs shared memory, each measured in the same run (medians of --repeats):
* one guest pair, UDP flood (iperf3 -u) over a 1 Gbit/s point-to-point link: frames
  carried by ns-3 per wall second;
* twenty guests (ten pairs on their own links), idle (sleep) and pinging: simulated
  seconds per wall second;
* host memory per guest: proportional set size (PSS) of each guest's processes, sampled
  while the twenty guests run.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import tempfile
import threading
import time
from pathlib import Path

from report import emit

import ns3_uml as nu


def pcap_frames(path: Path) -> int:
    data = path.read_bytes()
    off, n = 24, 0
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        off += 16 + incl
        n += 1
    return n


def guest_pss_kb(node: nu.UmlNode) -> int:
    """PSS of every process in the guest's process group (UML forks helpers)."""
    from ns3_uml.guest import process_group_members  # noqa: PLC0415

    total = 0
    for pid in process_group_members(node.process.pid):
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def flood(shm: bool, seconds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-net-") as tmp:
        with nu.Simulation(workdir=tmp, seed=1, shared_memory=shm) as sim:
            sim.add_node("tx", run=["sleep 1", f"iperf3 -u -b 500M -l 1400 -c 10.0.0.2 -t {seconds}"])
            sim.add_node("rx", run=["iperf3 -s -1"])
            sim.point_to_point("tx", "rx", rate="1Gbps", delay="1ms")
            wall = time.perf_counter()
            summary = sim.run(until=f"{seconds + 5}s")
            wall = time.perf_counter() - wall
            frames = pcap_frames(sim.node("tx").pcaps["eth0"])
    return {"frames": frames, "wall_s": wall, "frames_per_wall_s": frames / wall,
            "sim_s": summary["sim_time_ns"] / 1e9}


def twenty(shm: bool, pinging: bool, sim_seconds: int) -> dict:
    pss: list[int] = []
    with tempfile.TemporaryDirectory(prefix="bench-net-") as tmp:
        with nu.Simulation(workdir=tmp, seed=1, shared_memory=shm) as sim:
            for p in range(10):
                a = sim.add_node(f"a{p}", run=[f"ping -c {sim_seconds} 10.0.{p}.2"]
                                 if pinging else [f"sleep {sim_seconds}"])
                b = sim.add_node(f"b{p}", run=[f"sleep {sim_seconds + 1}"])
                sim.point_to_point(a, b, rate="100Mbps", delay="1ms")
            done = threading.Event()

            def sample() -> None:
                time.sleep(3)  # past boot
                while not done.is_set() and not pss:
                    nodes = [n for n in sim.nodes.values() if n.process and n.process.pid]
                    values = [guest_pss_kb(n) for n in nodes]
                    if values and all(values):
                        pss.extend(values)
                    done.wait(0.5)

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
    parser.add_argument("--flood-seconds", type=int, default=5)
    parser.add_argument("--sim-seconds", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict = {"benchmark": "guests_on_the_wire"}
    for shm in (False, True):
        mode = "shm" if shm else "messages"
        runs = [flood(shm, args.flood_seconds) for _ in range(args.repeats)]
        idle = [twenty(shm, False, args.sim_seconds) for _ in range(args.repeats)]
        ping = [twenty(shm, True, args.sim_seconds) for _ in range(args.repeats)]
        out[mode] = {
            "flood_frames_per_wall_s": statistics.median(r["frames_per_wall_s"] for r in runs),
            "flood_runs": runs,
            "twenty_idle_sim_s_per_wall_s": statistics.median(r["sim_s_per_wall_s"] for r in idle),
            "twenty_ping_sim_s_per_wall_s": statistics.median(r["sim_s_per_wall_s"] for r in ping),
            "pss_kb_per_guest": statistics.median(
                r["pss_kb_per_guest_median"] for r in idle + ping
                if r["pss_kb_per_guest_median"] is not None),
            "twenty_runs": {"idle": idle, "ping": ping},
        }
        m = out[mode]
        print(f"{mode:>8}: flood {m['flood_frames_per_wall_s']:9.0f} frames/wall s | twenty "
              f"idle {m['twenty_idle_sim_s_per_wall_s']:6.2f}, pinging "
              f"{m['twenty_ping_sim_s_per_wall_s']:6.2f} sim s/wall s | "
              f"{m['pss_kb_per_guest'] / 1024:.1f} MiB per guest", flush=True)
    out["shm_over_messages_flood"] = (out["shm"]["flood_frames_per_wall_s"]
                                      / out["messages"]["flood_frames_per_wall_s"])
    emit(out, args.json)


if __name__ == "__main__":
    main()
