"""``ns3-uml demo``: two real Linux guests ping each other over an ns-3 link."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TextIO

from .simulation import Simulation

RATE_BPS = 100_000_000
DELAY_S = 0.005
#: An echo request or reply on point-to-point: 84 bytes of IPv4 + 2 of PPP.
FRAME_BYTES = 86


def predicted_rtt_s() -> float:
    """What ns-3's point-to-point model makes of a ping: both directions' propagation delay
    and serialization."""
    return 2 * DELAY_S + 2 * FRAME_BYTES * 8 / RATE_BPS


def run_demo(workdir: Path, out: TextIO = sys.stdout) -> int:
    """Run the demo, print what it shows; 0 if the guests' ping succeeded."""
    wall = time.monotonic()
    with Simulation(workdir=workdir, seed=1) as sim:
        a = sim.add_node("alpha", run=["ping -c 5 10.0.0.2"])
        sim.add_node("beta", run=["sleep 6"])
        sim.point_to_point("alpha", "beta", rate="100Mbps", delay="5ms")
        summary = sim.run(until="10s")
        ping = a.result("ping")
    wall = time.monotonic() - wall
    print(f"$ ping -c 5 10.0.0.2        (in guest alpha, exit {ping.returncode})", file=out)
    print(ping.stdout.rstrip(), file=out)
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", ping.stdout)
    print(file=out)
    print(f"RTT predicted by the link model: {predicted_rtt_s() * 1e3:.3f} ms "
          f"(2 x 5 ms + 2 x {FRAME_BYTES} bytes at 100 Mbit/s)", file=out)
    if match:
        print(f"RTT measured by ping (min/avg/max): {match.group(1)}/{match.group(2)}/"
              f"{match.group(3)} ms", file=out)
    print(f"simulated time: {summary['sim_time_ns'] / 1e9:.3f} s, wall time: {wall:.2f} s",
          file=out)
    print(f"pcaps: {workdir.absolute() / 'pcap'}", file=out)
    return 0 if ping.returncode == 0 else 1
