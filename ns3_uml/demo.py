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
#: How far a measured RTT may be from the model: ping prints whole microseconds.
TOLERANCE_S = 20e-6


def predicted_rtt_s() -> float:
    """What ns-3's point-to-point model makes of a ping: both directions' propagation delay
    and serialization."""
    return 2 * DELAY_S + 2 * FRAME_BYTES * 8 / RATE_BPS


def run_demo(workdir: Path, out: TextIO = sys.stdout) -> int:
    """Run the demo and print what it shows; 0 if the ping succeeded and every RTT it
    measured is the model's within ``TOLERANCE_S``."""
    wall = time.monotonic()
    with Simulation(workdir=workdir, seed=1) as sim:
        alpha = sim.add_node("alpha")
        beta = sim.add_node("beta")  # no commands: it stays up and answers
        sim.point_to_point(alpha, beta, rate="100Mbps", delay="5ms")
        alpha.run(f"ping -c 5 {beta.ip}")
        summary = sim.run(until="10s", progress=out.isatty())
        ping = alpha.result("ping")
        pcaps = sorted(str(p) for p in sim.pcaps()["path"])
    wall = time.monotonic() - wall
    print(f"$ {ping.command}        (in guest alpha, exit {ping.returncode})", file=out)
    print(ping.stdout.rstrip(), file=out)
    print(file=out)
    predicted = predicted_rtt_s()
    print(f"RTT predicted by the link model: {predicted * 1e3:.4f} ms "
          f"(2 x 5 ms + 2 x {FRAME_BYTES} bytes at 100 Mbit/s)", file=out)
    match = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", ping.stdout)
    agree = False
    if match:
        measured = [float(x) / 1e3 for x in match.groups()]
        worst = max(abs(m - predicted) for m in measured)
        agree = worst <= TOLERANCE_S
        print(f"RTT measured by ping (min/avg/max): {'/'.join(match.groups())} ms "
              f"({'within' if agree else 'NOT within'} {TOLERANCE_S * 1e6:.0f} us of the "
              f"model: {worst * 1e6:.1f} us at most)", file=out)
    print(f"simulated time: {summary['sim_time_ns'] / 1e9:.3f} s, wall time: {wall:.2f} s",
          file=out)
    print("pcaps:", *pcaps, sep="\n  ", file=out)
    return 0 if ping.returncode == 0 and agree else 1
