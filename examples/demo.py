"""The demo (``ns3-uml demo``) as a script: two real Linux guests ping each other over ns-3.

Guests alpha and beta share a point-to-point link of 100 Mbit/s with a one-way delay of
5 ms; alpha pings beta 5 times. ns-3's link model predicts every round trip exactly: both
ways, the 86-byte frame of an echo request or reply (84 bytes of IPv4 + 2 of PPP) takes
6.88 us to send and 5 ms to arrive. The example fails unless ping measures just that.

Run:  python examples/demo.py [WORKDIR]            (default: runs/demo)
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import ns3_uml as nu

RATE = 100e6  # bit/s
DELAY = 0.005  # s
FRAME_BYTES = 86
# ping prints 3 decimals of ms: allow 20 us plus rounding.
TOLERANCE_S = 21e-6


def main(workdir: str) -> None:
    wall = time.monotonic()
    with nu.Simulation(workdir=workdir, seed=1) as sim:
        alpha = sim.add_node("alpha")
        beta = sim.add_node("beta")  # no commands: it stays up and answers
        sim.point_to_point(alpha, beta, rate="100Mbps", delay="5ms")
        alpha.run(f"ping -c 5 {beta.ip}")  # beta.ip exists once the link does
        summary = sim.run(until="10s")
        ping = alpha.result("ping")
        pcaps = list(sim.pcaps()["path"])
    wall = time.monotonic() - wall

    print(f"$ {ping.command}        (in guest alpha, exit {ping.returncode})")
    print(ping.stdout)
    predicted = 2 * (FRAME_BYTES * 8 / RATE + DELAY)
    rtt = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/", ping.stdout)
    measured = [float(x) / 1e3 for x in rtt.groups()] if rtt else []
    print(f"RTT predicted by the link model: {predicted * 1e3:.3f} ms")
    print("RTT measured by ping (min/avg/max): "
          + "/".join(f"{m * 1e3:.3f}" for m in measured) + " ms")
    print(f"simulated time: {summary['sim_time_ns'] / 1e9:.3f} s, wall time: {wall:.2f} s")
    print("pcaps:", *pcaps, sep="\n  ")

    if ping.returncode != 0 or not measured:
        sys.exit(f"FAILED: ping exited {ping.returncode}: {ping.stderr}")
    if any(abs(m - predicted) > TOLERANCE_S for m in measured):
        sys.exit(f"FAILED: the RTTs differ from the link model by more than "
                 f"{TOLERANCE_S * 1e6:.0f} us")
    print("OK: ping measured the link model's RTT")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/demo",
                        help="where the guests' files and pcaps go (default: %(default)s)")
    main(parser.parse_args().workdir)
