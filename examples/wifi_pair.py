"""Two guests over ns-3's Wi-Fi: an access point and a station 5 m away (802.11a).

They ping each other, the AP sends 1 MiB over TCP to the station (iperf3 -R), and the
station sends 2 Mbit/s of UDP to the AP for a second. The example prints what went through
and fails unless every ping was answered, every TCP byte arrived, and no UDP datagram was
lost.

Run:  python examples/wifi_pair.py [WORKDIR]       (default: runs/wifi_pair)
"""

from __future__ import annotations

import argparse
import json
import sys

import ns3_uml as nu

# 802.11a tops out at 54 Mbit/s of PHY rate: TCP over it gets well under that.
PHY_RATE = 54e6
UDP_RATE = 2e6


def main(workdir: str) -> None:
    with nu.Simulation(workdir=workdir, seed=1) as sim:
        ap = sim.add_node("ap")
        sta = sim.add_node("sta")
        sim.wifi([sta], ap=ap, standard="802.11a", distance=5.0)
        # Two iperf3 tests, one after the other: the TCP one, then the UDP one.
        ap.run("iperf3 -s -1 && iperf3 -s -1", background=True)
        # By 2 s the station has long associated (beacons come every 102.4 ms).
        ap.run(f"ping -c 3 {sta.ip}", at="2s")
        sta.run(f"ping -c 3 {ap.ip}", at="2s")
        # -R: the AP sends (iperf3 3.12's sending client busy-polls at its end of test).
        sta.run(f"iperf3 -c {ap.ip} -n 1M -R -J", name="tcp")
        sta.run("sleep 0.5")  # the server's second run starts listening
        sta.run(f"iperf3 -c {ap.ip} -u -b {UDP_RATE:.0f} -t 1 -J", name="udp")
        sim.run(until="60s")
        pings = {n.name: n.result("ping").stdout for n in (ap, sta)}
        tcp = json.loads(sta.result("tcp").stdout or "{}").get("end", {})
        udp = json.loads(sta.result("udp").stdout or "{}").get("end", {}).get("sum", {})

    problems = []
    for name, ping in pings.items():
        print(f"ping from {name}: {ping.strip().splitlines()[-1] if ping else '(no output)'}")
        if "3 received" not in ping:
            problems.append(f"{name}'s pings were not all answered:\n{ping}")
    tcp_bytes = tcp.get("sum_received", {}).get("bytes", 0)
    tcp_rate = tcp.get("sum_received", {}).get("bits_per_second", 0)
    print(f"TCP ap -> sta: {tcp_bytes} bytes at {tcp_rate / 1e6:.2f} Mbit/s")
    if tcp_bytes != 1 << 20 or not 0 < tcp_rate < PHY_RATE:
        problems.append(f"TCP: {tcp_bytes} bytes at {tcp_rate / 1e6:.2f} Mbit/s")
    print(f"UDP sta -> ap: {udp.get('packets', 0)} datagrams, {udp.get('lost_packets')} "
          f"lost, {udp.get('bits_per_second', 0) / 1e6:.2f} Mbit/s")
    if udp.get("lost_packets") != 0 or abs(udp.get("bits_per_second", 0) / UDP_RATE - 1) > 0.05:
        problems.append(f"UDP: {udp}")
    if problems:
        sys.exit("FAILED: " + "\n".join(problems))
    print("OK: the Wi-Fi pair exchanged traffic both ways")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/wifi_pair",
                        help="where the guests' files and pcaps go (default: %(default)s)")
    main(parser.parse_args().workdir)
