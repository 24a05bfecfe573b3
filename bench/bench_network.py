"""Guests on the wire: wall time and crossings per frame for bulk TCP, a UDP flood and ping.

Two guests on a point-to-point link, each case with offloads off and on in the same run
(``Simulation(offloads=...)``; "off" is the baseline), bulk TCP also with receive
coalescing (``add_node(rx_coalesce=...)``). Medians of --repeats.

* bulk TCP, ``iperf3 -c`` (a sends to b) of --tcp-bytes at 1 and 10 Gbit/s, 0.1 ms: wall us
  per wire frame and per data segment, crossings (vhost-user kicks + calls, all devices)
  and hand-offs (RUNs) per wire frame, simulated seconds per wall second, goodput against
  what the link can carry (1448 of every 1502 bytes), retransmissions. Not ``-R``: iperf3
  3.12's sending server busy-waits on select() once it has written its last byte, and in a
  time-travel guest every turn of that loop is a hand-off (a clock read costs 256 ns), so
  ``-R`` measures iperf3 (--reverse shows it). Both guests get 32 MiB socket buffers
  (TCP_BUFFERS);
* UDP flood of 1400-byte datagrams (``iperf3 -u -b 0``: as fast as the link takes them,
  flow control holding the sender back) over 1 Gbit/s, also with receive coalescing: wire
  frames per wall second. Not ``-b 1G``: iperf3 paces by polling the clock, and every turn
  of that loop is a hand-off in a time-travel guest;
* ping over 1 Gbit/s, 0.1 ms: RTT (avg) against the link model.

The wall time of a transfer is the run's minus that of the same simulation with nothing to
transfer (boot and power-off), measured once per configuration and repeat. Wire frames are
those in the receiving guest's pcap (both directions of its link). Run it with the python of
the package to measure (e.g. /work/venv/main/bin/python for the code before a change).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit

import ns3_uml as nu

RTT = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
DELAY_S = 0.0001
PING_FRAME_BYTES = 84 + 2  # echo request/reply on point-to-point
#: The usual 10 Gbit/s tuning in both guests: with Linux's default 6 MiB receive buffer the
#: window, not the link, limits TCP at 10 Gbit/s (8.5-8.8 Gbit/s; 9.3-9.4 with these).
TCP_BUFFERS = ('sysctl -qw net.ipv4.tcp_rmem="4096 131072 33554432" '
               'net.ipv4.tcp_wmem="4096 16384 33554432"')


def pcap_frames(path: Path) -> tuple[int, int]:
    """(frames, frames of more than 1000 bytes) in a pcap file."""
    data = path.read_bytes()
    off, n, big = 24, 0, 0
    while off + 16 <= len(data):
        incl, orig = struct.unpack_from("<II", data, off + 8)
        off += 16 + incl
        n += 1
        big += orig > 1000
    return n, big


def _crossings(sim: nu.Simulation) -> int:
    devices = [v for n in sim.guests for v in n.virtio_devices]
    return sum(int(v.GetKickCount()) + int(v.GetCallCount()) for v in devices)


def pair(commands: dict[str, list[str]], rate: str, offloads: bool,
         rx_coalesce: str | None = None, until: str = "60s") -> dict[str, Any]:
    """Guests a (10.0.0.1) and b (10.0.0.2) on one link: the run's figures."""
    with tempfile.TemporaryDirectory(prefix="bench-net-") as tmp:
        with nu.Simulation(workdir=tmp, seed=1, ipv6=False, offloads=offloads) as sim:
            a = sim.add_node("a", run=commands.get("a", []), rx_coalesce=rx_coalesce)
            sim.add_node("b", run=commands.get("b", []), rx_coalesce=rx_coalesce)
            sim.point_to_point("a", "b", rate=rate, delay=f"{DELAY_S}s")
            wall = time.perf_counter()
            summary = sim.run(until=until)
            wall = time.perf_counter() - wall
            crossings = _crossings(sim)
            outputs = [r.stdout for r in a.results()]
            pcap = a.pcaps["eth0"]
        frames, segments = pcap_frames(pcap)
    return {"wall_s": wall, "sim_s": summary["sim_time_ns"] / 1e9, "frames": frames,
            "segments": segments, "handoffs": summary["handoffs"], "crossings": crossings,
            "stdout": outputs}


def _per_frame(run: dict[str, Any], idle: dict[str, Any]) -> dict[str, Any]:
    wall = max(run["wall_s"] - idle["wall_s"], 1e-9)
    frames = max(run["frames"] - idle["frames"], 1)
    out = {"wall_s": wall, "frames": frames, "segments": run["segments"],
           "wall_us_per_frame": wall / frames * 1e6,
           "wall_us_per_segment": wall / max(run["segments"], 1) * 1e6,
           "handoffs_per_frame": (run["handoffs"] - idle["handoffs"]) / frames,
           "crossings_per_frame": (run["crossings"] - idle["crossings"]) / frames,
           "sim_s_per_wall_s": (run["sim_s"] - idle["sim_s"] + 1e-9) / wall
           if run["sim_s"] > idle["sim_s"] else None}
    return out


