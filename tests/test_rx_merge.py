"""Receive merging (issue "Wire speed"): with offloads, receive coalescing and RxMerge (off
by default), the TCP segments of one flow that wait together reach the guest as one GSO
frame, as a NIC with hardware GRO hands them over, spread over as many mergeable receive
buffers as it needs.

The merger alone (crafted segments through cppyy, checked against what Linux's GRO takes and
against the segmenter cutting the merged frame back), fake guests (the reference front-end
reading MRG_RXBUF and GSO headers), and real guests (bulk TCP, a forwarding router).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest

import ns3_uml
import ns3_uml as nu
from ns3_uml import vhost_protocol as vp
from ns3_uml.testing.vhost_frontend import DEFAULT_ACCEPTED_FEATURES

from test_offloads import (ALL_OFFLOADS, DST4, DST6, MAC_A, MAC_B, SRC4, SRC6, TCP_ACK,
                           TCP_CWR, TCP_FIN, TCP_PSH, TS_OPTION, _fold, _segment, _sum16,
                           assert_valid)
# The fake-guest set-up of the plain device's tests (the fixture and the script steps).
from test_vhost_backend import (CLIENT_IDS, CONNECT, CONNECT_NO_RX,  # noqa: F401
                                _compiled_helpers, sim, sleep)

MSS = 1448
MSS6 = 1428  # 1500 - 40 (IPv6) - 20 (TCP) - 12 (timestamps)
TCP_SYN, TCP_RST, TCP_URG, TCP_ECE = 0x02, 0x04, 0x20, 0x40
MERGE = ALL_OFFLOADS | vp.RX_MERGE_FEATURES
WINDOW_NS = 50_000
HDR = vp.VIRTIO_NET_HDR_MRG
NUM_BUFFERS = 6  # index of num_buffers in a VIRTIO_NET_HDR_MRG tuple

# ------------------------------------------------------------------ crafted segments


def _tcp_checksum(pseudo: bytes, tcp: bytes) -> int:
    return 0xFFFF - _fold(_sum16(pseudo) + 6 + len(tcp) + _sum16(tcp))


def seg(i: int = 0, payload: int | None = None, *, flags: int = TCP_ACK, seq: int | None = None,
        ip_id: int | None = None, ack: int = 7, window: int = 500, port: int = 40000,
        options: bytes = TS_OPTION, ipv6: bool = False, tos: int = 0, ttl: int = 64,
        df: bool = True) -> bytes:
    """Segment i of a bulk flow (sequence numbers and ids counting up), with valid
    checksums, as ns-3 delivers it."""
    mss = MSS6 if ipv6 else MSS
    data = bytes((i * 131 + k * 7) & 0xFF for k in range(mss if payload is None else payload))
    seq = 1000 + i * mss if seq is None else seq
    hlen = 20 + len(options)
    head = struct.pack("!HHIIBBHHH", port, 5201, seq, ack, hlen // 4 << 4, flags, window, 0, 0)
    tcp = head + options + data
    if ipv6:
        pseudo = SRC6 + DST6
        tcp = tcp[:16] + struct.pack("!H", _tcp_checksum(pseudo, tcp)) + tcp[18:]
        ip = struct.pack("!IHBB16s16s", 0x60000000 | tos << 20, len(tcp), 6, ttl, SRC6, DST6)
        return MAC_B + MAC_A + struct.pack("!H", 0x86DD) + ip + tcp
    pseudo = SRC4 + DST4
    tcp = tcp[:16] + struct.pack("!H", _tcp_checksum(pseudo, tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(tcp), 0x100 + i if ip_id is None
                     else ip_id, 0x4000 if df else 0, ttl, 6, 0, SRC4, DST4)
    ip = ip[:10] + struct.pack("!H", 0xFFFF - _fold(_sum16(ip))) + ip[12:]
    return MAC_B + MAC_A + struct.pack("!H", 0x0800) + ip + tcp


_MERGER = r"""
#include "rx-merger.h"
namespace ns3uml_merge_test {
// What FlushRx hands on for these pending frames, in order: the header (12 bytes; zero for
// a frame passed as it is) and the frame.
std::vector<std::string> Merge(uint64_t features, const std::vector<std::string>& frames) {
    std::deque<std::vector<uint8_t>> q;
    for (const auto& f : frames) q.emplace_back(f.begin(), f.end());
    ns3::RxMerger merger;
    std::vector<std::string> out;
    while (!q.empty()) {
        size_t n = merger.Merge(q, features);
        if (n > 1) {
            const auto& m = merger.Frame();
            out.push_back(std::string(reinterpret_cast<const char*>(merger.Header()),
                                      ns3::vhost::NET_HDR_SIZE) +
                          std::string(m.begin(), m.end()));
        } else {
            out.push_back(std::string(ns3::vhost::NET_HDR_SIZE, '\0') +
                          std::string(q.front().begin(), q.front().end()));
        }
        q.erase(q.begin(), q.begin() + n);
    }
    return out;
}
}
"""


def merge(frames: list[bytes], features: int = MERGE) -> list[tuple[tuple[int, ...], bytes]]:
    """(header fields, frame) of what the guest is handed for these pending frames."""
    import cppyy

    ns3_uml._native.load()
    if not hasattr(cppyy.gbl, "ns3uml_merge_test"):
        cppyy.cppdef(_MERGER)
    given = cppyy.gbl.std.vector[cppyy.gbl.std.string]()
    for f in frames:
        given.push_back(f)
    out = [bytes(s) for s in cppyy.gbl.ns3uml_merge_test.Merge(features, given)]
    return [(HDR.unpack(o[:HDR.size]), o[HDR.size:]) for o in out]


def _runs(frames: list[bytes], features: int = MERGE) -> list[int]:
    """How many segments each frame handed to the guest holds."""
    out = []
    for hdr, frame in merge(frames, features):
        out.append(1 if hdr[1] == vp.VIRTIO_NET_HDR_GSO_NONE else
                   -(-(len(frame) - hdr[2]) // hdr[3]))
    return out


def _check_merged(hdr: tuple[int, ...], frame: bytes, segments: list[bytes], ipv6: bool,
                  ecn: bool = False) -> None:
    """The merged frame is the first segment's headers with the payloads after them, its
    header asks for exactly the segmentation that gives the segments back."""
    l4 = 54 if ipv6 else 34
    hdrs = l4 + 32  # TCP with timestamps
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers = hdr
    assert flags == vp.VIRTIO_NET_HDR_F_NEEDS_CSUM
    kind = vp.VIRTIO_NET_HDR_GSO_TCPV6 if ipv6 else vp.VIRTIO_NET_HDR_GSO_TCPV4
    assert gso_type == kind | (vp.VIRTIO_NET_HDR_GSO_ECN if ecn else 0)
    assert (hdr_len, gso_size, csum_start, csum_offset, num_buffers) == (
        hdrs, len(segments[0]) - hdrs, l4, 16, 0)
    assert frame[hdrs:] == b"".join(s[hdrs:] for s in segments)
    ip = frame[14:l4]
    if ipv6:
        assert struct.unpack("!H", ip[4:6])[0] == len(frame) - l4
        pseudo = ip[8:40]
    else:
        assert struct.unpack("!H", ip[2:4])[0] == len(frame) - 14
        assert _fold(_sum16(ip)) == 0xFFFF
        pseudo = ip[12:20]
    # CHECKSUM_PARTIAL: the pseudo-header's sum (with the whole TCP length), not complemented
    (check,) = struct.unpack("!H", frame[l4 + 16:l4 + 18])
    assert check == _fold(_sum16(pseudo) + 6 + len(frame) - l4)
    # The TCP header is the first's, with PSH/FIN of the last.
    first, last = segments[0][l4:l4 + 32], segments[-1][l4:l4 + 32]
    tcp = frame[l4:l4 + 32]
    assert tcp[:13] == first[:13] and tcp[14:16] == first[14:16] and tcp[18:] == first[18:]
    assert tcp[13] == first[13] | (last[13] & (TCP_PSH | TCP_FIN))
    # Cut again (as a guest that forwards it would have it cut), it gives the segments back.
    assert _segment(ALL_OFFLOADS, HDR.pack(*hdr) + frame) == segments


@pytest.mark.parametrize("ipv6", [False, True])
def test_a_burst_of_one_flow_becomes_one_gso_frame(ipv6: bool) -> None:
    segments = [seg(i, ipv6=ipv6) for i in range(30)] + [seg(30, 700, ipv6=ipv6,
                                                             flags=TCP_ACK | TCP_PSH)]
    ((hdr, frame),) = merge(segments)
    _check_merged(hdr, frame, segments, ipv6)
    # Deterministic: the same bytes give the same frame.
    assert merge(segments) == [(hdr, frame)]


def test_at_most_64k_of_ip_per_frame() -> None:
    # 45 full segments are 65,212 bytes of IP; a 46th would pass 65,535.
    segments = [seg(i) for i in range(50)]
    assert _runs(segments) == [45, 5]
    out = merge(segments)
    _check_merged(*out[0], segments[:45], False)
    assert len(out[0][1]) - 14 <= 0xFFFF


# name: (the frames, how many segments each frame the guest gets holds)
SPLITS = {
    "FIN ends a run, itself the last": (
        [seg(0), seg(1), seg(2, flags=TCP_ACK | TCP_FIN), seg(3), seg(4)], [3, 2]),
    "PSH ends a run, itself the last": (
        [seg(0), seg(1, flags=TCP_ACK | TCP_PSH), seg(2), seg(3)], [2, 2]),
    "a first segment with PSH goes alone": (
        [seg(0, flags=TCP_ACK | TCP_PSH), seg(1), seg(2)], [1, 2]),
    "SYN, RST, URG are not merged": (
        [seg(0), seg(1, flags=TCP_ACK | TCP_RST), seg(2, flags=TCP_ACK | TCP_URG), seg(3),
         seg(4, flags=TCP_SYN | TCP_ACK)], [1, 1, 1, 1, 1]),
    "CWR starts a new run": (
        [seg(0), seg(1), seg(2, flags=TCP_ACK | TCP_CWR), seg(3), seg(4)], [2, 3]),
    "ECE changes": ([seg(0), seg(1), seg(2, flags=TCP_ACK | TCP_ECE), seg(3)], [2, 1, 1]),
    "a different flow": ([seg(0), seg(1), seg(2, port=40001), seg(3), seg(4)], [2, 1, 2]),
    "an out-of-order segment": ([seg(0), seg(1), seg(3), seg(4), seg(2)], [2, 2, 1]),
    "a retransmission": ([seg(0), seg(1), seg(1), seg(2)], [2, 2]),
    "a shorter segment is the last": ([seg(0), seg(1), seg(2, 500), seg(3)], [3, 1]),
    "a longer segment than the first": (
        [seg(0, 1000), seg(1, seq=2000), seg(2, seq=2000 + MSS)], [1, 2]),
    "another ACK number": ([seg(0), seg(1), seg(2, ack=8), seg(3, ack=8)], [2, 2]),
    "another window": ([seg(0), seg(1, window=600), seg(2, window=600)], [1, 2]),
    "other timestamps": ([seg(0), seg(1, options=TS_OPTION[:-1] + b"\x03"),
                          seg(2, options=TS_OPTION[:-1] + b"\x03")], [1, 2]),
    "IPv4 ids not counting up": ([seg(0), seg(1), seg(2, ip_id=0x999), seg(3)], [2, 1, 1]),
    "a fixed IPv4 id (no FIXEDID in virtio)": ([seg(i, ip_id=5) for i in range(3)],
                                                [1, 1, 1]),
    "another TOS": ([seg(0), seg(1, tos=2), seg(2, tos=2)], [1, 2]),
    "another TTL": ([seg(0), seg(1), seg(2, ttl=63), seg(3, ttl=63)], [2, 2]),
    "DF differs": ([seg(0), seg(1, df=False), seg(2, df=False)], [1, 2]),
    "pure ACKs are not merged": ([seg(0, 0), seg(1, 0, seq=1000), seg(2, 0, seq=1000)],
                                 [1, 1, 1]),
    "IPv4 then IPv6": ([seg(0), seg(1), seg(2, ipv6=True), seg(3, ipv6=True)], [2, 2]),
    "IPv6 hop limit differs": ([seg(0, ipv6=True), seg(1, ipv6=True, ttl=1),
                                seg(2, ipv6=True, ttl=1)], [1, 2]),
}


@pytest.mark.parametrize("case", list(SPLITS))
def test_a_run_splits_where_gro_would(case: str) -> None:
    frames, runs = SPLITS[case]
    assert _runs(frames) == runs
    # Order and bytes are kept: the frames passed as they are, or cut back, are the input.
    out = []
    for hdr, frame in merge(frames):
        out += [frame] if hdr[1] == vp.VIRTIO_NET_HDR_GSO_NONE else _segment(
            ALL_OFFLOADS, HDR.pack(*hdr) + frame)
    assert out == frames


def test_a_run_starting_with_cwr_is_marked_ecn() -> None:
    segments = [seg(0, flags=TCP_ACK | TCP_CWR)] + [seg(i) for i in range(1, 5)]
    ((hdr, frame),) = merge(segments)
    _check_merged(hdr, frame, segments, False, ecn=True)
    # without GUEST_ECN it may not be: the CWR segment passes as it is, the rest merge
    assert _runs(segments, MERGE & ~(1 << vp.NetFeature.GUEST_ECN)) == [1, 4]


def test_only_what_was_negotiated_is_merged() -> None:
    v4 = [seg(i) for i in range(4)]
    v6 = [seg(i, ipv6=True) for i in range(4)]
    assert _runs(v4 + v6, MERGE & ~(1 << vp.NetFeature.GUEST_TSO6)) == [4, 1, 1, 1, 1]
    assert _runs(v4 + v6, MERGE & ~(1 << vp.NetFeature.GUEST_TSO4)) == [1, 1, 1, 1, 4]


def test_frames_that_are_not_tcp_pass_as_they_are() -> None:
    arp = MAC_B + MAC_A + b"\x08\x06" + bytes(28)
    udp = bytearray(seg(0))
    udp[23] = 17  # IPv4 protocol UDP (header checksum now wrong too)
    padded = seg(0, 4) + bytes(8)  # Ethernet padding: IP length != frame length
    frames = [arp, arp, bytes(udp), bytes(udp), padded, seg(1, 4, seq=1004)]
    assert merge(frames) == [(HDR.unpack(bytes(HDR.size)), f) for f in frames]


# ------------------------------------------------------------------ fake guests

def _fake_sim(sim: Any, coalesce_ns: int = WINDOW_NS) -> Any:
    """One fake guest's device with offloads, coalescing and RxMerge (off by default)."""
    s = sim(guests=1, offloads=True, rx_coalesce_ns=coalesce_ns)
    s.virtio[0].SetAttribute("RxMerge", s.ns.BooleanValue(True))
    return s


