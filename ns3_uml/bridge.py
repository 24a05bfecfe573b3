"""Putting a guest's network interface on an ns-3 device (the C++ UmlBridgeHelper)."""

from __future__ import annotations

import os
from typing import Any

from . import _native
from .calendar import Calendar


def guest_mac(guest_index: int, interface: int = 0) -> str:
    """A stable, locally administered MAC for a guest's interface (never random: a random
    MAC would change ARP traffic and pcaps from run to run)."""
    if not 0 <= guest_index < 1 << 24 or not 0 <= interface < 256:
        raise ValueError(f"no MAC for guest {guest_index}, interface {interface}")
    octets = (0x02, 0x75, interface, guest_index >> 16 & 0xFF, guest_index >> 8 & 0xFF,
              guest_index & 0xFF)
    return ":".join(f"{o:02x}" for o in octets)


def bridge_interface(
    node: Any,
    device: Any,
    socket_path: str | os.PathLike[str],
    client_id: int,
    mac: str,
    calendar: Calendar | None = None,
    offloads: bool = True,
    rx_coalesce_ns: int = 0,
    rx_coalesce_frames: int = 0,
) -> Any:
    """Serve a vhost-user virtio-net device at ``socket_path`` for the guest with time-travel
    id ``client_id`` and bridge it to ``device`` (an ns-3 NetDevice on ``node``). Returns the
    ``ns3::UmlBridgeNetDevice``; its virtio side is ``GetVirtioNetDevice()``. The device is
    served by ``calendar`` (default: the process's active ``Calendar``); the guest is started
    with ``virtio_uml.device=SOCKET:1``. ``offloads`` offers the guest checksum offload and
    TSO/USO (the device's ``Offloads`` attribute): it hands over frames of up to 64 KiB,
    which enter ns-3 cut into MTU-sized frames with valid checksums; False offers none.
    ``rx_coalesce_ns`` and ``rx_coalesce_frames``: receive coalescing (the device's
    ``RxCoalesceTime`` and ``RxCoalesceFrames``; 0: off)."""
    ns = _native.load()
    import cppyy  # noqa: PLC0415

    if calendar is None:
        calendar = Calendar.active()
    helper = cppyy.gbl.ns3.UmlBridgeHelper(calendar.scheduler)
    helper.SetDeviceAttribute("Offloads", ns.BooleanValue(offloads))
    helper.SetDeviceAttribute("RxCoalesceTime", ns.TimeValue(ns.NanoSeconds(rx_coalesce_ns)))
    helper.SetDeviceAttribute("RxCoalesceFrames", ns.UintegerValue(rx_coalesce_frames))
    return helper.Install(node, device, str(socket_path), client_id, ns.Mac48Address(mac))
