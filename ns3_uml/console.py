"""A guest's command channel: the C++ ``ns3::VirtioConsoleDevice`` on a vhost-user socket.

The device carries the guest agent's frames (``agent_protocol``); everything per byte and
per event stays in C++ (docs/DESIGN.md rule 11): Python sends whole frames and takes the
complete frames that arrived, between runs.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _native
from .calendar import Calendar
from .vhost_protocol import VIRTIO_ID_CONSOLE

__all__ = ["console_kernel_arg", "console_device", "send_bytes", "take_received"]


def console_kernel_arg(socket_path: str | os.PathLike[str]) -> str:
    """The guest's kernel parameter that makes virtio_uml connect to the device."""
    return f"virtio_uml.device={os.fspath(socket_path)}:{VIRTIO_ID_CONSOLE}"


def console_device(
    socket_path: str | os.PathLike[str],
    client_id: int,
    context: int,
    calendar: Calendar | None = None,
    stop_types: int = 0,
) -> Any:
    """Serve a virtio-console device at ``socket_path`` for the guest with time-travel id
    ``client_id``; its events run under ``context`` (the guest's node id). Served by
    ``calendar`` (default: the process's active ``Calendar``); the guest is started with
    :func:`console_kernel_arg`. ``stop_types``: the device's ``SetStopTypes`` mask.
    Returns the listening ``ns3::VirtioConsoleDevice``."""
    ns = _native.load()
    if calendar is None:
        calendar = Calendar.active()
    device = ns.CreateObject["ns3::VirtioConsoleDevice"]()
    device.SetAttribute("SocketPath", ns.StringValue(os.fspath(socket_path)))
    device.SetAttribute("ClientId", ns.UintegerValue(client_id))
    device.SetScheduler(calendar.scheduler)
    device.SetContext(context)
    device.SetStopTypes(stop_types)
    device.Listen()
    return device


def send_bytes(device: Any, data: bytes) -> None:
    """Queue ``data`` (whole frames) for the guest; a ``UmlError`` beyond the device's
    ``SendLimit``."""
    if data:
        device.Send(np.frombuffer(data, dtype=np.uint8), len(data))


def take_received(device: Any) -> bytes:
    """Every complete frame from the guest that waits in the device, as bytes (removed
    from it)."""
    size = int(device.GetReceivedSize())
    if not size:
        return b""
    buf = np.empty(size, dtype=np.uint8)
    taken = int(device.TakeReceived(buf, size))
    return buf[:taken].tobytes()
