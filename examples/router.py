"""A guest as a router: guests a - r - b on two point-to-point links, two subnets.

r forwards (the sysctl net.ipv4.ip_forward=1); a routes b's subnet through r, and b sends
everything through r. a pings b, and the example checks that every reply comes back with
TTL 63 (one router on the way), that the RTT is what the two link models add up to, and
that r's kernel counted the 3 requests and 3 replies it forwarded (/proc/net/snmp).

Run:  python examples/router.py [WORKDIR]          (default: runs/router)
"""

from __future__ import annotations

import argparse
import re
import sys

import ns3_uml as nu

# The two links, a-r and r-b: subnet, rate (bit/s) and one-way delay (s).
LINKS = [("10.1.0.0/24", 100e6, 0.002), ("10.2.0.0/24", 10e6, 0.003)]
# An echo request or reply: 84 bytes of IPv4 plus 2 of PPP on a point-to-point link.
FRAME_BYTES = 86
# ping prints 3 decimals of ms: allow 20 us plus rounding.
TOLERANCE_S = 21e-6


def main(workdir: str) -> None:
    # IPv4 only: IPv6's multicast reports would share the links with the measurement.
    with nu.Simulation(workdir=workdir, seed=1, ipv6=False) as sim:
        a = sim.add_node("a")
        r = sim.add_node("r", sysctls={"net.ipv4.ip_forward": "1"})
        b = sim.add_node("b")
        for (left, right), (subnet, rate, delay) in zip([(a, r), (r, b)], LINKS):
            sim.point_to_point(left, right, rate=f"{rate:.0f}bps", delay=f"{delay}s",
                               subnet=subnet)
        a.add_route("10.2.0.0/24", via=r.ips[0])  # r is 10.1.0.2 and 10.2.0.1
        b.add_route("default", via=r.ips[1])
        a.run(f"ping -c 3 {b.ip}")
        # r and b stay up while a pings (a guest powers off after its last command).
        r.run("sleep 5")
        r.run("cat /proc/net/snmp", name="snmp")
        b.run("sleep 5")
        sim.run(until="30s")
        ping = a.result("ping").stdout
        snmp = r.result("snmp").stdout

    print(ping)
    ttls = [int(t) for t in re.findall(r"ttl=(\d+)", ping)]
    rtt = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/", ping)
    measured = [float(x) / 1e3 for x in rtt.groups()] if rtt else []
    # Each way crosses both links: serialization of the frame plus propagation on each.
    predicted = 2 * sum(FRAME_BYTES * 8 / rate + delay for _, rate, delay in LINKS)
    ip_names, ip_values = (line.split()[1:] for line in snmp.splitlines()
                           if line.startswith("Ip:"))
    forwarded = int(dict(zip(ip_names, ip_values))["ForwDatagrams"])
    print(f"TTLs of the replies:     {ttls}")
    print(f"RTT predicted:           {predicted * 1e3:.3f} ms")
    print("RTT measured (min/avg/max): " + "/".join(f"{m * 1e3:.3f}" for m in measured) + " ms")
    print(f"datagrams r forwarded:   {forwarded}")

    problems = []
    if ttls != [63] * 3:
        problems.append(f"expected 3 replies with TTL 63, got {ttls}")
    if not measured or any(abs(m - predicted) > TOLERANCE_S for m in measured):
        problems.append(f"RTTs {[round(m * 1e3, 3) for m in measured]} ms do not match "
                        f"the model's {predicted * 1e3:.3f} ms")
    if forwarded != 6:
        problems.append(f"r forwarded {forwarded} datagrams, expected 6")
    if problems:
        sys.exit("FAILED: " + "; ".join(problems))
    print("OK: r routes between the subnets, and the RTT is the sum of both links' model")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/router",
                        help="where the guests' files and pcaps go (default: %(default)s)")
    main(parser.parse_args().workdir)
