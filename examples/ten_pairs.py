"""Twenty guests in ten pairs, each pair on its own point-to-point link.

Pair p's link carries 10 Mbit/s with a one-way delay of p+1 ms. In each pair the client
pings the server 3 times, then measures TCP throughput with iperf3 (the server sends: -R).
The example prints one row per pair, measured against what the link model predicts, and
fails if any pair misses it:

* RTT = 2 x (86-byte echo frame at 10 Mbit/s + delay), within 21 us (ping prints 3 decimals
  of ms);
* TCP throughput = 10 Mbit/s x 1448/1502 (the payload of a full frame: 1448 bytes of TCP
  data with timestamps, of 1500 bytes of IP plus 2 of PPP), within 3%.

Run:  python examples/ten_pairs.py [WORKDIR]       (default: runs/ten_pairs; ~1 minute)
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import pandas as pd

import ns3_uml as nu

PAIRS = 10
RATE = 10e6  # bit/s
FRAME_BYTES = 86  # an echo request or reply: 84 bytes of IPv4 + 2 of PPP
RTT_TOLERANCE = 21e-6  # s
THROUGHPUT_TOLERANCE = 0.03  # relative


def delay_of(pair: int) -> float:
    return 0.001 * (pair + 1)


def ping_rtts_ms(stdout: str) -> list[float]:
    """min, avg and max RTT of ping's summary (NaN if there is none)."""
    rtt = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/", stdout)
    return [float(x) for x in rtt.groups()] if rtt else [float("nan")] * 3


def iperf3_received_bps(stdout: str) -> float:
    """The receiver's bits per second of iperf3 -J's report (0 if there is none)."""
    end = json.loads(stdout or "{}").get("end", {})
    return end.get("sum_received", {}).get("bits_per_second", 0.0)


def main(workdir: str) -> None:
    # IPv4 only: IPv6's multicast reports would share the links with the measurement.
    with nu.Simulation(workdir=workdir, seed=1, ipv6=False) as sim:
        clients = []
        for p in range(PAIRS):
            client = sim.add_node(f"c{p}")
            server = sim.add_node(f"s{p}")
            sim.point_to_point(client, server, rate=f"{RATE:.0f}bps", delay=f"{delay_of(p)}s")
            # The server ends after its one client; the guest powers off after that.
            server.run("iperf3 -s -1", background=True)
            client.run(f"ping -c 3 {server.ip}")
            # -R: the server sends. iperf3 3.12's sending client busy-polls select() at
            # the end of a test, which costs much wall time under a simulated clock.
            client.run(f"iperf3 -c {server.ip} -t 2 -R -J")
            clients.append(client)
        sim.run(until="60s", progress=True)
        outputs = [(c.result("ping").stdout, c.result("iperf3").stdout) for c in clients]

    rows = []
    for p, (ping, iperf) in enumerate(outputs):
        rtt_min, rtt_avg, rtt_max = ping_rtts_ms(ping)
        rows.append({
            "pair": p,
            "delay ms": delay_of(p) * 1e3,
            "RTT model ms": 2 * (FRAME_BYTES * 8 / RATE + delay_of(p)) * 1e3,
            "RTT min ms": rtt_min, "RTT avg ms": rtt_avg, "RTT max ms": rtt_max,
            "TCP Mbit/s": iperf3_received_bps(iperf) / 1e6,
            "TCP model Mbit/s": RATE * 1448 / 1502 / 1e6,
        })
    table = pd.DataFrame(rows).set_index("pair")
    measured = table[["RTT min ms", "RTT avg ms", "RTT max ms"]]
    rtt_ok = measured.sub(table["RTT model ms"], axis=0).abs().max(axis=1) <= RTT_TOLERANCE * 1e3
    tcp_ok = ((table["TCP Mbit/s"] / table["TCP model Mbit/s"] - 1).abs()
              <= THROUGHPUT_TOLERANCE)
    table["ok"] = rtt_ok & tcp_ok  # NaN (no ping summary) compares False
    print(table.to_string(float_format="{:.3f}".format))

    if not table["ok"].all():
        bad = list(table.index[~table["ok"]])
        sys.exit(f"FAILED: pairs {bad} miss the link model (RTT within "
                 f"{RTT_TOLERANCE * 1e6:.0f} us, TCP within {THROUGHPUT_TOLERANCE:.0%})")
    print(f"OK: all {PAIRS} pairs match the link model")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/ten_pairs",
                        help="where the guests' files and pcaps go (default: %(default)s)")
    main(parser.parse_args().workdir)