def test_the_device_offers_receive_merging_only_with_coalescing(sim: Any) -> None:
    plain = _fake_sim(sim, 0)
    g = plain.start(0, [sleep(1000), CONNECT, sleep(1000)], features=hex(MERGE))
    plain.run()
    r = g.ok()
    assert r["fe"]["device_features"] & vp.RX_MERGE_FEATURES == 0
    assert r["fe"]["features"] & MERGE == ALL_OFFLOADS


def _burst(s: Any, segments: list[bytes], at_ns: int = 10_000) -> None:
    for k, f in enumerate(segments):
        s.inject(0, at_ns + 1000 * k, f)


def _buffers(frame_len: int) -> int:
    return -(-(vp.VIRTIO_NET_HDR_LEN + frame_len) // vp.LINUX_MRG_RX_BUF_LEN)


def test_fake_guest_gets_a_burst_as_one_gso_frame_in_mergeable_buffers(sim: Any) -> None:
    s = _fake_sim(sim)
    segments = [seg(i) for i in range(20)]
    g = s.start(0, [sleep(1000), CONNECT, sleep(200_000)], features=hex(MERGE))
    _burst(s, segments)
    s.run()
    r = g.ok()
    # what Linux 6.12 would accept of the offer, and the reference does (real guests:
    # test_bulk_tcp_reaches_a_real_guest_merged)
    assert r["fe"]["features"] & MERGE == r["fe"]["linux_features"] & MERGE == MERGE
    (hdr,) = [tuple(h) for h in r["rx_headers"]]
    ((t, frame),) = g.rx()
    assert t == 10_000 + WINDOW_NS  # the window's end
    assert hdr[NUM_BUFFERS] == _buffers(len(frame)) > 1
    assert r["fe"]["stats"]["rx_buffers"] == hdr[NUM_BUFFERS]
    _check_merged(hdr[:NUM_BUFFERS] + (0,), frame, segments, False)
    # One frame written for the guest (GuestRx), holding the wire's 20 (the counter).
    assert len(s.trace("GuestRx0")) == 1
    assert int(s.virtio[0].GetRxFrameCount()) == 20


def test_fake_guest_without_merging_gets_every_segment(sim: Any) -> None:
    # RxMerge false: the receive offloads are not even offered, every frame has a buffer.
    s = _fake_sim(sim)
    s.virtio[0].SetAttribute("RxMerge", s.ns.BooleanValue(False))
    segments = [seg(i) for i in range(5)] + [seg(5, 300)]
    g = s.start(0, [sleep(1000), CONNECT, sleep(200_000)], features=hex(MERGE))
    _burst(s, segments)
    s.run()
    r = g.ok()
    assert r["fe"]["device_features"] & vp.RX_MERGE_FEATURES == 0
    assert [f for _, f in g.rx()] == segments
    assert [tuple(h) for h in r["rx_headers"]] == [
        (vp.VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0, 0, 0, 1)] * 6


def test_fake_guest_gets_broken_runs_split_in_order(sim: Any) -> None:
    s = _fake_sim(sim)
    frames, runs = SPLITS["a different flow"]
    frames = frames + [seg(5, flags=TCP_ACK | TCP_FIN), seg(6), seg(8), seg(9, 700)]
    g = s.start(0, [sleep(1000), CONNECT, sleep(200_000)], features=hex(MERGE))
    _burst(s, frames)
    s.run()
    r = g.ok()
    got = []
    for hdr, (_, frame) in zip(r["rx_headers"], g.rx()):
        got += [frame] if hdr[1] == 0 else _segment(ALL_OFFLOADS, HDR.pack(*hdr[:6], 0) + frame)
    assert got == frames
    assert [h[1] != 0 for h in r["rx_headers"]] == [True, False, True, False, True]


def test_fake_guest_with_too_few_buffers_gets_the_frame_once_it_posts_more(sim: Any) -> None:
    # Two buffers posted for a frame that needs ten: nothing is taken (the ring's indices
    # say so), the frame waits whole and arrives when the ring is filled.
    s = _fake_sim(sim)
    segments = [seg(i) for i in range(10)]
    size = vp.LINUX_MRG_RX_BUF_LEN
    post = {"op": "post_rx_chain", "lengths": [size]}
    g = s.start(0, [sleep(1000), CONNECT_NO_RX, sleep(100_000), post, post, sleep(100_000),
                    {"op": "open"}, sleep(100_000)], features=hex(MERGE))
    _burst(s, segments)
    s.run()
    r = g.ok()
    ((t, frame),) = g.rx()
    assert t == 201_000  # when the guest opened (filled its ring), not at 101 us
    (hdr,) = r["rx_headers"]
    assert hdr[NUM_BUFFERS] == _buffers(len(frame)) == 10
    _check_merged(tuple(hdr[:NUM_BUFFERS]) + (0,), frame, segments, False)
    # the two early buffers were the frame's first two: used in order, none skipped
    assert r["rings"][0]["last_used_idx"] == 10
    assert not s.trace("Drop0")


def test_the_reference_front_end_refuses_what_linux_would(sim: Any) -> None:
    # GUEST_TSO without MRG_RXBUF would be Linux's big packets, which the reference does
    # not model: it says so instead of posting small buffers a GSO frame cannot fit.
    s = _fake_sim(sim)
    g = s.start(0, [sleep(1000), CONNECT, sleep(10_000)],
                features=hex(MERGE & ~(1 << vp.NetFeature.MRG_RXBUF)))
    # Its process fails: the calendar, which learnt it from the socket, calls that a crash.
    with pytest.raises(nu.CalendarError, match="exited with status 3"):
        s.run()
    assert "GUEST_TSO without MRG_RXBUF" in g.result()["status"]


# ------------------------------------------------------------------ real guests

RX_STATS = " ".join(f"/sys/class/net/eth0/statistics/{n}"
                    for n in ("rx_packets", "rx_errors", "rx_length_errors"))


def _bulk(workdir: Path, merge: bool) -> tuple[float, list[int], int, list[Path], int]:
    """a sends 20 MB to b over 1 Gbit/s, both coalescing 50 us: (goodput, b's rx_packets,
    rx_errors and rx_length_errors, wire frames written for b, pcaps, b's accepted
    features)."""
    with nu.Simulation(workdir, seed=1, ipv6=False) as sim:
        a = sim.add_node("a", rx_coalesce="50us")
        b = sim.add_node("b", rx_coalesce="50us")
        sim.point_to_point("a", "b", rate="1Gbps", delay="0.1ms")
        for node in sim.guests:
            for v in node.virtio_devices:
                v.SetAttribute("RxMerge", sim.ns.BooleanValue(merge))
        b.run("iperf3 -s -1", background=True, name="server")
        a.run(f"iperf3 -c {b.ip} -n 20M -J", at="1.5s", name="iperf")
        a.run("sleep 0.1")
        b.run(f"sleep 3; cat {RX_STATS}", name="rx")
        sim.run(until="30s")
        r = a.result("iperf")
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr
        goodput = float(json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"])
        rx = b.result("rx")
        assert rx.returncode == 0, rx.stderr
        features = int(b.virtio_devices[0].GetNegotiatedFeatures())
        handed = int(b.virtio_devices[0].GetRxFrameCount())
    stats = [int(x) for x in rx.stdout.split()]
    return goodput, stats, handed, [Path(p) for p in sim.pcaps()["path"]], features


def test_bulk_tcp_reaches_a_real_guest_merged(uml_kernel: Path, tmp_path: Path) -> None:
    merged = [_bulk(tmp_path / f"merge{k}", True) for k in range(2)]
    goodput, (rx_packets, rx_errors, rx_length_errors), handed, pcaps, features = merged[0]
    # The real guest's driver takes the receive offloads, as the reference front-end does.
    assert features & MERGE == MERGE
    wire = assert_valid(pcaps)  # the pcaps record wire frames, before merging
    data_frames = max(s.tcp_data for s in wire)
    # No buffer missing or too short (num_buffers read right); far fewer packets than the
    # wire frames written for the guest.
    assert (rx_errors, rx_length_errors) == (0, 0)
    assert rx_packets < 0.3 * handed, (rx_packets, handed)
    assert rx_packets < 0.3 * data_frames, (rx_packets, data_frames)
    # Deterministic: a second run writes the same pcaps.
    digests = [[hashlib.sha256(p.read_bytes()).hexdigest() for p in run[3]] for run in merged]
    assert digests[0] == digests[1]
    plain, (plain_packets, *_), _, plain_pcaps, plain_features = _bulk(tmp_path / "plain",
                                                                       False)
    assert plain_features & vp.RX_MERGE_FEATURES == 0
    assert plain_packets > data_frames
    assert goodput == pytest.approx(plain, rel=0.03), (goodput, plain)


def test_a_forwarding_guest_passes_merged_tcp_on(uml_kernel: Path, tmp_path: Path) -> None:
    # a - r - b, every guest coalescing with offloads: r gets a's segments merged, forwards
    # them as GSO frames, which its device cuts again into valid wire frames for b.
    with nu.Simulation(tmp_path, seed=1, ipv6=False) as sim:
        a = sim.add_node("a", rx_coalesce="50us")
        r = sim.add_node("r", rx_coalesce="50us", sysctls={"net.ipv4.ip_forward": "1"})
        b = sim.add_node("b", rx_coalesce="50us")
        for left, right, subnet in ((a, r, "10.1.0.0/24"), (r, b, "10.2.0.0/24")):
            sim.point_to_point(left, right, rate="1Gbps", delay="0.1ms", subnet=subnet)
        for v in r.virtio_devices:
            v.SetAttribute("RxMerge", sim.ns.BooleanValue(True))
        a.add_route("10.2.0.0/24", via=r.ips[0])
        b.add_route("default", via=r.ips[1])
        b.run("iperf3 -s -1", background=True, name="server")
        a.run(f"iperf3 -c {b.ip} -n 10M -J", at="1.5s", name="iperf")
        r.run(f"sleep 4; cat {RX_STATS}", name="rx")
        b.run("sleep 4")
        sim.run(until="30s")
        res = a.result("iperf")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr
        end = json.loads(res.stdout)["end"]
        # iperf3's receiver reports what it read before the sender's end: nearly all
        assert end["sum_sent"]["bytes"] == 10 * 2**20
        assert end["sum_received"]["bytes"] > 0.99 * 10 * 2**20
        assert end["sum_sent"]["retransmits"] == 0
        r_packets = int(r.result("rx").stdout.split()[0])
        pcaps = sim.pcaps()
    stats = assert_valid([Path(p) for p in pcaps["path"]])
    # r received merged frames from a, and b got every byte in valid wire frames.
    assert r_packets < 0.5 * max(s.tcp_data for s in stats)
