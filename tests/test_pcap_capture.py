"""Our pcap writer (BufferedPcapFile) against ns-3's own, on the same device and frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cppyy
import pytest

from ns3_uml import links
from pcapfile import read_pcap
from test_offloads import _ns3_tcp_mss


def _tcp_between_native_nodes(ns: Any, kind: str) -> tuple[Any, Any]:
    """Two ns-3 nodes with ns-3's stack, 300 kB of TCP from the first to the second."""
    nodes = ns.NodeContainer()
    nodes.Create(2)
    build = links.point_to_point if kind == "p2p" else links.csma
    devices, helper = build(ns, [nodes.Get(0), nodes.Get(1)], "10Mbps", "1ms")
    ns.InternetStackHelper().Install(nodes)
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("10.9.0.0"), ns.Ipv4Mask("255.255.255.0"))
    interfaces = addresses.Assign(devices)
    sink = ns.PacketSinkHelper("ns3::TcpSocketFactory",
                               ns.InetSocketAddress(ns.Ipv4Address.GetAny(), 9).ConvertTo())
    sink.Install(nodes.Get(1)).Start(ns.Seconds(0))
    bulk = ns.BulkSendHelper("ns3::TcpSocketFactory",
                             ns.InetSocketAddress(interfaces.GetAddress(1), 9).ConvertTo())
    bulk.SetAttribute("MaxBytes", ns.UintegerValue(300_000))
    bulk.Install(nodes.Get(0)).Start(ns.Seconds(0.1))
    return nodes, devices


@pytest.mark.parametrize("kind,buffer_size", [("p2p", 256 * 1024), ("csma", 100)])
def test_buffered_pcap_file_writes_what_ns3_writes(make_calendar: Any, tmp_path: Path,
                                                   kind: str, buffer_size: int) -> None:
    # Both writers hang on the same trace source of the same device: the files must be
    # byte for byte the same, also with a buffer smaller than one frame (written per record).
    cal = make_calendar(clients=0)
    ns = cal.ns
    _, devices = _tcp_between_native_nodes(ns, kind)
    type_name, link_type, promiscuous_trace, _ = links._SNIFFERS[kind]
    ours = links.capture(ns, kind, devices.Get(0), str(tmp_path / "ours.pcap"), True, None)
    ours.SetAttribute("BufferSize", ns.UintegerValue(buffer_size))
    pcap = ns.PcapHelper()
    theirs = pcap.CreateFile(str(tmp_path / "ns3.pcap"), cppyy.gbl.std.ios.out,
                             getattr(ns.PcapHelper, link_type))
    pcap.HookDefaultSink[getattr(ns, type_name)](
        devices.Get(0).GetObject[getattr(ns, type_name)](), promiscuous_trace, theirs)
    with _ns3_tcp_mss(ns):  # full-size segments: frames past 1 KiB, as guests send
        cal.run(until="2s")
    ours.Close()
    theirs.Close()
    written = (tmp_path / "ours.pcap").read_bytes()
    assert written == (tmp_path / "ns3.pcap").read_bytes()
    records = read_pcap(tmp_path / "ours.pcap")[1]
    assert sum(len(frame) > 1000 for frame, _ in records) > 150  # the bulk data went by


def test_buffered_pcap_file_flushes_and_names_a_bad_path(make_calendar: Any,
                                                         tmp_path: Path) -> None:
    ns = make_calendar(clients=0).ns
    file = ns.CreateObject[ns.BufferedPcapFile]()
    with pytest.raises(Exception, match=r"pcap /nonexistent/x\.pcap: No such file"):
        file.Open("/nonexistent/x.pcap", ns.PcapHelper.DLT_PPP)
    path = tmp_path / "flushed.pcap"
    file.Open(str(path), ns.PcapHelper.DLT_PPP)
    file.Write(ns.Packet(1200))
    assert path.stat().st_size == 0  # buffered
    file.Flush()
    assert path.stat().st_size == 24 + 16 + 1200
    file.Write(ns.Packet(10))
    file.Close()
    assert path.stat().st_size == 24 + 16 + 1200 + 16 + 10
    file.Write(ns.Packet(10))  # closed: not recorded
    assert path.stat().st_size == 24 + 16 + 1200 + 16 + 10
