"""A guest talks UDP to a native ns-3 node: ns-3's own UdpEchoServer echoes its datagrams.

The guest and the native node share a CSMA (Ethernet-like) channel of 100 Mbit/s with a
one-way delay of 1 ms. The native node runs ns-3's UdpEchoServer application; in the guest,
a few lines of Python (the guest sees the host's /, so the host's python3 runs in it) send
datagrams of 64 bytes and time each echo on the guest's clock, which is ns-3's simulated
time. The example fails unless every echo comes back, and comes back after exactly what
the link model predicts: 2 x (110-byte frame at 100 Mbit/s + 1 ms). The first datagram
waits for ARP (the guest's, then the native node's, which ns-3 delays by a random jitter of
up to 10 ms) and is not held to the model.

Run:  python examples/udp_echo_native.py [WORKDIR]     (default: runs/udp_echo_native)
"""

from __future__ import annotations

import argparse
import shlex
import sys

import pandas as pd

import ns3_uml as nu

RATE = 100e6  # bit/s
DELAY = 0.001  # s
PORT = 9  # the echo service
COUNT, SIZE = 5, 64
# A datagram of SIZE bytes on the wire: + 8 bytes of UDP, 20 of IPv4, 14 of Ethernet, 4 of FCS.
FRAME_BYTES = SIZE + 8 + 20 + 14 + 4
# Timed in user space: in a UML guest every clock read costs 256 ns of simulated time
# (arch/um/kernel/time.c), which adds about a microsecond to each echo's time.
TOLERANCE_S = 5e-6

# Runs in the guest: send COUNT datagrams to HOST:PORT, one every 0.2 s, and print each
# echo's round-trip time as measured on the guest's (simulated) clock. A lost echo blocks
# it until the run's end: then it has no exit status and the checks below fail.
ECHO_CLIENT = """
import socket, sys, time
host, port, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for seq in range(count):
    data = bytes([seq]) * size
    sent = time.monotonic_ns()
    s.sendto(data, (host, port))
    echo, peer = s.recvfrom(2048)
    print(seq, (time.monotonic_ns() - sent) / 1e9, echo == data, flush=True)
    time.sleep(0.2)
"""


def main(workdir: str) -> None:
    # IPv4 only: IPv6's multicast reports would share the links with the measurement.
    with nu.Simulation(workdir=workdir, seed=1, ipv6=False) as sim:
        ns = sim.ns
        guest = sim.add_node("guest")
        native = sim.add_native_node("echo")
        sim.csma([guest, native], rate=f"{RATE:.0f}bps", delay=f"{DELAY}s")
        # Raw ns-3: the UdpEchoServer application on the native node.
        server = ns.UdpEchoServerHelper(PORT).Install(native.ns3_node)
        server.Start(ns.Seconds(0))
        guest.run(f"python3 -c {shlex.quote(ECHO_CLIENT)} {native.ip} {PORT} {COUNT} {SIZE}",
                  name="echo")
        sim.run(until="30s")
        result = guest.result("echo")

    rows = [line.split() for line in result.stdout.splitlines()]
    table = pd.DataFrame(rows, columns=["seq", "rtt", "intact"])
    table["rtt ms"] = pd.to_numeric(table["rtt"], errors="coerce") * 1e3
    predicted = 2 * (FRAME_BYTES * 8 / RATE + DELAY)
    table["model ms"] = predicted * 1e3
    print(table[["seq", "rtt ms", "model ms", "intact"]].to_string(
        index=False, float_format="{:.4f}".format))

    timed = table["rtt ms"].iloc[1:]  # the first one waited for ARP
    problems = []
    if result.returncode != 0:
        problems.append(f"the guest's client failed ({result.returncode}): {result.stderr}")
    if len(table) != COUNT or not (table["intact"] == "True").all():
        problems.append(f"expected {COUNT} intact echoes:\n{result.stdout}")
    elif ((timed - predicted * 1e3).abs() > TOLERANCE_S * 1e3).any():
        problems.append(f"RTTs {list(timed)} ms differ from the model's {predicted * 1e3} ms")
    if problems:
        sys.exit("FAILED: " + "\n".join(problems))
    print("OK: ns-3's UdpEchoServer echoed every datagram, each after the link model's RTT")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/udp_echo_native",
                        help="where the guest's files and pcaps go (default: %(default)s)")
    main(parser.parse_args().workdir)
