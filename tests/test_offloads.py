"""Offloads (checksum offload, TSO/USO): a guest's large frames leave the bridge as the wire
frames a TSO NIC would send, and every frame in every pcap is an ordinary, valid one.

Real guests (iperf3 over point-to-point, CSMA and Wi-Fi; a native ns-3 node), the segmenter
alone (crafted frames through cppyy), and fake guests sending malformed GSO headers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

import ns3_uml
import ns3_uml as nu
from ns3_uml import CalendarError
from ns3_uml import vhost_protocol as vp

IPERF_SECONDS = 4
RATE = 10_000_000
MTU = 1500
MSS = 1448  # 1500 - 20 (IPv4) - 20 (TCP) - 12 (timestamps)
PORT = 5201

# ------------------------------------------------------------------ pcap checks

LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_RADIOTAP = 127
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
PPP_IP, PPP_IPV6 = 0x0021, 0x0057
LLC_SNAP = bytes.fromhex("aaaa03000000")


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def _l4_valid(pseudo: bytes, proto: int, segment: bytes) -> bool:
    """A TCP/UDP checksum over the pseudo-header (addresses) and the segment is valid."""
    total = _sum16(pseudo) + proto + len(segment) + _sum16(segment)
    return _fold(total) == 0xFFFF


@dataclass
class PcapStats:
    """What the checks saw in one pcap."""

    frames: int = 0
    ip_frames: int = 0
    tcp_data: int = 0
    tcp_payload: int = 0
    largest_l3: int = 0
    ipv6_tcp: int = 0
    problems: list[str] = field(default_factory=list)
    #: (src, dst, ip id) of every IPv4 TCP data segment, in order.
    ids: list[tuple[bytes, bytes, int]] = field(default_factory=list)


def _l3_of(linktype: int, frame: bytes) -> tuple[int, bytes, int] | None:
    """(ethertype, L3 bytes, link framing bytes) of a captured frame; None if not IP."""
    if linktype == LINKTYPE_PPP:
        proto = struct.unpack("!H", frame[:2])[0]
        kind = {PPP_IP: ETH_P_IP, PPP_IPV6: ETH_P_IPV6}.get(proto)
        return None if kind is None else (kind, frame[2:], 2)
    if linktype == LINKTYPE_ETHERNET:
        (kind,) = struct.unpack("!H", frame[12:14])
        return (kind, frame[14:], 14) if kind in (ETH_P_IP, ETH_P_IPV6) else None
    if linktype == LINKTYPE_RADIOTAP:
        (rt_len,) = struct.unpack("<H", frame[2:4])
        mac = frame[rt_len:]
        fc0, fc1 = mac[0], mac[1]
        if (fc0 >> 2) & 3 != 2:  # not a data frame
            return None
        hlen = 24 + (6 if fc1 & 3 == 3 else 0)
        if fc0 & 0x80:  # QoS data
            hlen += 2 + (4 if fc1 & 0x80 else 0)
        llc = mac[hlen:hlen + 8]
        if llc[:6] != LLC_SNAP:
            return None
        (kind,) = struct.unpack("!H", llc[6:8])
        if kind not in (ETH_P_IP, ETH_P_IPV6):
            return None
        return kind, mac[hlen + 8:], 0  # the MTU counts from the LLC header's end
    raise AssertionError(f"unexpected pcap link type {linktype}")


def check_pcap(path: Path) -> PcapStats:
    """Parse a pcap: every IP frame no larger than the MTU, with valid IPv4 header checksums,
    consistent lengths and valid TCP/UDP checksums (IPv4 and IPv6)."""
    data = path.read_bytes()
    magic, _, _, _, _, _, linktype = struct.unpack("<IHHiIII", data[:24])
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), path
    stats = PcapStats()
    pos = 24
    while pos < len(data):
        _, _, incl, orig = struct.unpack("<IIII", data[pos:pos + 16])
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        stats.frames += 1
        assert incl == orig, f"{path}: frame {stats.frames} truncated in the capture"
        got = _l3_of(linktype, frame)
        if got is None:
            continue
        kind, l3, _ = got
        stats.ip_frames += 1
        n = stats.frames

        def bad(what: str) -> None:
            stats.problems.append(f"frame {n}: {what}")

        if kind == ETH_P_IP:
            ihl = (l3[0] & 15) * 4
            (tot_len,) = struct.unpack("!H", l3[2:4])
            if l3[0] >> 4 != 4 or tot_len > len(l3) or tot_len < ihl:
                bad(f"IPv4 total length {tot_len} of {len(l3)} bytes")
                continue
            if _fold(_sum16(l3[:ihl])) != 0xFFFF:
                bad("IPv4 header checksum")
            l3 = l3[:tot_len]
            proto, pseudo, payload = l3[9], l3[12:20], l3[ihl:]
            ip_id = struct.unpack("!H", l3[4:6])[0]
        else:
            (plen,) = struct.unpack("!H", l3[4:6])
            if l3[0] >> 4 != 6 or 40 + plen > len(l3):
                bad(f"IPv6 payload length {plen} of {len(l3)} bytes")
                continue
            l3 = l3[:40 + plen]
            proto, pseudo, payload = l3[6], l3[8:40], l3[40:]
            ip_id = None
        stats.largest_l3 = max(stats.largest_l3, len(l3))
        if len(l3) > MTU:
            bad(f"{len(l3)} bytes of IP, more than the MTU")
        if proto in (6, 17) and not _l4_valid(pseudo, proto, payload):
            bad(f"{'TCP' if proto == 6 else 'UDP'} checksum")
        if proto == 6:
            data_len = len(payload) - (payload[12] >> 4) * 4
            if data_len > 0:
                stats.tcp_data += 1
                stats.tcp_payload += data_len
                if ip_id is None:
                    stats.ipv6_tcp += 1
                else:
                    stats.ids.append((pseudo[:4], pseudo[4:], ip_id))
    return stats


def assert_valid(paths: list[Path], min_data: int = 100) -> list[PcapStats]:
    out = []
    for p in paths:
        s = check_pcap(p)
        assert not s.problems, (p, s.problems[:10])
        out.append(s)
    assert max(s.tcp_data for s in out) >= min_data, [(p, s.tcp_data) for p, s in zip(paths, out)]
    return out


# ------------------------------------------------------------------ real guests

TX_PACKETS = "cat /sys/class/net/eth0/statistics/tx_packets"


def _iperf_pair(sim: nu.Simulation, server: str, client: str, target: str,
                seconds: int = IPERF_SECONDS, extra: str = "") -> None:
    sim.node(server).run("iperf3 -s -1", background=True, name="server")
    sim.node(client).run(f"iperf3 -c {target} -t {seconds} -J {extra}".strip(), at="1.5s",
                         name="iperf")
    sim.node(client).run(TX_PACKETS, name="tx_packets")


def _goodput(sim: nu.Simulation, client: str) -> float:
    r = sim.node(client).result("iperf")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr
    return float(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"])


def _guest_tx_packets(sim: nu.Simulation, node: str) -> int:
    r = sim.node(node).result("tx_packets")
    assert r.returncode == 0, r.stderr
    return int(r.stdout)


def _pcap_paths(sim: nu.Simulation) -> list[Path]:
    return [Path(p) for p in sim.pcaps()["path"]]


def _gso_was_used(sim: nu.Simulation, sender: str, stats: list[PcapStats]) -> None:
    # The guest counts one packet per GSO frame; the wire carries its segments.
    wire = max(s.tcp_data for s in stats)
    guest = _guest_tx_packets(sim, sender)
    assert guest < 0.8 * wire, (guest, wire)


@pytest.mark.parametrize("link", ["p2p", "csma"])
def test_tcp_with_offloads_fills_the_link_with_valid_frames(uml_kernel: Path, tmp_path: Path,
                                                            link: str) -> None:
    with nu.Simulation(tmp_path / "run", seed=1, ipv6=False) as sim:
        sim.add_node("a")
        sim.add_node("b")
        if link == "p2p":
            sim.point_to_point("a", "b", rate=f"{RATE}bps", delay="10ms")
            framing = 2  # PPP
        else:
            sim.csma(["a", "b"], rate=f"{RATE}bps", delay="0.1ms")
            framing = 14 + 4  # Ethernet header and FCS
        _iperf_pair(sim, "b", "a", sim.node("b").ip)
        sim.run(until="30s")
        received = _goodput(sim, "a")
        stats = assert_valid(_pcap_paths(sim))
    allowed = RATE * MSS / (MTU + framing)
    assert received == pytest.approx(allowed, rel=0.05), (received, allowed)
    assert max(s.largest_l3 for s in stats) == MTU
    _gso_was_used(sim, "a", stats)
    # IPv4 ids: one more per segment of a flow's GSO frame, as Linux's software GSO
    # counts them; no id repeats within a flow's data segments.
    sender = max(stats, key=lambda s: s.tcp_data)
    ids = [i for src, _, i in sender.ids if src == bytes([10, 0, 0, 1])]
    assert len(set(ids)) == len(ids)


def test_tcp_over_ipv6_with_offloads(uml_kernel: Path, tmp_path: Path) -> None:
    # Simulation addresses links with IPv4 only; the guests add IPv6 addresses themselves
    # (DAD is off in guests) and iperf3 runs over them.
    with nu.Simulation(tmp_path / "run", seed=1) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")
        sim.point_to_point("a", "b", rate=f"{RATE}bps", delay="10ms")
        a.run("ip -6 addr add fd00::1/64 dev eth0 nodad")
        b.run("ip -6 addr add fd00::2/64 dev eth0 nodad")
        _iperf_pair(sim, "b", "a", "fd00::2", extra="-6")
        sim.run(until="30s")
        received = _goodput(sim, "a")
        stats = assert_valid(_pcap_paths(sim))
    assert max(s.ipv6_tcp for s in stats) >= 100
    # IPv6 header 40 bytes: MSS 1428 with timestamps.
    allowed = RATE * (MTU - 40 - 32) / (MTU + 2)
    assert received == pytest.approx(allowed, rel=0.05), (received, allowed)
    _gso_was_used(sim, "a", stats)


def _wifi_goodput(tmp_path: Path, offloads: bool) -> tuple[float, list[PcapStats]]:
    with nu.Simulation(tmp_path / f"run-{offloads}", seed=1, ipv6=False,
                       offloads=offloads) as sim:
        sim.add_node("ap")
        sim.add_node("sta")
        sim.wifi(["sta"], ap="ap", data_mode="OfdmRate24Mbps")
        _iperf_pair(sim, "ap", "sta", sim.node("ap").ip, seconds=3)
        sim.run(until="30s")
        return _goodput(sim, "sta"), assert_valid(_pcap_paths(sim))


def test_tcp_over_wifi_with_offloads(uml_kernel: Path, tmp_path: Path) -> None:
    on, stats = _wifi_goodput(tmp_path, True)
    off, _ = _wifi_goodput(tmp_path, False)
    # The Wi-Fi MAC's overhead has no simple formula: offloads must not change the goodput.
    assert on == pytest.approx(off, rel=0.05), (on, off)
    assert on > 10e6, on


_BULK_TO_GUEST = 1_000_000
# ns-3 sends no MSS option: Linux then sends it 536-byte segments, slowly.
_GUEST_TO_NATIVE = 1_000_000
# Runs in the guest: receive the native node's bulk data, then send it a bulk of its own.
_GUEST_TCP = """
import fcntl, socket, struct, sys, termios, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("", 5000))
srv.listen(1)
conn, _ = srv.accept()
got = 0
while True:
    b = conn.recv(65536)
    if not b:
        break
    got += len(b)
print(got)
out = socket.create_connection((sys.argv[1], 9))
out.sendall(bytes(int(sys.argv[2])))
while struct.unpack("i", fcntl.ioctl(out, termios.TIOCOUTQ, bytes(4)))[0]:
    time.sleep(0.05)  # until every byte is acknowledged: then the guest may power off
out.close()
"""


@contextlib.contextmanager
def _ns3_tcp_mss(ns: Any) -> Iterator[None]:
    """ns-3's TCP sending full-size segments (its default, 536, makes a bulk transfer
    crawl); process-wide, so put back afterwards."""
    ns.Config.SetDefault("ns3::TcpSocket::SegmentSize", ns.UintegerValue(MSS))
    try:
        yield
    finally:
        ns.Config.SetDefault("ns3::TcpSocket::SegmentSize", ns.UintegerValue(536))


def test_native_node_exchanges_tcp_with_a_guest(uml_kernel: Path, tmp_path: Path) -> None:
    import shlex

    with nu.Simulation(tmp_path / "run", seed=1, ipv6=False) as sim, _ns3_tcp_mss(sim.ns):
        ns = sim.ns
        g = sim.add_node("g")
        native = sim.add_native_node("n")
        sim.csma(["g", "n"], rate="100Mbps", delay="1ms")
        g.run(f"python3 -c {shlex.quote(_GUEST_TCP)} {native.ip} {_GUEST_TO_NATIVE}",
              name="tcp")
        sink = ns.PacketSinkHelper("ns3::TcpSocketFactory",
                                   ns.InetSocketAddress(ns.Ipv4Address.GetAny(), 9).ConvertTo())
        sinks = sink.Install(native.ns3_node)
        sinks.Start(ns.Seconds(0))
        bulk = ns.BulkSendHelper("ns3::TcpSocketFactory",
                                 ns.InetSocketAddress(ns.Ipv4Address(g.ip), 5000).ConvertTo())
        bulk.SetAttribute("MaxBytes", ns.UintegerValue(_BULK_TO_GUEST))
        apps = bulk.Install(native.ns3_node)
        apps.Start(ns.Seconds(3))  # the guest listens by then
        sim.run(until="30s")
        r = g.result("tcp")
        assert r.returncode == 0, r.stderr
        assert int(r.stdout) == _BULK_TO_GUEST
        received = sinks.Get(0).GetObject[ns.PacketSink]().GetTotalRx()
        assert received == _GUEST_TO_NATIVE
        stats = assert_valid(_pcap_paths(sim))
    assert max(s.largest_l3 for s in stats) == MTU  # ns-3's full segments reached the guest


def test_offloads_repeat_bit_for_bit(uml_kernel: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    digests = []
    for attempt in range(2):
        # The second time with the other core busy: host load must change nothing.
        hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
               if attempt else None)
        try:
            with nu.Simulation(tmp_path / f"run{attempt}", seed=1, ipv6=False) as sim:
                sim.add_node("a")
                sim.add_node("b")
                sim.csma(["a", "b"], rate="100Mbps", delay="0.1ms")
                _iperf_pair(sim, "b", "a", sim.node("b").ip, seconds=2)
                sim.run(until="20s")
                paths = _pcap_paths(sim)
                out = sim.node("a").result("iperf").stdout
        finally:
            if hog:
                hog.kill()
                hog.wait()
        assert_valid(paths)
        digests.append(([hashlib.sha256(p.read_bytes()).hexdigest() for p in paths],
                        json.loads(out)["end"]["sum_received"]["bytes"]))
    assert digests[0] == digests[1]