def tcp(rate: str, nbytes: str, offloads: bool, coalesce: str | None,
        reverse: bool = False) -> dict[str, Any]:
    direction = " -R" if reverse else ""
    cmds = {"a": [TCP_BUFFERS, "sleep 1", f"iperf3 -c 10.0.0.2{direction} -n {nbytes} -J"],
            "b": [TCP_BUFFERS, "iperf3 -s -1"]}
    run = pair(cmds, rate, offloads, coalesce)
    idle = pair({"a": [TCP_BUFFERS, "sleep 1"], "b": [TCP_BUFFERS]}, rate, offloads, coalesce)
    out = _per_frame(run, idle)
    try:
        end = json.loads(run["stdout"][-1])["end"]
        out["goodput_bps"] = end["sum_received"]["bits_per_second"]
        out["goodput_vs_link"] = out["goodput_bps"] / (_bps(rate) * 1448 / 1502)
        out["retransmits"] = end["sum_sent"].get("retransmits")
    except (ValueError, KeyError, IndexError):
        out["goodput_bps"] = None
    return out


def _bps(rate: str) -> float:
    return float(rate.removesuffix("bps").replace("G", "e9").replace("M", "e6"))


def flood(nbytes: str, offloads: bool, coalesce: str | None = None) -> dict[str, Any]:
    cmds = {"a": ["sleep 1", f"iperf3 -u -b 0 -l 1400 -n {nbytes} -c 10.0.0.2"],
            "b": ["iperf3 -s -1"]}
    run = pair(cmds, "1Gbps", offloads, coalesce)
    idle = pair({"a": ["sleep 1"], "b": []}, "1Gbps", offloads, coalesce)
    out = _per_frame(run, idle)
    out["frames_per_wall_s"] = out["frames"] / out["wall_s"]
    return out


def ping(offloads: bool, rate_bps: int = 1_000_000_000) -> dict[str, Any]:
    cmds = {"a": ["ping -c 1 10.0.0.2", "ping -c 5 -i 0.2 10.0.0.2"], "b": ["sleep 4"]}
    run = pair(cmds, f"{rate_bps}bps", offloads, until="10s")
    match = RTT.search(run["stdout"][-1])
    model = 2 * DELAY_S + 2 * PING_FRAME_BYTES * 8 / rate_bps
    avg = float(match.group(2)) / 1000 if match else None
    return {"rtt_avg_s": avg, "rtt_model_s": model,
            "rtt_error_us": None if avg is None else (avg - model) * 1e6}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    med = {k: statistics.median(r[k] for r in runs if r.get(k) is not None)
           for k in keys if all(r.get(k) is not None for r in runs)}
    return {**med, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tcp-bytes", default="50M",
                        help="iperf3 -n for bulk TCP (10 Gbit/s needs tens of MB past slow start)")
    parser.add_argument("--flood-bytes", default="10M", help="iperf3 -n for the UDP flood")
    parser.add_argument("--coalesce", default="50us", help="rx_coalesce for the TCP case")
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, 2 MB transfers: a smoke run")
    parser.add_argument("--reverse", action="store_true",
                        help="bulk TCP with iperf3 -R (b sends; see above)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.tcp_bytes, args.flood_bytes = 1, "2M", "2M"
    out: dict[str, Any] = {"benchmark": "guests_on_the_wire", "package": nu.__file__,
                           "repeats": args.repeats, "tcp_bytes": args.tcp_bytes,
                           "flood_bytes": args.flood_bytes, "reverse": args.reverse}
    for offloads in (False, True):
        mode = f"offloads_{'on' if offloads else 'off'}"
        res: dict[str, Any] = {}
        for rate in ("1Gbps", "10Gbps"):
            for coalesce in (None, args.coalesce):
                key = f"tcp_{rate}" + (f"_coalesce_{coalesce}" if coalesce else "")
                res[key] = _median([tcp(rate, args.tcp_bytes, offloads, coalesce, args.reverse)
                                    for _ in range(args.repeats)])
                m = res[key]
                print(f"{mode} {key:>28}: {m['wall_us_per_frame']:7.1f} us/frame "
                      f"{m['wall_us_per_segment']:7.1f} us/segment, handoffs/frame "
                      f"{m['handoffs_per_frame']:.2f}, crossings/frame "
                      f"{m['crossings_per_frame']:.2f}, goodput "
                      f"{(m.get('goodput_bps') or 0) / 1e6:.0f} Mbit/s "
                      f"({m.get('goodput_vs_link', 0):.0%} of the link), retransmits "
                      f"{m.get('retransmits')}", flush=True)
        for coalesce in (None, args.coalesce):
            key = "udp_flood_1Gbps" + (f"_coalesce_{coalesce}" if coalesce else "")
            res[key] = _median([flood(args.flood_bytes, offloads, coalesce)
                                for _ in range(args.repeats)])
            print(f"{mode} {key:>28}: {res[key]['frames_per_wall_s']:7.0f} frames/wall s, "
                  f"handoffs/frame {res[key]['handoffs_per_frame']:.2f}", flush=True)
        res["ping_1Gbps"] = _median([ping(offloads) for _ in range(args.repeats)])
        p = res["ping_1Gbps"]
        print(f"{mode} {'ping_1Gbps':>28}: RTT error {p.get('rtt_error_us', float('nan')):.1f} us "
              "vs the model", flush=True)
        out[mode] = res
    emit(out, args.json)


if __name__ == "__main__":
    main()
