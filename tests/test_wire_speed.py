"""Fewer crossings per frame with real guests (issue 13): EVENT_IDX, receive coalescing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import ns3_uml as nu

RTT_SUMMARY = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
RATE_BPS, DELAY_S = 100_000_000, 0.005
PING_FRAME_BYTES = 84 + 2  # an echo request or reply on point-to-point (PPP header)
MODEL_RTT_S = 2 * DELAY_S + 2 * PING_FRAME_BYTES * 8 / RATE_BPS


def _ping_pair(workdir: Path, rx_coalesce: str | None,
               extra: dict[str, list[str]] | None = None) -> tuple[nu.Simulation, Any]:
    sim = nu.Simulation(workdir=workdir, seed=1, ipv6=False)
    a = sim.add_node("a", run=["ping -c 1 10.0.0.2", "ping -c 5 10.0.0.2",
                               *(extra or {}).get("a", [])], rx_coalesce=rx_coalesce)
    sim.add_node("b", run=[*(extra or {}).get("b", []), "sleep 10"], rx_coalesce=rx_coalesce)
    sim.point_to_point("a", "b", rate=f"{RATE_BPS}bps", delay=f"{DELAY_S}s")
    return sim, a


def _rtts(node: Any) -> list[float]:
    ping = node.results()[1]
    assert ping.returncode == 0, ping.stdout + ping.stderr
    return [float(x) / 1000 for x in RTT_SUMMARY.search(ping.stdout).groups()[:3]]


@pytest.mark.parametrize("rx_coalesce,added_s", [(None, 0.0), ("50us", 100e-6)])
def test_ping_rtt_with_and_without_coalescing(uml_kernel: Path, tmp_path: Path,
                                              rx_coalesce: str | None, added_s: float) -> None:
    # Off: every frame reaches the guest at its arrival time, the RTT is the link model's.
    # On: a lone frame waits the whole window at each receiver, so a ping between two
    # coalescing guests takes the model's RTT plus twice the window.
    sim, a = _ping_pair(tmp_path, rx_coalesce)
    with sim:
        sim.run(until="20s")
        for node in sim.guests:
            # negotiated by the guests' virtio_ring (EVENT_IDX is a transport feature)
            assert all(v.UsesEventIdx() for v in node.virtio_devices), node.name
        for rtt in _rtts(a):
            # ping prints 3 decimals of ms: 1 us of rounding on top of the 20 us allowed
            assert rtt == pytest.approx(MODEL_RTT_S + added_s, abs=21e-6), rtt


def test_tcp_fills_the_link_with_coalescing_and_repeats(uml_kernel: Path, tmp_path: Path) -> None:
    # Coalescing changes when frames reach the guests, not how many or what they carry:
    # TCP still fills the link, and two runs write the same pcaps.
    pcaps = []
    for run in range(2):
        sim = nu.Simulation(workdir=tmp_path / f"run{run}", seed=1, ipv6=False)
        with sim:
            # a 500 us window holds about four full-size frames at 100 Mbit/s
            a = sim.add_node("a", run=["sleep 1", "iperf3 -c 10.0.0.2 -t 3 -R -J"],
                             rx_coalesce="500us")
            sim.add_node("b", run=["iperf3 -s -1"], rx_coalesce="500us")
            sim.point_to_point("a", "b", rate="100Mbps", delay="1ms")
            sim.run(until="10s")
            result = a.results()[-1]
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr
            received = json.loads(result.stdout)["end"]["sum_received"]["bits_per_second"]
            assert received == pytest.approx(100e6, rel=0.05)
            calls = sum(int(v.GetCallCount()) for n in sim.guests for v in n.virtio_devices)
            frames = sum(int(v.GetRxFrameCount()) for n in sim.guests
                         for v in n.virtio_devices)
            # RX and TX completion calls together, fewer than the frames received
            assert calls < frames
            files = dict(a.pcaps)
        pcaps.append({name: path.read_bytes() for name, path in files.items()})
    assert pcaps[0] == pcaps[1]


#: The usual tuning for 10 Gbit/s: socket buffers that let the window cover the path.
TCP_BUFFERS = ('sysctl -qw net.ipv4.tcp_rmem="4096 131072 33554432" '
               'net.ipv4.tcp_wmem="4096 16384 33554432"')


def test_tcp_fills_a_10_gigabit_link_with_offloads_and_coalescing(uml_kernel: Path,
                                                                  tmp_path: Path) -> None:
    # The fast path together (TSO, flow control, a 50 us window): the sender's bursts are
    # neither dropped nor stretched, so TCP gets what the wire carries (1448 bytes of every
    # 1502 on point-to-point) within 5 %, without a retransmission.
    with nu.Simulation(workdir=tmp_path, seed=1, ipv6=False) as sim:
        a = sim.add_node("a", run=[TCP_BUFFERS, "sleep 1", "iperf3 -c 10.0.0.2 -n 50M -J"],
                         rx_coalesce="50us")
        sim.add_node("b", run=[TCP_BUFFERS, "iperf3 -s -1"], rx_coalesce="50us")
        sim.point_to_point("a", "b", rate="10Gbps", delay="0.1ms")
        sim.run(until="20s")
        result = a.results()[-1]
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    end = json.loads(result.stdout)["end"]
    assert end["sum_sent"]["retransmits"] == 0
    wire = 10e9 * 1448 / 1502
    assert end["sum_received"]["bits_per_second"] == pytest.approx(wire, rel=0.05)
