"""Real guests on ns-3 links: frames travel through ns-3's models in simulated time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ns3_uml
from ns3_uml import links
from ns3_uml.bridge import bridge_interface, guest_mac
from ns3_uml.guest import GuestConfig, GuestProcess

PING_COUNT = 5
# The summary line has microseconds; per-packet lines round to 3 significant digits.
RTT_SUMMARY = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")


def _run_pair(tmp_path: Path, kernel: Path, link: str, rate_bps: int, delay_s: float,
              commands: dict[int, list[str]], until: str = "30s",
              shared_memory: bool = True) -> list[GuestProcess]:
    """Two guests (10.0.0.1 and .2) on one ns-3 link, each running its commands."""
    sock = tmp_path / "cal.sock"
    cal = ns3_uml.Calendar(sock, clients=2, shared_memory=shared_memory)
    ns = cal.ns
    guests: list[GuestProcess] = []
    try:
        nodes = ns.NodeContainer()
        nodes.Create(2)
        build = links.point_to_point if link == "p2p" else links.csma
        devices, helper = build(ns, [nodes.Get(0), nodes.Get(1)], f"{rate_bps}bps",
                                f"{round(delay_s * 1e9)}ns")
        helper.EnablePcapAll(str(tmp_path / link))
        for i in range(2):
            net = tmp_path / f"net{i}.sock"
            bridge_interface(nodes.Get(i), devices.Get(i), net, i + 1, guest_mac(i))
            cfg = GuestConfig(
                name=f"g{i}", client_id=i + 1, tt_socket=sock, workdir=tmp_path / f"g{i}",
                # No IPv6: its multicast reports would share the CSMA channel with the pings
                # and (rightly) delay one of them.
                commands=["sysctl -qw net.ipv6.conf.all.disable_ipv6=1",
                          "ip link set eth0 up", f"ip addr add 10.0.0.{i + 1}/24 dev eth0",
                          *commands[i]],
                extra_args=[f"virtio_uml.device={net}:1"],
            )
            g = GuestProcess(cfg, kernel=kernel)
            g.start()
            cal.register_process(i + 1, g.pid)
            guests.append(g)
        cal.run(until=until)
        for g in guests:
            g.wait(timeout=60)
    finally:
        for g in guests:
            g.kill()
        cal.close()
    assert not sock.exists()
    return guests


# An echo request or reply: 84 bytes of IPv4; on point-to-point + 2 bytes of PPP; on CSMA
# + 14 of Ethernet + 4 of FCS (no padding: above the 64-byte minimum).
FRAME_BYTES = {"p2p": 84 + 2, "csma": 84 + 14 + 4}


@pytest.mark.parametrize(
    "link,rate_bps,delay_s",
    [("p2p", 100_000_000, 0.005), ("p2p", 10_000_000, 0.020), ("csma", 100_000_000, 0.005),
     ("csma", 10_000_000, 0.001)],
)
def test_ping_rtt_is_the_link_model(uml_kernel, tmp_path, link, rate_bps, delay_s):
    commands = {
        # The first exchange resolves the neighbour (real ARP on CSMA: one more round trip);
        # the measured pings come after it.
        0: ["ping -c 1 10.0.0.2", f"ping -c {PING_COUNT} 10.0.0.2"],
        1: ["sleep 10"],
    }
    guests = _run_pair(tmp_path, uml_kernel, link, rate_bps, delay_s, commands)
    ping = guests[0].read_outputs()[-1]
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert f"{PING_COUNT} received" in ping.stdout
    rtts = [float(x) / 1000 for x in RTT_SUMMARY.search(ping.stdout).groups()[:3]]
    expected = 2 * delay_s + 2 * FRAME_BYTES[link] * 8 / rate_bps
    for rtt in rtts:  # min, avg and max: every RTT
        # ping prints 3 decimals of ms: 1 us of rounding on top of the 20 us allowed.
        assert rtt == pytest.approx(expected, abs=21e-6), (rtts, expected)


def test_iperf3_tcp_fills_the_link(uml_kernel, tmp_path):
    import json

    rate, delay = 10_000_000, 0.010
    commands = {
        0: ["sleep 1", "iperf3 -c 10.0.0.2 -t 8 -J"],
        1: ["iperf3 -s -1 -D", "sleep 12"],
    }
    guests = _run_pair(tmp_path, uml_kernel, "p2p", rate, delay, commands, until="40s")
    run = guests[0].read_outputs()[-1]
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    report = json.loads(run.stdout)
    received = report["end"]["sum_received"]["bits_per_second"]
    # TCP payload per frame: 1448 bytes (MSS with timestamps) of 1500 + 2 bytes of PPP.
    allowed = rate * 1448 / 1502
    assert received == pytest.approx(allowed, rel=0.05), (received, allowed)



@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_same_scenario_repeats_bit_for_bit(uml_kernel, tmp_path, shm):
    import hashlib
    import subprocess
    import sys

    commands = {
        0: ["ping -c 3 10.0.0.2", "iperf3 -c 10.0.0.2 -t 2",
            "cat /proc/sys/kernel/random/boot_id"],
        1: ["iperf3 -s -1 -D", "sleep 6", "cat /proc/sys/kernel/random/boot_id"],
    }
    digests = []
    for attempt in range(2):
        run = tmp_path / f"run{attempt}"
        run.mkdir()
        # The second time with the other core busy: host load must change nothing.
        hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
               if attempt else None)
        try:
            guests = _run_pair(run, uml_kernel, "csma", 100_000_000, 0.001, commands,
                               until="20s", shared_memory=shm)
        finally:
            if hog:
                hog.kill()
                hog.wait()
        pcaps = sorted(run.glob("*.pcap"))
        assert len(pcaps) == 2
        outputs = [(r.command, r.stdout, r.returncode) for g in guests for r in g.read_outputs()]
        assert all(rc == 0 for _, _, rc in outputs), outputs
        digests.append(([hashlib.sha256(p.read_bytes()).hexdigest() for p in pcaps], outputs))
    assert digests[0][0] == digests[1][0], "pcaps differ between identical runs"
    assert digests[0][1] == digests[1][1], "guest outputs differ between identical runs"
