"""Linux 6.12's virtio-console driver (``drivers/char/virtio_console.c``) over UML's
vhost-user transport, multiport with one generic port: probe, the control handshake,
receive buffers, writes to the port.

The device it drives is ``VirtioConsoleDevice`` (``bindings/model/virtio-console-device.h``).
Control messages are sent as ``__send_control_msg`` does: one buffer, a kick, then the
driver spins until the device used it; a device that has not used it when the kick is
answered would hang a real guest, so here that is an error.
"""

from __future__ import annotations

import os
from typing import Any

from ns3_uml.vhost_protocol import (
    CONSOLE_BAD_ID,
    CONSOLE_CONFIG_OFF_MAX_NR_PORTS,
    CONSOLE_CONTROL,
    CONSOLE_CTRL_RX_QUEUE,
    CONSOLE_CTRL_TX_QUEUE,
    CONSOLE_NUM_QUEUES,
    CONSOLE_RX_QUEUE,
    CONSOLE_TX_QUEUE,
    LINUX_CONSOLE_DRIVER_FEATURES,
    LINUX_CONSOLE_MAX_WRITE,
    ConsoleEvent,
    ConsoleFeature,
    VirtioFeature,
)
from ns3_uml.testing.vhost_frontend.errors import VhostFrontendError
from ns3_uml.testing.vhost_frontend.memory import PAGE_SIZE
from ns3_uml.testing.vhost_frontend.ring import PostedChain, SplitQueue
from ns3_uml.testing.vhost_frontend.transport import VhostUserTransport

__all__ = ["DEFAULT_CONSOLE_FEATURES", "VhostUserConsole"]

#: What this reference driver implements (no console size, no emergency write).
DEFAULT_CONSOLE_FEATURES = (1 << VirtioFeature.VERSION_1) | (1 << ConsoleFeature.MULTIPORT)


