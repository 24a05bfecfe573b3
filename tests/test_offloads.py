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
from pcapfile import read_pcap

# The fake-guest set-up of the plain device's tests (the fixture and the script steps).
from test_vhost_backend import (CLIENT_IDS, CONNECT, _compiled_helpers, chain,  # noqa: F401
                                mac, sim, sleep)

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
    #: (src, dst and ports, ip id) of every IPv4 TCP data segment, in order.
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
    linktype, records = read_pcap(path)
    stats = PcapStats()
    for frame, orig in records:
        stats.frames += 1
        assert len(frame) == orig, f"{path}: frame {stats.frames} truncated in the capture"
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
                    # (source, destination and ports: the flow, id)
                    stats.ids.append((pseudo[:4], pseudo[4:] + payload[:4], ip_id))
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


def _tcp_pair(tmp_path: Path, link: str, offloads: bool = True
              ) -> tuple[nu.Simulation, float, list[PcapStats]]:
    """Guest a sends to guest b with iperf3 over a 10 Mbit/s link of kind ``link``."""
    with nu.Simulation(tmp_path / f"run-{offloads}", seed=1, ipv6=False,
                       offloads=offloads) as sim:
        sim.add_node("a")
        sim.add_node("b")
        if link == "p2p":
            sim.point_to_point("a", "b", rate=f"{RATE}bps", delay="10ms")
        else:
            sim.csma(["a", "b"], rate=f"{RATE}bps", delay="0.1ms")
        _iperf_pair(sim, "b", "a", sim.node("b").ip)
        sim.run(until="30s")
        received = _goodput(sim, "a")
    return sim, received, assert_valid(_pcap_paths(sim))  # complete once the sim is closed


def test_tcp_with_offloads_fills_a_point_to_point_link_with_valid_frames(
        uml_kernel: Path, tmp_path: Path) -> None:
    sim, received, stats = _tcp_pair(tmp_path, "p2p")
    allowed = RATE * MSS / (MTU + 2)  # + 2 bytes of PPP per frame
    assert received == pytest.approx(allowed, rel=0.05), (received, allowed)
    assert max(s.largest_l3 for s in stats) == MTU
    _gso_was_used(sim, "a", stats)
    # IPv4 ids: one more per segment of a flow's GSO frame, as Linux's software GSO
    # counts them; no id repeats within a flow's data segments (iperf3's control and data
    # connections each count from a random start of their own, and may overlap).
    sender = max(stats, key=lambda s: s.tcp_data)
    flows: dict[bytes, list[int]] = {}
    for src, flow, i in sender.ids:
        if src == bytes([10, 0, 0, 1]):
            flows.setdefault(flow, []).append(i)
    assert flows and all(len(set(ids)) == len(ids) for ids in flows.values())


def test_tcp_through_a_small_device_queue_loses_nothing(uml_kernel: Path,
                                                         tmp_path: Path) -> None:
    # The sender's GSO bursts (up to 45 segments) meet a device queue of 10 frames: with
    # the bridge's flow control the guest's own queueing holds what does not fit, so no
    # segment is lost and TCP never retransmits.
    with nu.Simulation(tmp_path, seed=1, ipv6=False) as sim:
        sim.add_node("a")
        sim.add_node("b")
        devices = sim.point_to_point("a", "b", rate="1Gbps", delay="0.1ms")
        queues = [devices.Get(i).GetQueue() for i in range(2)]
        for q in queues:
            q.SetMaxSize(sim.ns.QueueSize("10p"))
        sim.node("b").run("iperf3 -s -1", background=True, name="server")
        sim.node("a").run(f"iperf3 -c {sim.node('b').ip} -n 8M -J", at="1.5s", name="iperf")
        sim.node("a").run(TX_PACKETS, name="tx_packets")
        sim.run(until="30s")
        r = sim.node("a").result("iperf")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        end = json.loads(r.stdout)["end"]
        assert end["sum_sent"]["retransmits"] == 0
        assert [int(q.GetTotalDroppedPackets()) for q in queues] == [0, 0]
        assert int(queues[0].GetTotalReceivedPackets()) > 8e6 / MSS
    stats = assert_valid(_pcap_paths(sim))
    _gso_was_used(sim, "a", stats)


def test_tcp_with_offloads_over_csma(uml_kernel: Path, tmp_path: Path) -> None:
    # CSMA is one half-duplex channel: the ACKs contend with the data (back-offs), so TCP
    # gets about 7.6 of the 10 Mbit/s with or without offloads. Offloads must change
    # nothing of that.
    sim, on, stats = _tcp_pair(tmp_path, "csma")
    _gso_was_used(sim, "a", stats)
    assert max(s.largest_l3 for s in stats) == MTU
    _, off, _ = _tcp_pair(tmp_path, "csma", offloads=False)
    assert on == pytest.approx(off, rel=0.05), (on, off)
    assert on > 0.7 * RATE, on


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
        received = _goodput(sim, "sta")
    return received, assert_valid(_pcap_paths(sim))


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


# ------------------------------------------------------------------ the segmenter alone

def test_offload_constants_match_the_core() -> None:
    import cppyy

    ns3_uml._native.load()
    v = cppyy.gbl.ns3.vhost
    for name in ("CSUM", "GUEST_CSUM", "HOST_TSO4", "HOST_TSO6", "HOST_ECN", "HOST_USO",
                 "GUEST_TSO4", "GUEST_TSO6", "GUEST_ECN", "MRG_RXBUF"):
        assert getattr(v, f"VIRTIO_NET_F_{name}") == 1 << vp.NetFeature[name], name
    for name in ("NEEDS_CSUM", "DATA_VALID", "RSC_INFO"):
        assert getattr(v, f"NET_HDR_F_{name}") == getattr(vp, f"VIRTIO_NET_HDR_F_{name}")
    for name in ("NONE", "TCPV4", "UDP", "TCPV6", "UDP_L4", "ECN"):
        assert getattr(v, f"NET_HDR_GSO_{name}") == getattr(vp, f"VIRTIO_NET_HDR_GSO_{name}")
    assert v.NET_HDR_OFF_NUM_BUFFERS == vp.VIRTIO_NET_HDR_OFF_NUM_BUFFERS
    assert v.NET_MTU == vp.ETH_DATA_LEN
    assert cppyy.gbl.ns3.GsoSegmenter.OFFERED_FEATURES == ALL_OFFLOADS
    assert cppyy.gbl.ns3.RxMerger.OFFERED_FEATURES == vp.RX_MERGE_FEATURES


_SEGMENTER = r"""
#include "gso-segmenter.h"
namespace ns3uml_gso_test {
// Every wire frame for one buffer (as bytes), or the error as its only element after "!".
std::vector<std::string> Segment(uint64_t features, const std::string& buffer) {
    std::vector<std::string> out;
    std::vector<uint8_t> b(buffer.begin(), buffer.end());
    ns3::GsoSegmenter segmenter;
    try {
        segmenter.Process(features, b.data(), b.data() + ns3::vhost::NET_HDR_SIZE,
                          b.size() - ns3::vhost::NET_HDR_SIZE,
                          [&out](const uint8_t* f, size_t n) {
                              out.emplace_back(reinterpret_cast<const char*>(f), n);
                          });
    } catch (const ns3::GsoError& e) {
        return {std::string("!") + e.what()};
    }
    return out;
}
}
"""

ALL_OFFLOADS = ((1 << vp.NetFeature.CSUM) | (1 << vp.NetFeature.GUEST_CSUM)
                | (1 << vp.NetFeature.HOST_TSO4) | (1 << vp.NetFeature.HOST_TSO6)
                | (1 << vp.NetFeature.HOST_ECN) | (1 << vp.NetFeature.HOST_USO))
MAC_A, MAC_B = bytes.fromhex("027500000000"), bytes.fromhex("027500000001")
SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6, DST6 = bytes.fromhex("fd00" + "00" * 13 + "01"), bytes.fromhex("fd00" + "00" * 13 + "02")
TCP_FIN, TCP_PSH, TCP_ACK, TCP_CWR = 0x01, 0x08, 0x10, 0x80
TS_OPTION = bytes.fromhex("0101080a0000000100000002")  # NOP NOP timestamps


def _segment(features: int, buffer: bytes) -> list[bytes]:
    import cppyy

    ns3_uml._native.load()
    if not hasattr(cppyy.gbl, "ns3uml_gso_test"):
        cppyy.cppdef(_SEGMENTER)
    out = [bytes(s) for s in cppyy.gbl.ns3uml_gso_test.Segment(features, buffer)]
    if len(out) == 1 and out[0][:1] == b"!":
        raise ValueError(out[0][1:].decode())
    return out


def _hdr(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         csum_start: int = 0, csum_offset: int = 0) -> bytes:
    return vp.VIRTIO_NET_HDR_MRG.pack(flags, gso_type, hdr_len, gso_size, csum_start,
                                      csum_offset, 0)


def _tcp(payload: bytes, flags: int, seq: int = 1000) -> bytes:
    # the checksum field holds the pseudo-header's sum, as Linux leaves it: ignored for GSO
    return struct.pack("!HHIIBBHHH", 40000, PORT, seq, 7, (20 + 12) // 4 << 4, flags, 500,
                       0x1234, 0) + TS_OPTION + payload


def _ipv4_tcp_frame(payload: bytes, flags: int, ip_id: int = 0xFFF0) -> bytes:
    tcp = _tcp(payload, flags)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0x02, 20 + len(tcp), ip_id, 0x4000, 64, 6, 0,
                     SRC4, DST4)
    return MAC_B + MAC_A + struct.pack("!H", ETH_P_IP) + ip + tcp


def _ipv6_frame(l4: bytes, next_header: int) -> bytes:
    ip = struct.pack("!IHBB16s16s", 0x60000000, len(l4), next_header, 64, SRC6, DST6)
    return MAC_B + MAC_A + struct.pack("!H", ETH_P_IPV6) + ip + l4


def _valid_l3(frame: bytes) -> tuple[bytes, bytes]:
    """(IP header, L4 bytes) of a wire frame whose lengths and checksums are all valid."""
    (kind,) = struct.unpack("!H", frame[12:14])
    l3 = frame[14:]
    if kind == ETH_P_IP:
        ihl = (l3[0] & 15) * 4
        assert struct.unpack("!H", l3[2:4])[0] == len(l3)
        assert _fold(_sum16(l3[:ihl])) == 0xFFFF
        assert _l4_valid(l3[12:20], l3[9], l3[ihl:])
        return l3[:ihl], l3[ihl:]
    assert struct.unpack("!H", l3[4:6])[0] == len(l3) - 40
    assert _l4_valid(l3[8:40], l3[6], l3[40:])
    return l3[:40], l3[40:]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_segmenter_cuts_a_64k_tcp_frame_as_linux_gso(family: str) -> None:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(65000 - 72))
    flags = TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR
    mss = 1448 if family == "ipv4" else 1428
    if family == "ipv4":
        frame = _ipv4_tcp_frame(payload, flags)
        gso, l4 = vp.VIRTIO_NET_HDR_GSO_TCPV4, 34
    else:
        frame = _ipv6_frame(_tcp(payload, flags), 6)
        gso, l4 = vp.VIRTIO_NET_HDR_GSO_TCPV6, 54
    header = _hdr(vp.VIRTIO_NET_HDR_F_NEEDS_CSUM, gso | vp.VIRTIO_NET_HDR_GSO_ECN, 66, mss,
                  l4, 16)
    segments = _segment(ALL_OFFLOADS, header + frame)
    count = -(-len(payload) // mss)
    assert len(segments) == count
    data = b""
    for i, s in enumerate(segments):
        assert len(s) <= 14 + MTU
        assert s[:14] == frame[:14]
        ip, tcp = _valid_l3(s)
        if family == "ipv4":
            # ids count up from the frame's (wrapping), as inet_gso_segment numbers them
            assert struct.unpack("!H", ip[4:6])[0] == (0xFFF0 + i) & 0xFFFF
            assert ip[1] == 0x02 and ip[6:8] == b"\x40\x00"  # ECN bits and DF kept
        seq, ack = struct.unpack("!II", tcp[4:12])
        assert (seq, ack) == (1000 + i * mss, 7)
        expected = TCP_ACK
        expected |= TCP_CWR if i == 0 else 0
        expected |= TCP_PSH | TCP_FIN if i == count - 1 else 0
        assert tcp[13] == expected, (i, hex(tcp[13]))
        assert tcp[20:32] == TS_OPTION
        body = tcp[32:]
        assert len(body) == (mss if i < count - 1 else len(payload) - mss * (count - 1))
        data += body
    assert data == payload
    # Deterministic: the same bytes give the same frames.
    assert _segment(ALL_OFFLOADS, header + frame) == segments


def test_segmenter_cuts_udp_and_completes_checksums() -> None:
    # USO: datagrams of gso_size, each with its own length and checksum.
    payload = bytes(range(256)) * 20
    udp = struct.pack("!HHHH", 5000, 6000, 8 + len(payload), 0) + payload
    frame = _ipv6_frame(udp, 17)
    header = _hdr(vp.VIRTIO_NET_HDR_F_NEEDS_CSUM, vp.VIRTIO_NET_HDR_GSO_UDP_L4, 62, 1400, 54, 6)
    segments = _segment(ALL_OFFLOADS, header + frame)
    assert [len(s) - 62 for s in segments] == [1400, 1400, 1400, len(payload) - 4200]
    for k, s in enumerate(segments):
        _, l4 = _valid_l3(s)
        assert struct.unpack("!H", l4[4:6])[0] == len(l4)
        assert l4[8:] == payload[1400 * k:1400 * (k + 1)]
    # No GSO, NEEDS_CSUM: the checksum completed where csum_start/csum_offset say, over the
    # pseudo-header's sum Linux leaves in the field.
    tcp = bytearray(_tcp(b"hello", TCP_ACK | TCP_PSH))
    pseudo = _fold(_sum16(SRC4 + DST4) + 6 + len(tcp))
    tcp[16:18] = struct.pack("!H", pseudo)
    frame = bytearray(_ipv4_tcp_frame(b"hello", TCP_ACK | TCP_PSH))
    frame[34:] = tcp
    ip = frame[14:34]
    ip[10:12] = struct.pack("!H", 0xFFFF ^ _fold(_sum16(bytes(ip))))
    frame[14:34] = ip
    (out,) = _segment(ALL_OFFLOADS, _hdr(vp.VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0, 0, 34, 16)
                      + bytes(frame))
    _valid_l3(out)
    assert out[:50] == frame[:50] and out[52:] == frame[52:]
    # Nothing asked: the frame as it is.
    assert _segment(ALL_OFFLOADS, _hdr() + bytes(frame)) == [bytes(frame)]


_TCP4 = vp.VIRTIO_NET_HDR_GSO_TCPV4
_NEEDS = vp.VIRTIO_NET_HDR_F_NEEDS_CSUM
_GOOD4 = _ipv4_tcp_frame(bytes(4000), TCP_ACK)
_ARP = MAC_B + MAC_A + b"\x08\x06" + bytes(28)
# name: (features, header, frame, text in the error)
MALFORMED: dict[str, tuple[int, bytes, bytes, str]] = {
    "gso not negotiated": (1 << vp.NetFeature.CSUM, _hdr(_NEEDS, _TCP4, 66, 1448, 34, 16),
                           _GOOD4, "not negotiated"),
    "csum not negotiated": (0, _hdr(_NEEDS, 0, 0, 0, 34, 16), _GOOD4, "not negotiated"),
    "ECN not negotiated": (ALL_OFFLOADS & ~(1 << vp.NetFeature.HOST_ECN),
                           _hdr(_NEEDS, _TCP4 | 0x80, 66, 1448, 34, 16), _GOOD4,
                           "not negotiated"),
    "UFO": (ALL_OFFLOADS, _hdr(_NEEDS, vp.VIRTIO_NET_HDR_GSO_UDP, 42, 1400, 34, 6), _GOOD4,
            "not negotiated"),
    "unknown gso_type": (ALL_OFFLOADS, _hdr(_NEEDS, 2, 66, 1448, 34, 16), _GOOD4,
                         "unknown gso_type"),
    "DATA_VALID on transmit": (ALL_OFFLOADS, _hdr(vp.VIRTIO_NET_HDR_F_DATA_VALID), _GOOD4,
                               "flags other than NEEDS_CSUM"),
    "gso_size 0": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 66, 0, 34, 16), _GOOD4, "gso_size 0"),
    "gso_size past the MTU": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 66, 1449, 34, 16), _GOOD4,
                              "exceed the MTU of 1500"),
    "hdr_len past the frame": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 9000, 1448, 34, 16), _GOOD4,
                               "hdr_len 9000"),
    "csum past the frame": (ALL_OFFLOADS, _hdr(_NEEDS, 0, 0, 0, 60, 16), _ARP,
                            "outside a frame of 42 bytes"),
    "csum offset past the frame": (ALL_OFFLOADS, _hdr(_NEEDS, 0, 0, 0, 30, 11), _ARP,
                                   "outside a frame of 42 bytes"),
    "GSO csum_start not at TCP": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 66, 1448, 30, 16), _GOOD4,
                                  "csum_start 30"),
    "GSO without NEEDS_CSUM": (ALL_OFFLOADS, _hdr(0, _TCP4, 66, 1448, 34, 16), _GOOD4,
                               "without NEEDS_CSUM"),
    "GSO of ARP": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 42, 1448, 34, 16), _ARP,
                   "is not TCP over IPv4 or IPv6 (ethertype 0x0806)"),
    "TCPV6 of IPv4": (ALL_OFFLOADS, _hdr(_NEEDS, vp.VIRTIO_NET_HDR_GSO_TCPV6, 66, 1448, 34,
                                         16), _GOOD4, "is not TCP over IPv4 or IPv6"),
    "GSO of UDP as TCP": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 66, 1400, 34, 16),
                          _GOOD4[:23] + b"\x11" + _GOOD4[24:], "IP protocol 17"),
    "TCP header cut off": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 40, 1448, 34, 16), _GOOD4[:50],
                           "TCP header past the frame's end"),
    "IPv4 fragment": (ALL_OFFLOADS, _hdr(_NEEDS, _TCP4, 66, 1448, 34, 16),
                      _GOOD4[:20] + b"\x20\x00" + _GOOD4[22:], "IPv4 fragment"),
    "no GSO, too long": (ALL_OFFLOADS, _hdr(), _GOOD4, "transmit frame of 4066 bytes"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_segmenter_refuses_malformed_requests(case: str) -> None:
    features, header, frame, text = MALFORMED[case]
    with pytest.raises(ValueError) as err:
        _segment(features, header + frame)
    assert text in str(err.value)


# ------------------------------------------------------------------ a fake guest's GSO frames

def _gso_chain(buffer: bytes, piece: int = 4096) -> dict[str, Any]:
    """A transmit chain holding ``buffer`` over descriptors of ``piece`` bytes."""
    parts = [buffer[k:k + piece] for k in range(0, len(buffer), piece)]
    return chain(*({"data": p.hex(), "flags": vp.VRING_DESC_F_NEXT if k + 1 < len(parts) else 0}
                   for k, p in enumerate(parts)))


def _send_gso_frame(s: Any, then_ns: int) -> tuple[dict[str, Any], bytes]:
    """A fake guest hands over one 10 KiB TCP GSO frame (8 segments) at 2 us and sleeps
    then_ns more; returns its result and the buffer (header + frame) it sent."""
    frame = _ipv4_tcp_frame(bytes(range(256)) * 40, TCP_ACK | TCP_PSH)
    buffer = _hdr(_NEEDS, _TCP4, 66, 1448, 34, 16) + mac(1) + mac(0) + frame[12:]
    g = s.start(0, [sleep(1000), CONNECT, sleep(1000), _gso_chain(buffer), sleep(then_ns)],
                features=hex(ALL_OFFLOADS))
    s.run()
    return g.ok(), buffer


def test_fake_guest_gso_frame_enters_ns3_as_segments(sim: Any) -> None:
    s = sim(guests=1, offloads=True)
    r, buffer = _send_gso_frame(s, 100_000)
    assert r["fe"]["features"] & ALL_OFFLOADS == ALL_OFFLOADS
    sent = s.trace("GuestTx0")
    # Eight segments at the guest's time, back to back; the link then serializes them.
    assert [t for t, _ in sent] == [2000] * 8
    assert sent == [(2000, f) for f in _segment(ALL_OFFLOADS, buffer)]
    assert len(s.trace("link.MacTx0")) == 8


@pytest.mark.parametrize("flow_control", [True, False])
def test_fake_guest_gso_burst_waits_for_room_in_the_device_queue(sim: Any,
                                                                  flow_control: bool) -> None:
    # A device queue of 3 frames and a GSO frame of 8 segments. With flow control (the
    # default) the bridge hands a segment over only while the queue has room, as a NIC's
    # ring: all 8 go on the wire, the later ones as the link frees the queue. Without it
    # the queue drops what does not fit.
    s = sim(link="p2p", guests=1, offloads=True)
    s.bridges[0].SetAttribute("FlowControl", s.ns.BooleanValue(flow_control))
    queue = s.devices.Get(0).GetQueue()
    queue.SetMaxSize(s.ns.QueueSize("3p"))
    _, buffer = _send_gso_frame(s, 1_000_000)
    segments = _segment(ALL_OFFLOADS, buffer)
    sent = s.trace("GuestTx0")
    if not flow_control:
        assert [t for t, _ in sent] == [2000] * 8
        # one in transmission, three queued, the rest dropped
        assert int(queue.GetTotalDroppedPackets()) == 8 - 1 - 3
        return
    assert int(queue.GetTotalDroppedPackets()) == 0
    assert [f for _, f in sent] == segments and len(s.trace("link.MacTx0")) == 8
    # One in transmission and three queued at the guest's time; each later one when the
    # link has taken a frame off the queue (a frame's time on the wire apart).
    times = [t for t, _ in sent]
    assert times[:4] == [2000] * 4
    gaps = {b - a for a, b in zip(times[3:], times[4:])}
    assert len(gaps) == 1 and gaps.pop() > 0, times


@pytest.mark.parametrize("case", ["gso_size 0", "gso_size past the MTU", "GSO of ARP",
                                  "csum past the frame", "gso not negotiated"])
def test_fake_guest_with_a_malformed_gso_header_is_a_named_guest_error(sim: Any,
                                                                       case: str) -> None:
    features, header, frame, text = MALFORMED[case]
    s = sim(guests=1, offloads=True)
    g = s.start(0, [sleep(1000), CONNECT, sleep(1000), _gso_chain(header + frame),
                    sleep(100_000)], features=hex(features & ALL_OFFLOADS))
    with pytest.raises(CalendarError) as err:
        s.run()
    assert err.value.kind == "device" and err.value.client_id == CLIENT_IDS[0]
    message = str(err.value)
    assert message.startswith(f"client {CLIENT_IDS[0]}: virtio device {s.paths[0]}: ")
    assert text in message
    s.close()
    assert g.proc.returncode is not None
