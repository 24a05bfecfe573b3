"""Real guests in bigger scenes: many pairs at once, native ns-3 nodes, Wi-Fi, a guest router."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from leftovers import processes_mentioning

import ns3_uml
from ns3_uml import _native
from ns3_uml.bridge import bridge_interface, guest_mac
from ns3_uml.guest import (Command, GuestConfig, GuestProcess, InterfaceConfig,
                           process_group_members)

RTT_SUMMARY = re.compile(r"rtt min/avg/max/mdev = ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
# ping prints 3 decimals of ms: 1 us of rounding on top of the 20 us allowed.
RTT_TOLERANCE = 21e-6
# An echo request or reply (56 bytes of data) is 84 bytes of IPv4; on point-to-point + 2
# bytes of PPP, on CSMA + 14 of Ethernet + 4 of FCS.
P2P_ECHO_FRAME = 84 + 2
CSMA_ECHO_FRAME = 84 + 14 + 4
# Guests speak IPv4 only: IPv6 multicast reports would share the links with the measurements.
NO_IPV6 = {"net.ipv6.conf.all.disable_ipv6": "1", "net.ipv6.conf.default.disable_ipv6": "1"}


def _rtts(stdout: str) -> list[float]:
    """min, avg and max RTT of a ping summary, in seconds."""
    m = RTT_SUMMARY.search(stdout)
    assert m, stdout
    return [float(x) / 1000 for x in m.groups()[:3]]


def _ttls(stdout: str) -> list[int]:
    return [int(t) for t in re.findall(r"ttl=(\d+)", stdout)]


def _echo_time(frame_bytes: int, rate_bps: float, delay_s: float) -> float:
    """One way of an echo request or reply over one link: serialisation plus propagation."""
    return frame_bytes * 8 / rate_bps + delay_s


@dataclass
class Nic:
    """A guest interface: the ns-3 device it is bridged to, and its address."""

    node: Any
    device: Any
    ipv4: str


@dataclass
class _Guest:
    cfg: GuestConfig
    proc: GuestProcess
    sockets: list[Path] = field(default_factory=list)
    #: Its ns3::UmlBridgeNetDevice per interface.
    bridges: list[Any] = field(default_factory=list)


class Scene:
    """One calendar, some guests bridged to ns-3 devices a test builds with raw ns-3."""

    def __init__(self, tmp_path: Path, kernel: Path, clients: int) -> None:
        self.tmp = tmp_path
        self.kernel = kernel
        self.socket = tmp_path / "cal.sock"
        self.cal = ns3_uml.Calendar(self.socket, clients=clients)
        self.ns = self.cal.ns
        self.guests: dict[str, _Guest] = {}
        self.summary: dict[str, Any] = {}

    def guest(self, name: str, gid: int, nics: list[Nic], commands: list[str | Command],
              routes: tuple[str, ...] = (), sysctls: dict[str, str] | None = None) -> GuestProcess:
        """A guest (time-travel id ``gid``) with one interface per nic, eth0 first."""
        interfaces, sockets, bridges = [], [], []
        for k, nic in enumerate(nics):
            path = self.tmp / f"{name}-eth{k}.sock"
            bridges.append(bridge_interface(nic.node, nic.device, path, gid, guest_mac(gid, k)))
            interfaces.append(InterfaceConfig(path, ipv4=nic.ipv4))
            sockets.append(path)
        cfg = GuestConfig(name=name, client_id=gid, tt_socket=self.socket,
                          workdir=self.tmp / name, interfaces=interfaces, routes=list(routes),
                          sysctls={**NO_IPV6, **(sysctls or {})}, commands=commands)
        proc = GuestProcess(cfg, kernel=self.kernel)
        self.guests[name] = _Guest(cfg, proc, sockets, bridges)
        return proc

    def run(self, until: str) -> None:
        """Boot every guest, run the simulation, wait for every guest to power off."""
        try:
            for g in self.guests.values():
                g.proc.start()
                self.cal.register_process(g.cfg.client_id, g.proc.pid)
            self.summary = self.cal.run(until=until)
            for g in self.guests.values():
                g.proc.wait(timeout=60)
        finally:
            self.close()

    def close(self) -> None:
        for g in self.guests.values():
            g.proc.kill()
        self.cal.close()

    # -- checks ---------------------------------------------------------------------------

    def check_clean_exit(self) -> None:
        """Every guest ran all its commands with status 0 and powered off with status 0."""
        departures = {c["id"]: c["departure"] for c in self.summary["clients"]}
        assert departures == {g.cfg.client_id: "left while running"  # a power-off
                              for g in self.guests.values()}, departures
        for name, g in self.guests.items():
            console = g.proc.console_log.read_text(errors="replace")[-3000:]
            assert g.proc.returncode == 0, f"{name} exited {g.proc.returncode}: {console}"
            assert g.proc.setup_errors() == [], (name, g.proc.setup_errors())
            assert g.proc.finished(), f"{name} did not finish its commands: {console}"
            for r in g.proc.read_outputs():
                assert r.returncode == 0, (name, r.command, r.stdout[-2000:], r.stderr)

    def check_nothing_left(self) -> None:
        """No guest process, no socket file of the scene is left."""
        for name, g in self.guests.items():
            assert not process_group_members(g.proc.pid, zombies=False), \
                f"{name}: processes left"
            assert not os.path.exists(f"/proc/{g.proc.pid}"), f"{name}: process left"
        assert not self.socket.exists(), "the calendar's socket is left"
        left = [p for g in self.guests.values() for p in g.sockets if p.exists()]
        assert not left, f"vhost-user sockets left: {left}"
        # Nothing on the host still runs from this scene's directories (UML's helpers have
        # the guest's workdir or socket paths on their command lines).
        running = processes_mentioning(self.tmp)
        assert not running, f"processes left: {running}"


@pytest.fixture
def make_scene(uml_kernel, tmp_path):
    """``make_scene(clients)``: a Scene in this test's directory, closed afterwards even if
    the test fails before running it."""
    made: list[Scene] = []

    def make(clients: int) -> Scene:
        made.append(Scene(tmp_path, uml_kernel, clients))
        return made[-1]

    yield make
    for scene in made:
        scene.close()


def _mac(ns: Any, address: Any) -> str:
    return str(ns.Mac48Address.ConvertFrom(address))


def _p2p(ns: Any, a: Any, b: Any, rate_bps: int, delay_s: float) -> Any:
    helper = ns.PointToPointHelper()
    helper.SetDeviceAttribute("DataRate", ns.DataRateValue(ns.DataRate(rate_bps)))
    helper.SetChannelAttribute("Delay", ns.TimeValue(ns.Seconds(delay_s)))
    return helper.Install(a, b)


# -- 1. ten pairs at once --------------------------------------------------------------------

PAIRS = 10
PAIR_RATE = 10_000_000


def _pair_delay(p: int) -> float:
    return 0.001 * (p + 1)  # 1 .. 10 ms


def test_twenty_guests_in_ten_pairs(make_scene, tmp_path):
    scene = make_scene(2 * PAIRS)
    ns = scene.ns
    for p in range(PAIRS):
        nodes = ns.NodeContainer()
        nodes.Create(2)
        devs = _p2p(ns, nodes.Get(0), nodes.Get(1), PAIR_RATE, _pair_delay(p))
        net = f"10.{p}.0"
        client, server = 2 * p + 1, 2 * p + 2
        scene.guest(f"c{p}", client, [Nic(nodes.Get(0), devs.Get(0), f"{net}.1/24")], [
            f"ping -c 3 {net}.2",
            # -R: the server sends. iperf3 3.12's sending client spins on select() (the data
            # socket stays in its write set) from its end of test until the server's results
            # come back behind the queued data: ~2 syscalls per 512 ns of simulated time, and
            # one hand-off per clock read while two guests spin at once (4x the wall time).
            f"iperf3 -c {net}.2 -t 2 -R -J",
        ])
        scene.guest(f"s{p}", server, [Nic(nodes.Get(1), devs.Get(1), f"{net}.2/24")], [
            # Ends after its one client; the init waits for it before power-off.
            Command("iperf3 -s -1", background=True),
        ])
    scene.run(until="60s")
    scene.check_clean_exit()
    scene.check_nothing_left()
    assert sorted(c["id"] for c in scene.summary["clients"]) == list(range(1, 2 * PAIRS + 1))

    for p in range(PAIRS):
        ping, iperf = scene.guests[f"c{p}"].proc.read_outputs()
        assert "3 received" in ping.stdout, ping.stdout
        expected = 2 * _echo_time(P2P_ECHO_FRAME, PAIR_RATE, _pair_delay(p))
        for rtt in _rtts(ping.stdout):
            assert rtt == pytest.approx(expected, abs=RTT_TOLERANCE), (p, ping.stdout, expected)
        received = json.loads(iperf.stdout)["end"]["sum_received"]["bits_per_second"]
        # TCP payload per frame: 1448 bytes (MSS with timestamps) of 1500 + 2 bytes of PPP.
        allowed = PAIR_RATE * 1448 / 1502
        assert received == pytest.approx(allowed, rel=0.03), (p, received, allowed)


# -- 2. a guest and a native ns-3 node -------------------------------------------------------

_RTT_RECORDER = """
#include "ns3/application.h"
#include "ns3/callback.h"
#include "ns3/nstime.h"
#include <vector>
namespace ns3uml_scenarios {
std::vector<long long> ping_rtts_ns;
void OnPingRtt(uint16_t, ns3::Time rtt) { ping_rtts_ns.push_back(rtt.GetNanoSeconds()); }
void RecordPingRtts(ns3::Ptr<ns3::Application> app) {
    ping_rtts_ns.clear();
    app->TraceConnectWithoutContext("Rtt", ns3::MakeCallback(&OnPingRtt));
}
}
"""


def _rtt_recorder() -> Any:
    import cppyy

    if not hasattr(cppyy.gbl, "ns3uml_scenarios"):
        cppyy.cppdef(_RTT_RECORDER)
    return cppyy.gbl.ns3uml_scenarios


@pytest.fixture
def ns3_checksums():
    """ns-3 leaves IPv4, ICMP, UDP and TCP checksums zero unless ChecksumEnabled is set (it
    must be before the stack is built); a real stack drops such packets."""
    ns = _native.load()
    ns.GlobalValue.Bind("ChecksumEnabled", ns.BooleanValue(True))
    yield
    ns.GlobalValue.Bind("ChecksumEnabled", ns.BooleanValue(False))


def test_guest_and_native_node_ping_each_other(make_scene, ns3_checksums, tmp_path):
    rate, delay = 100_000_000, 0.002
    scene = make_scene(1)
    ns = scene.ns
    nodes = ns.NodeContainer()
    nodes.Create(2)  # 0: the guest's, 1: native
    csma = ns.CsmaHelper()
    csma.SetChannelAttribute("DataRate", ns.DataRateValue(ns.DataRate(rate)))
    csma.SetChannelAttribute("Delay", ns.TimeValue(ns.Seconds(delay)))
    devs = csma.Install(nodes)
    native = nodes.Get(1)
    stack = ns.InternetStackHelper()
    stack.Install(native)
    addresses = ns.Ipv4AddressHelper()
    addresses.SetBase(ns.Ipv4Address("10.1.0.0"), ns.Ipv4Mask("255.255.255.0"),
                      ns.Ipv4Address("0.0.0.2"))
    native_devs = ns.NetDeviceContainer()
    native_devs.Add(devs.Get(1))
    addresses.Assign(native_devs)  # 10.1.0.2

    ping_helper = ns.PingHelper(ns.Ipv4Address("10.1.0.1").ConvertTo())
    ping_helper.SetAttribute("Count", ns.UintegerValue(4))
    ping_helper.SetAttribute("Interval", ns.TimeValue(ns.Seconds(1)))
    apps = ping_helper.Install(native)
    recorder = _rtt_recorder()
    recorder.RecordPingRtts(apps.Get(0))
    # The guest has booted and pinged by then; the last reply comes before 10 s.
    apps.Start(ns.Seconds(5))

    scene.guest("g", 1, [Nic(nodes.Get(0), devs.Get(0), "10.1.0.1/24")], [
        "ping -c 1 10.1.0.2",  # resolves the native node's MAC (one more round trip)
        "ping -c 3 10.1.0.2",
        Command("ip neigh show 10.1.0.2", at=10),
    ])
    native_mac = _mac(ns, devs.Get(1).GetAddress())
    scene.run(until="30s")
    scene.check_clean_exit()
    scene.check_nothing_left()

    one_way = _echo_time(CSMA_ECHO_FRAME, rate, delay)
    ping = scene.guests["g"].proc.result(1)
    assert "3 received" in ping.stdout and _ttls(ping.stdout) == [64] * 3, ping.stdout
    for rtt in _rtts(ping.stdout):
        assert rtt == pytest.approx(2 * one_way, abs=RTT_TOLERANCE), ping.stdout
    neigh = scene.guests["g"].proc.result(2).stdout
    assert native_mac in neigh, neigh

    # ns-3's Ping on the native node got every reply from the guest, each after exactly the
    # link's time (ns-3's ARP resolved the guest's MAC when it answered the guest's ping).
    rtts = [ns_ / 1e9 for ns_ in recorder.ping_rtts_ns]
    assert len(rtts) == 4, rtts
    for rtt in rtts:
        assert rtt == pytest.approx(2 * one_way, abs=1e-6), rtts


# -- 3. Wi-Fi ----------------------------------------------------------------------------------

def _wifi_devices(ns: Any, nodes: Any, mode: str) -> Any:
    """802.11a at a fixed 24 Mbit/s between two nodes 5 m apart; mode "adhoc" or "ap"
    (node 0 the AP, node 1 its station)."""
    channel = ns.YansWifiChannelHelper.Default()
    phy = ns.YansWifiPhyHelper()
    phy.SetChannel(channel.Create())
    wifi = ns.WifiHelper()
    wifi.SetStandard(ns.WIFI_STANDARD_80211a)
    wifi.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                                 "DataMode", ns.StringValue("OfdmRate24Mbps"),
                                 "ControlMode", ns.StringValue("OfdmRate6Mbps"))
    mac = ns.WifiMacHelper()
    devs = ns.NetDeviceContainer()
    if mode == "adhoc":
        mac.SetType("ns3::AdhocWifiMac")
        devs.Add(wifi.Install(phy, mac, nodes))
    else:
        ssid = ns.Ssid("ns3-uml")
        mac.SetType("ns3::ApWifiMac", "Ssid", ns.SsidValue(ssid))
        devs.Add(wifi.Install(phy, mac, nodes.Get(0)))
        mac.SetType("ns3::StaWifiMac", "Ssid", ns.SsidValue(ssid))
        devs.Add(wifi.Install(phy, mac, nodes.Get(1)))
    positions = ns.ListPositionAllocator()
    positions.Add(ns.Vector(0, 0, 0))
    positions.Add(ns.Vector(5, 0, 0))
    mobility = ns.MobilityHelper()
    mobility.SetPositionAllocator(positions)
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel")
    mobility.Install(nodes)
    return devs, phy


@pytest.mark.parametrize("mode", ["adhoc", "ap"])
def test_wifi_guests_ping_and_exchange_traffic(make_scene, tmp_path, mode):
    scene = make_scene(2)
    ns = scene.ns
    nodes = ns.NodeContainer()
    nodes.Create(2)
    devs, phy = _wifi_devices(ns, nodes, mode)
    phy.EnablePcapAll(str(tmp_path / "wifi"))
    device_macs = [_mac(ns, devs.Get(i).GetAddress()) for i in range(2)]  # (gone after the run)
    scene.guest("a", 1, [Nic(nodes.Get(0), devs.Get(0), "10.3.0.1/24")], [
        Command("iperf3 -s -1; iperf3 -s -1", background=True),
        Command("ping -c 3 10.3.0.2", name="ping"),
        Command("cat /sys/class/net/eth0/address", name="mac"),
    ])
    scene.guest("b", 2, [Nic(nodes.Get(1), devs.Get(1), "10.3.0.2/24")], [
        # A station first needs to associate (beacons come every 102.4 ms).
        "sleep 1",
        Command("ping -c 3 10.3.0.1", name="ping"),
        # -R: a sends (see the ten pairs for why the guest that ends the test should not).
        Command("iperf3 -c 10.3.0.1 -n 1M -R -J", name="tcp"),
        "sleep 0.5",  # the server's second run starts listening
        Command("iperf3 -c 10.3.0.1 -u -b 2M -t 1 -J", name="udp"),
        Command("cat /sys/class/net/eth0/address", name="mac"),
    ])
    scene.run(until="60s")
    scene.check_clean_exit()
    scene.check_nothing_left()

    # A Wi-Fi station or ad-hoc device sends only from its own MAC: the guest takes it. An AP
    # sends from any MAC: the guest keeps its own and the AP bridges.
    expected_macs = {"adhoc": device_macs, "ap": [guest_mac(1), device_macs[1]]}[mode]
    for name, expected in zip(("a", "b"), expected_macs):
        assert scene.guests[name].proc.result("mac").stdout.strip() == expected, name
        assert str(scene.guests[name].bridges[0].GetGuestMac()) == expected, name

    for name in ("a", "b"):
        ping = scene.guests[name].proc.result("ping")
        assert "3 received" in ping.stdout and _ttls(ping.stdout) == [64] * 3, ping.stdout
        # Each way at least a 64 us data PPDU (120 bytes at 24 Mbit/s plus preamble), then
        # SIFS and an ACK; with backoff and ARP (the first one) still well under 2 ms.
        for rtt in _rtts(ping.stdout):
            assert 2 * 64e-6 < rtt < 2e-3, (name, ping.stdout)
    tcp = json.loads(scene.guests["b"].proc.result("tcp").stdout)["end"]
    assert tcp["sum_sent"]["retransmits"] == 0, tcp
    assert tcp["sum_sent"]["bytes"] == tcp["sum_received"]["bytes"] == 1 << 20, tcp
    # 24 Mbit/s of PHY rate, every frame acknowledged, TCP's ACKs on the same medium, no
    # aggregation in 802.11a: some 14-15 Mbit/s of TCP payload.
    assert 10e6 < tcp["sum_received"]["bits_per_second"] < 20e6, tcp["sum_received"]
    udp = json.loads(scene.guests["b"].proc.result("udp").stdout)["end"]["sum"]
    assert udp["lost_packets"] == 0 and udp["packets"] > 100, udp
    assert udp["bits_per_second"] == pytest.approx(2e6, rel=0.05), udp


# -- 4. a guest as a router --------------------------------------------------------------------

def test_guest_routes_between_two_subnets(make_scene, tmp_path):
    links = [(100_000_000, 0.002), (10_000_000, 0.003)]  # A-R, R-B
    scene = make_scene(3)
    ns = scene.ns
    nodes = ns.NodeContainer()
    nodes.Create(3)  # A, R, B
    a, r, b = (nodes.Get(i) for i in range(3))
    ar = _p2p(ns, a, r, *links[0])
    rb = _p2p(ns, r, b, *links[1])
    scene.guest("a", 1, [Nic(a, ar.Get(0), "10.4.1.1/24")],
                ["ping -c 3 10.4.2.2"], routes=("10.4.2.0/24 via 10.4.1.254",))
    scene.guest("r", 2, [Nic(r, ar.Get(1), "10.4.1.254/24"), Nic(r, rb.Get(0), "10.4.2.254/24")],
                ["sleep 5", "cat /proc/net/snmp"], sysctls={"net.ipv4.ip_forward": "1"})
    scene.guest("b", 3, [Nic(b, rb.Get(1), "10.4.2.2/24")],
                ["sleep 5"], routes=("default via 10.4.2.254",))
    scene.run(until="30s")
    scene.check_clean_exit()
    scene.check_nothing_left()

    ping = scene.guests["a"].proc.result(0)
    assert "3 received" in ping.stdout, ping.stdout
    assert _ttls(ping.stdout) == [63] * 3, ping.stdout  # one router on the way
    expected = 2 * sum(_echo_time(P2P_ECHO_FRAME, rate, delay) for rate, delay in links)
    for rtt in _rtts(ping.stdout):
        assert rtt == pytest.approx(expected, abs=RTT_TOLERANCE), (ping.stdout, expected)
    # R forwarded the 3 requests and the 3 replies.
    snmp = scene.guests["r"].proc.result(1).stdout.splitlines()
    ip_names, ip_values = (line.split()[1:] for line in snmp if line.startswith("Ip:"))
    assert dict(zip(ip_names, ip_values))["ForwDatagrams"] == "6", snmp[:2]