class VhostUserConsole(VhostUserTransport):
    """UML 6.12's virtio_uml + virtio_console with one generic port (port 0).

    After :meth:`connect` the handshake goes on in the device's calls: PORT_ADD (the
    driver posts the port's receive buffers, answers PORT_READY), PORT_NAME, PORT_OPEN.
    :meth:`open` / :meth:`close_port` are the agent opening and closing the port's device
    file; :meth:`write` is one ``write()`` on it. Data arriving while the port is not open
    is discarded, as Linux does (counted in :attr:`discarded`).
    """

    NUM_QUEUES = CONSOLE_NUM_QUEUES

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *,
                 features: int = DEFAULT_CONSOLE_FEATURES, **transport: Any) -> None:
        super().__init__(socket_path, **transport)
        self.accept_features = features
        self.max_nr_ports: int | None = None
        self.port_added = False
        self.port_name: str | None = None
        self.host_connected = False
        self.guest_connected = False
        self.control_log: list[tuple[str, int, int, int]] = []  # (dir, id, event, value)
        self.port_data = bytearray()    # what a reader of the port got, in order
        self.discarded = 0              # bytes that came while the port was closed
        self.rx_batches = 0             # calls that brought port data

    # ------------------------------------------------------------------
    # probe
    # ------------------------------------------------------------------
    def connect(self) -> None:
        """``virtcons_probe()``: negotiate, read max_nr_ports, set up the queues, fill the
        control receive queue, send DEVICE_READY."""
        if self.connected:
            raise VhostFrontendError("already connected")
        self._connect_socket()
        self._vhost_user_init()
        self.registered = True
        self._choose_features(LINUX_CONSOLE_DRIVER_FEATURES, self.accept_features)
        if not self.has_feature(ConsoleFeature.MULTIPORT):
            raise VhostFrontendError("no MULTIPORT: port 0 would be an hvc console whose "
                                     "writes spin for the host")
        data = self.read_config(CONSOLE_CONFIG_OFF_MAX_NR_PORTS, 4)
        self.max_nr_ports = None if data is None else int.from_bytes(data, "little")
        if self.max_nr_ports != 1:
            raise VhostFrontendError(f"max_nr_ports {self.max_nr_ports}: the reference "
                                     "driver has queues for one port")
        self._find_vqs()
        self.connected = True
        self._fill_queue(self.queues[CONSOLE_CTRL_RX_QUEUE])
        self._send_control(CONSOLE_BAD_ID, ConsoleEvent.DEVICE_READY, 1)

    def _fill_queue(self, vq: SplitQueue) -> None:
        """``fill_queue()``: PAGE_SIZE buffers until the ring is full, a kick after each
        (``add_inbuf``)."""
        while vq.num_free:
            self._add_inbuf(vq)

    def _add_inbuf(self, vq: SplitQueue) -> None:
        addr = self.mem.alloc(PAGE_SIZE)
        vq.add([(addr, PAGE_SIZE, True)], PostedChain("rx", [], [(addr, PAGE_SIZE)],
                                                      [PAGE_SIZE], addr))
        self.kick(vq.index)

    def _send_control(self, port: int, event: int, value: int) -> None:
        """``__send_control_msg()``: one buffer, a kick, then spin for it."""
        vq = self.queues[CONSOLE_CTRL_TX_QUEUE]
        addr = self.mem.alloc(CONSOLE_CONTROL.size)
        self.mem.write(addr, CONSOLE_CONTROL.pack(port, event, value))
        vq.add([(addr, CONSOLE_CONTROL.size, False)],
               PostedChain("tx", [], [(addr, CONSOLE_CONTROL.size)], [CONSOLE_CONTROL.size]))
        self.control_log.append(("send", port, int(event), value))
        self.kick(vq.index)
        if vq.get_buf() is None:
            raise VhostFrontendError(f"control message {ConsoleEvent(event).name} not used "
                                     "when its kick was answered: Linux would spin forever")

    # ------------------------------------------------------------------
    # the port
    # ------------------------------------------------------------------
    @property
    def port_ready(self) -> bool:
        """The handshake is done: the port has its name and the host is connected."""
        return self.port_added and self.port_name is not None and self.host_connected

    def open(self) -> None:
        """``port_fops_open()``: the guest side is connected; the host is told."""
        if not self.port_added:
            raise VhostFrontendError("no port yet")
        self.guest_connected = True
        self._send_control(0, ConsoleEvent.PORT_OPEN, 1)

    def close_port(self) -> None:
        """``port_fops_release()``."""
        self.guest_connected = False
        self._send_control(0, ConsoleEvent.PORT_OPEN, 0)

    def write(self, data: bytes) -> int:
        """``port_fops_write()``: one buffer of at most 32 KiB, a kick; returns the bytes
        taken (0 when the ring is full: the writer would wait for the device)."""
        if not (self.guest_connected and self.host_connected):
            raise VhostFrontendError("port not open on both sides: the write would fail")
        vq = self.queues[CONSOLE_TX_QUEUE]
        self._reclaim(vq)
        if not vq.num_free or not data:
            return 0
        chunk = bytes(data[:LINUX_CONSOLE_MAX_WRITE])
        addr = self.mem.alloc(len(chunk))
        self.mem.write(addr, chunk)
        vq.add([(addr, len(chunk), False)],
               PostedChain("tx", [], [(addr, len(chunk))], [len(chunk)]))
        self.stats["tx_bytes"] += len(chunk)
        self.kick(vq.index)
        return len(chunk)

    def write_all(self, data: bytes) -> None:
        """Write until everything is taken (raises if the ring stays full)."""
        view = memoryview(data)
        while view:
            n = self.write(bytes(view))
            if not n:
                raise VhostFrontendError("transmit ring full")
            view = view[n:]

    @staticmethod
    def _reclaim(vq: SplitQueue) -> int:
        """``reclaim_consumed_buffers()``."""
        n = 0
        while vq.get_buf() is not None:
            n += 1
        return n

    # ------------------------------------------------------------------
    # interrupts
    # ------------------------------------------------------------------
    def _vring_interrupt(self, vq: SplitQueue) -> None:
        if not vq.more_used():
            self.stats["spurious_calls"] += 1
            return
        if vq.index == CONSOLE_CTRL_RX_QUEUE:
            self._control_work()
        elif vq.index == CONSOLE_RX_QUEUE:
            self._in_intr(vq)
        elif vq.index == CONSOLE_TX_QUEUE:
            self._reclaim(vq)               # out_intr(): wakes a blocked writer

    def _take_inbuf(self, vq: SplitQueue) -> bytes | None:
        """A used receive buffer's bytes; the buffer goes back on the ring (re-added)."""
        got = vq.get_buf()
        if got is None:
            return None
        chain, length = got
        if length > PAGE_SIZE:
            raise VhostFrontendError(f"used length {length} > buffer {PAGE_SIZE}")
        data = self.mem.read(chain.token, length)
        self._add_inbuf(vq)
        return data

    def _control_work(self) -> None:
        """``control_work_handler()`` + ``handle_control_message()``."""
        vq = self.queues[CONSOLE_CTRL_RX_QUEUE]
        while (data := self._take_inbuf(vq)) is not None:
            if len(data) < CONSOLE_CONTROL.size:
                raise VhostFrontendError(f"control message of {len(data)} bytes")
            port, event, value = CONSOLE_CONTROL.unpack_from(data)
            self.control_log.append(("recv", port, event, value))
            if port != 0:
                raise VhostFrontendError(f"control event {event} for port {port}")
            if event == ConsoleEvent.PORT_ADD:
                if self.port_added:
                    self._send_control(0, ConsoleEvent.PORT_READY, 1)
                    continue
                self.port_added = True      # add_port(): its receive buffers, then READY
                self._fill_queue(self.queues[CONSOLE_RX_QUEUE])
                self._send_control(0, ConsoleEvent.PORT_READY, 1)
            elif event == ConsoleEvent.PORT_NAME:
                if self.port_name is None:
                    self.port_name = data[CONSOLE_CONTROL.size:].split(b"\0")[0].decode()
            elif event == ConsoleEvent.PORT_OPEN:
                self.host_connected = bool(value)
                self._reclaim(self.queues[CONSOLE_TX_QUEUE])
            else:
                raise VhostFrontendError(f"unexpected control event {event}")

    def _in_intr(self, vq: SplitQueue) -> None:
        """``in_intr()``: data for a reader, or discarded while the port is closed."""
        got_data = False
        while (data := self._take_inbuf(vq)) is not None:
            if self.guest_connected:
                self.port_data += data
                got_data = True
            else:
                self.discarded += len(data)
        self.rx_batches += got_data

    def take_received(self) -> bytes:
        """What a reader got so far (removed)."""
        data = bytes(self.port_data)
        self.port_data.clear()
        return data

    def result(self) -> dict[str, Any]:
        """Negotiation, handshake and counters, JSON-ready."""
        return {
            "device_features": self.device_features,
            "features": self.features,
            "linux_features": self.linux_features,
            "max_nr_ports": self.max_nr_ports,
            "port_name": self.port_name,
            "host_connected": self.host_connected,
            "control": [list(c) for c in self.control_log],
            "discarded": self.discarded,
            "rx_batches": self.rx_batches,
            "stats": dict(self.stats),
            "sent": dict(self.sent),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }
