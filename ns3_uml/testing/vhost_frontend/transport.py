"""virtio_uml's device operations: vhost-user start-up, the memory table, vring set-up,
kicks and teardown, as UML 6.12 does them (``vhost_user_init``, ``vu_finalize_features``,
``vhost_user_get_config``, ``vhost_user_set_mem_table``, ``vu_find_vqs``, ``vu_notify``,
``vu_del_vqs``).  What the device does with all of it is ``VhostUserBackend``'s
``Dispatch`` (``bindings/model/vhost-user-backend.h``).
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Self

from ns3_uml.vhost_protocol import (
    CONFIG_HEAD,
    HEADER_SIZE,
    LINUX_RING_TRANSPORT_FEATURES,
    U64,
    UML_PROTOCOL_FEATURES,
    UML_QUEUE_SIZE,
    UML_SUPPORTED_FEATURES,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VIRTIO_TRANSPORT_F_END,
    VIRTIO_TRANSPORT_F_START,
    VRING_ADDR,
    VRING_LOG_NONE,
    ProtocolFeature,
    Request,
    VirtioFeature,
)
from ns3_uml.testing.vhost_frontend.connection import VhostUserConnection
from ns3_uml.testing.vhost_frontend.errors import (
    VhostBackendError,
    VhostFrontendError,
    VhostProtocolError,
    VhostTimeout,
    VhostUnsupported,
)
from ns3_uml.testing.vhost_frontend.memory import DEFAULT_RESERVED, DriverMemory, mem_table_payload
from ns3_uml.testing.vhost_frontend.ring import U16_MASK, SplitQueue

if TYPE_CHECKING:
    from ns3_uml.testing.tt_client import TTClient

__all__ = ["TRANSPORT_MASK", "VhostUserTransport"]

#: The transport feature bits (VIRTIO_TRANSPORT_F_START..END).
TRANSPORT_MASK = ((1 << VIRTIO_TRANSPORT_F_END) - 1) & ~((1 << VIRTIO_TRANSPORT_F_START) - 1)


class VhostUserTransport(VhostUserConnection):
    """``struct virtio_uml_device``: one vhost-user device as UML's transport drives it.

    ``mem_size``/``reserved``: the :class:`DriverMemory` shared with the device;
    ``queue_size``: every ring's size; ``protocol_features``: mask applied after UML's own;
    ``initial_index``: test-only start value of every ring's indices (SET_VRING_BASE).
    The driver above says how many queues its device has (:attr:`NUM_QUEUES`).
    """

    #: Queues ``vu_find_vqs`` sets up, 0 to NUM_QUEUES - 1 (virtio-net: RX and TX).
    NUM_QUEUES = 2

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *,
                 sock: socket.socket | None = None,
                 mem_size: int = 64 << 20,
                 reserved: int = DEFAULT_RESERVED,
                 queue_size: int = UML_QUEUE_SIZE,
                 tt: TTClient | None = None,
                 protocol_features: int = UML_PROTOCOL_FEATURES,
                 timeout: float | None = 10.0,
                 strict: bool = True,
                 initial_index: int = 0) -> None:
        super().__init__(socket_path, sock=sock, tt=tt, timeout=timeout, strict=strict)
        self.mem = DriverMemory(mem_size, reserved)
        self.queue_size = queue_size
        self.protocol_mask = protocol_features
        self.initial_index = initial_index & U16_MASK
        self._kick_fds: dict[int, int] = {}          # fallback without INBAND
        self.device_features = 0        # GET_FEATURES answer
        self.features = 0               # what SET_FEATURES carried (vu_dev->features)
        self._vdev_features = 0         # vdev->features (the driver's view)
        self.linux_features = 0         # what Linux 6.12 would have sent instead
        self.declined_features = 0      # Linux would accept, we did not
        self.backend_protocol_features = 0
        self.config_reads: list[tuple[int, int]] = []
        self.connected = False
        self.closed = False

    def has_feature(self, bit: int) -> bool:
        """``virtio_has_feature()``: looks at ``vdev->features`` (bit 30 not in it)."""
        return bool(self._vdev_features >> bit & 1)


    # ------------------------------------------------------------------
    # start-up
    # ------------------------------------------------------------------
    def _connect_socket(self) -> None:
        """``virtio_uml_probe()``'s start: time propagated, the device's socket connected."""
        if self.tt is not None:
            self.tt.propagate_time()
        if self._sock is None:
            assert self.socket_path is not None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self._sock = sock

    def _vhost_user_init(self) -> None:
        self._send(Request.SET_OWNER)
        self.device_features = self._get_u64(Request.GET_FEATURES)
        if self.device_features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            self.backend_protocol_features = self._get_u64(Request.GET_PROTOCOL_FEATURES)
            # UML stores the mask first, so SET_PROTOCOL_FEATURES itself asks for an ack
            self.protocol_features = (self.backend_protocol_features & UML_PROTOCOL_FEATURES
                                      & self.protocol_mask)
            self._send_u64(Request.SET_PROTOCOL_FEATURES, self.protocol_features)
        if self.has_protocol(ProtocolFeature.BACKEND_REQ):
            # os_pipe(stream): an AF_UNIX stream socketpair, UML keeps [0], sends [1]
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            ours.setblocking(False)
            self._req = ours
            try:
                self._send(Request.SET_BACKEND_REQ_FD, fds=[theirs.fileno()])
            finally:
                theirs.close()
        missing = [p.name for p in (ProtocolFeature.REPLY_ACK, ProtocolFeature.BACKEND_REQ,
                                    ProtocolFeature.CONFIG,
                                    ProtocolFeature.INBAND_NOTIFICATIONS)
                   if not self.has_protocol(p)]
        if missing:
            text = ("back-end lacks protocol features " + ", ".join(missing) +
                    " (UML would fall back to eventfd kicks / pipe calls / random MAC, "
                    "losing the synchronous REPLY_ACK coupling)")
            self.warnings.append(text)
            if self.strict:
                raise VhostUnsupported(text)

    def _choose_features(self, driver: int, accept: int) -> None:
        """``virtio_dev_probe()`` up to the first finalize: the driver's table (``driver``)
        and the device's, transport bits kept; of that only ``accept`` (what the reference
        driver implements) is kept, the rest is reported in :attr:`declined_features`."""
        dev = self.device_features
        linux = (driver & dev) | (dev & TRANSPORT_MASK)
        # the one deliberate deviation: keep only what this reference implements
        self._vdev_features = linux & (accept | UML_SUPPORTED_FEATURES)
        keep = ~(TRANSPORT_MASK & ~LINUX_RING_TRANSPORT_FEATURES)
        self.linux_features = (linux & keep) | (linux & UML_SUPPORTED_FEATURES)
        self._vu_finalize_features()
        self.declined_features = self.linux_features & ~self.features

    def _vu_finalize_features(self) -> None:
        """``vu_finalize_features()``: vring_transport_features, bit 30 back on, SET_FEATURES.

        Bit 30 is taken from ``vdev->features``, which the first call already cleared: a
        second finalize (after validate changed something) sends SET_FEATURES *without*
        bit 30, and then no SET_VRING_ENABLE follows.  Mirrored on purpose.
        """
        supported = self._vdev_features & UML_SUPPORTED_FEATURES
        self._vdev_features &= ~(TRANSPORT_MASK & ~LINUX_RING_TRANSPORT_FEATURES)
        self.features = self._vdev_features | supported
        self._send_u64(Request.SET_FEATURES, self.features)


    def read_config(self, offset: int, length: int) -> bytes | None:
        """``vhost_user_get_config()``: always from offset 0, ``offset + length`` bytes.

        Returns None where UML would leave the caller's buffer untouched.
        """
        if not self.has_protocol(ProtocolFeature.CONFIG):
            return None
        cfg_size = offset + length
        payload_size = CONFIG_HEAD.size + cfg_size
        self.config_reads.append((offset, length))
        self._send(Request.GET_CONFIG, CONFIG_HEAD.pack(0, cfg_size, 0) + bytes(cfg_size),
                   need_response=True)
        try:
            # UML passes the whole message size as the payload limit
            _req, size, payload = self._recv_resp(HEADER_SIZE + payload_size,
                                                  Request.GET_CONFIG)
        except VhostProtocolError as exc:
            self._error(f"receiving VHOST_USER_GET_CONFIG response failed: {exc}")
            return None
        got_cfg = CONFIG_HEAD.unpack_from(payload)[1] if len(payload) >= CONFIG_HEAD.size else -1
        if size != payload_size or got_cfg != cfg_size:
            self._error(f"Invalid VHOST_USER_GET_CONFIG sizes (payload {size} expected "
                        f"{payload_size}, config {got_cfg} expected {cfg_size})")
            return None
        data = payload[CONFIG_HEAD.size + offset:CONFIG_HEAD.size + offset + length]
        self._after_request()
        return data

    def _set_mem_table(self) -> None:
        """One region (``highmem`` is 0 on x86-64 UML), payload always sized for two."""
        self._send(Request.SET_MEM_TABLE, mem_table_payload(self.mem.region()),
                   fds=[self.mem.fd])

    def _find_vqs(self) -> None:
        """``vu_find_vqs()``: memory table, per queue NUM/BASE/ADDR, then per queue ENABLE."""
        self._set_mem_table()
        inband = self.has_protocol(ProtocolFeature.INBAND_NOTIFICATIONS)
        backend_req = self.has_protocol(ProtocolFeature.BACKEND_REQ)
        for index in range(self.NUM_QUEUES):
            vq = SplitQueue(self.mem, index, self.queue_size, initial_index=self.initial_index,
                            event_idx=self.has_feature(VirtioFeature.RING_EVENT_IDX))
            self.queues.append(vq)
            if not inband:
                self._kick_fds[index] = os.eventfd(0, 0)
            if not (inband and backend_req):
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                ours.setblocking(False)
                self._call_socks[index] = ours
                try:
                    self._send(Request.SET_VRING_CALL, U64.pack(index), fds=[theirs.fileno()])
                finally:
                    theirs.close()
            self._set_vring_state(Request.SET_VRING_NUM, index, vq.num)
            self._set_vring_state(Request.SET_VRING_BASE, index, self.initial_index)
            self._send(Request.SET_VRING_ADDR,
                       VRING_ADDR.pack(index, 0, vq.desc_addr, vq.used_addr, vq.avail_addr,
                                       VRING_LOG_NONE))
        for vq in self.queues:
            if vq.index in self._kick_fds:
                self._send(Request.SET_VRING_KICK, U64.pack(vq.index),
                           fds=[self._kick_fds[vq.index]])
            self._set_vring_enable(vq.index, True)

    def _set_vring_enable(self, index: int, enable: bool) -> None:
        if self.features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            self._set_vring_state(Request.SET_VRING_ENABLE, index, int(enable))


    # ------------------------------------------------------------------
    # kicks
    # ------------------------------------------------------------------
    def kick(self, index: int, *, force: bool = False) -> bool:
        """``virtqueue_kick_prepare`` + ``vu_notify``; False if not sent or it failed.

        A kick whose reply is an error or malformed breaks the queue, like Linux's
        ``virtqueue_notify()`` does when ``vu_notify`` returns false.
        """
        vq = self.queues[index]
        if not vq.kick_prepare() and not force:
            self.stats["kicks_suppressed"] += 1
            return False
        return self._notify(vq)

    def _notify(self, vq: SplitQueue) -> bool:
        if vq.broken:
            return False
        if self.tt is not None:
            self.tt.propagate_time()            # UPDATE before every kick
        self.stats[f"kicks_q{vq.index}"] += 1
        if vq.index in self._kick_fds:
            os.eventfd_write(self._kick_fds[vq.index], 1)
            return True
        try:
            self._set_vring_state(Request.VRING_KICK, vq.index, 0)
        except (VhostBackendError, VhostProtocolError) as exc:
            # vu_notify() returns false -> virtqueue_notify() marks the queue broken
            vq.mark_broken(f"kick failed: {exc}")
            vq.reported = True
            self.errors.append(f"queue {vq.index} broken: kick failed: {exc}")
            if self.strict:
                raise
            return False
        self._after_request()
        return True


    # ------------------------------------------------------------------
    # teardown
    # ------------------------------------------------------------------
    def close(self, *, teardown: bool = True) -> None:
        """``vu_del_vqs()`` (disable rings in reverse order, GET_FEATURES barrier) + release."""
        if self.closed:
            return
        self.closed = True
        try:
            if teardown and self.connected and self.registered and self._sock is not None:
                try:
                    for vq in reversed(self.queues):
                        self._set_vring_enable(vq.index, False)
                    self._get_u64(Request.GET_FEATURES)
                except (VhostFrontendError, VhostTimeout, OSError) as exc:
                    self._warn(f"teardown: {exc}")
            if self.tt is not None and not self.tt.closed and teardown and self.connected:
                try:
                    self.tt.propagate_time()    # virtio_uml_release_dev()
                except Exception as exc:  # noqa: BLE001 - the calendar may be gone
                    self._warn(f"release propagate_time: {exc}")
        finally:
            self._close_req()
            for s in self._call_socks.values():
                s.close()
            self._call_socks.clear()
            for fd in self._kick_fds.values():
                os.close(fd)
            self._kick_fds.clear()
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self.mem.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

