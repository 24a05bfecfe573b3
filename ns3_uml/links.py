"""ns-3 channels built for a Simulation's nodes: point-to-point, CSMA and Wi-Fi.

Each builder returns the ns-3 devices (a ``NetDeviceContainer``, in the order of the nodes
given) and its helper; ``capture`` writes a device's pcap.
"""

from __future__ import annotations

from typing import Any, Sequence

#: ``Simulation.wifi``'s standards, by the names ns-3 prints.
WIFI_STANDARDS = {
    "802.11a": "WIFI_STANDARD_80211a",
    "802.11b": "WIFI_STANDARD_80211b",
    "802.11g": "WIFI_STANDARD_80211g",
    "802.11n": "WIFI_STANDARD_80211n",
    "802.11ac": "WIFI_STANDARD_80211ac",
    "802.11ax": "WIFI_STANDARD_80211ax",
}


#: Per channel kind with our own capture: the device type, the pcap link type, and the
#: trace source that sees every frame (promiscuous) or the device's own.
_SNIFFERS = {
    "p2p": ("PointToPointNetDevice", "DLT_PPP", "PromiscSniffer", "PromiscSniffer"),
    "csma": ("CsmaNetDevice", "DLT_EN10MB", "PromiscSniffer", "Sniffer"),
}


def capture(ns: Any, kind: str, device: Any, path: str, promiscuous: bool,
            helper: Any) -> Any:
    """Write ``device``'s frames to the pcap file ``path``. For point-to-point and CSMA the
    file is our ``BufferedPcapFile`` (ns-3's own writes every frame of 1 KiB or more with a
    system call of its own), opened here and returned: ``Close()`` it after the run. Other
    kinds go through their ``helper`` (returns None)."""
    if kind not in _SNIFFERS:
        helper.EnablePcap(path, device, promiscuous, True)  # True: an explicit file name
        return None
    type_name, link_type, promiscuous_trace, own_trace = _SNIFFERS[kind]
    file = ns.CreateObject[ns.BufferedPcapFile]()
    file.Open(path, getattr(ns.PcapHelper, link_type))
    if not file.Capture(device, promiscuous_trace if promiscuous else own_trace):
        raise TypeError(f"{device.GetInstanceTypeId().GetName()} is not a {type_name}")
    return file


def _container(ns: Any, ns3_nodes: Sequence[Any]) -> Any:
    container = ns.NodeContainer()
    for n in ns3_nodes:
        container.Add(n)
    return container


def point_to_point(ns: Any, ns3_nodes: Sequence[Any], rate: str, delay: str) -> tuple[Any, Any]:
    """ns-3's PointToPointHelper between two nodes."""
    helper = ns.PointToPointHelper()
    helper.SetDeviceAttribute("DataRate", ns.StringValue(rate))
    helper.SetChannelAttribute("Delay", ns.StringValue(delay))
    return helper.Install(_container(ns, ns3_nodes)), helper


def csma(ns: Any, ns3_nodes: Sequence[Any], rate: str, delay: str) -> tuple[Any, Any]:
    """ns-3's CsmaHelper: one shared Ethernet-like channel."""
    helper = ns.CsmaHelper()
    helper.SetChannelAttribute("DataRate", ns.StringValue(rate))
    helper.SetChannelAttribute("Delay", ns.StringValue(delay))
    return helper.Install(_container(ns, ns3_nodes)), helper


def wifi(ns: Any, ns3_nodes: Sequence[Any], has_ap: bool, ssid: str, standard: str,
         data_mode: str | None, distance: float) -> tuple[Any, Any]:
    """One Yans Wi-Fi channel; with ``has_ap`` the first node is an access point and the
    others its stations, otherwise all are ad hoc. Nodes stand still, ``distance`` metres
    apart on a line. ``data_mode`` (e.g. "OfdmRate24Mbps") fixes the rate, otherwise ns-3's
    default rate control (IdealWifiManager) picks it."""
    try:
        wifi_standard = getattr(ns, WIFI_STANDARDS[standard])
    except KeyError:
        known = ", ".join(WIFI_STANDARDS)
        raise ValueError(f"unknown Wi-Fi standard {standard!r} (known: {known})") from None
    channel = ns.YansWifiChannelHelper.Default()
    phy = ns.YansWifiPhyHelper()
    phy.SetChannel(channel.Create())
    # Radiotap headers: Wireshark shows rates and signal, as in ns-3's own examples.
    phy.SetPcapDataLinkType(ns.WifiPhyHelper.DLT_IEEE802_11_RADIO)
    helper = ns.WifiHelper()
    helper.SetStandard(wifi_standard)
    if data_mode is not None:
        helper.SetRemoteStationManager("ns3::ConstantRateWifiManager",
                                       "DataMode", ns.StringValue(data_mode),
                                       "ControlMode", ns.StringValue(data_mode))
    mac = ns.WifiMacHelper()
    devices = ns.NetDeviceContainer()
    if has_ap:
        ns_ssid = ns.Ssid(ssid)
        mac.SetType("ns3::ApWifiMac", "Ssid", ns.SsidValue(ns_ssid))
        devices.Add(helper.Install(phy, mac, ns3_nodes[0]))
        mac.SetType("ns3::StaWifiMac", "Ssid", ns.SsidValue(ns_ssid))
        devices.Add(helper.Install(phy, mac, _container(ns, ns3_nodes[1:])))
    else:
        mac.SetType("ns3::AdhocWifiMac")
        devices.Add(helper.Install(phy, mac, _container(ns, ns3_nodes)))
    positions = ns.ListPositionAllocator()
    for k in range(len(ns3_nodes)):
        positions.Add(ns.Vector(k * distance, 0, 0))
    mobility = ns.MobilityHelper()
    mobility.SetPositionAllocator(positions)
    mobility.SetMobilityModel("ns3::ConstantPositionMobilityModel")
    mobility.Install(_container(ns, ns3_nodes))
    return devices, phy
