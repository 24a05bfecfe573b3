"""virtio_uml's two vhost-user channels, as UML 6.12 reads and writes them.

The front socket (UML's requests, the back-end's replies: ``vhost_user_send``,
``vhost_user_recv_resp``) and the backend channel (the back-end's VRING_CALL and
CONFIG_CHANGE_MSG, acknowledged like ``vu_req_read_message`` does), plus the interrupt
they raise (``vu_req_interrupt``).  Every message is logged as a :class:`VhostMessage`.
The C++ end of both channels is ``VhostUserBackend`` (``bindings/model/vhost-user-backend.h``).
"""

from __future__ import annotations

import os
import select
import socket
import time as _wall
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ns3_uml.vhost_protocol import (
    HEADER,
    HEADER_SIZE,
    U64,
    UML_BACKEND_MAX_PAYLOAD,
    VHOST_USER_FLAG_NEED_REPLY,
    VHOST_USER_FLAG_REPLY,
    VHOST_USER_REPLY_FLAGS,
    VHOST_USER_VERSION,
    VRING_STATE,
    BackendRequest,
    ProtocolFeature,
    backend_request_name,
    request_name,
)
from ns3_uml.testing.vhost_frontend.errors import (
    VhostBackendError,
    VhostConnectionClosed,
    VhostFrontendError,
    VhostProtocolError,
    VhostTimeout,
)
from ns3_uml.testing.vhost_frontend.ring import U32_MASK, U64_MASK, SplitQueue

if TYPE_CHECKING:
    from ns3_uml.testing.tt_client import TTClient

__all__ = ["VhostMessage", "VhostUserConnection"]

# recv status codes, named like the errnos UML's helpers return
_OK = "OK"
_EAGAIN = "EAGAIN"
_EPROTO = "EPROTO"
_ECONNRESET = "ECONNRESET"


@dataclass
class VhostMessage:
    """One vhost-user message as it went over a socket."""

    direction: str          # "send" (we wrote it) or "recv"
    channel: str            # "front" (UML's socket) or "backend" (the backend channel)
    request: int
    flags: int
    size: int               # the header's size field
    payload: bytes = b""    # what actually travelled after the header
    nfds: int = 0

    @property
    def name(self) -> str:
        """The request's protocol name, e.g. "SET_MEM_TABLE"."""
        if self.channel == "backend":
            return backend_request_name(self.request)
        return request_name(self.request)

    def brief(self) -> tuple[str, int, int]:
        """(request name, flags, size): what tests compare with a real UML trace."""
        return self.name, self.flags, self.size


class VhostUserConnection:
    """The message layer of one front-end: sockets, logs, the interrupt state of ``vu_dev``.

    The queues the back-end may call are in :attr:`queues`; what a call or a config change
    does is up to the driver above (:meth:`_vring_interrupt`, :meth:`_config_changed`).
    """

    def __init__(self, socket_path: str | os.PathLike[str] | None, *,
                 sock: socket.socket | None, tt: TTClient | None,
                 timeout: float | None, strict: bool) -> None:
        if socket_path is None and sock is None:
            raise ValueError("need socket_path or sock")
        self.socket_path = None if socket_path is None else os.fspath(socket_path)
        self.tt = tt
        self.timeout = timeout
        self.strict = strict
        self._sock = sock
        self._req: socket.socket | None = None      # our end of the backend channel
        self._call_socks: dict[int, socket.socket] = {}  # fallback without BACKEND_REQ
        self.protocol_features = 0      # vu_dev->protocol_features
        self.queues: list[SplitQueue] = []
        self.registered = False         # vu_dev->registered

        # --- interrupt state (vu_dev fields) --------------------------------
        self._vq_irq_map = 0
        self._config_changed_irq = False
        self._recv_rc = _OK
        self._irq_pending = False
        self._in_backend_read = False
        self._in_interrupt = False

        # --- bookkeeping ----------------------------------------------------
        self.log: list[VhostMessage] = []
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def _vring_interrupt(self, vq: SplitQueue) -> None:
        """The vring callback of ``vq`` (the driver's)."""

    def _config_interrupt(self) -> None:
        """``virtio_config_changed()``: the driver's reaction to CONFIG_CHANGE_MSG."""

    def has_protocol(self, bit: int) -> bool:
        """Whether the negotiated protocol features include ``bit``."""
        return bool(self.protocol_features >> bit & 1)


    def _error(self, text: str, exc: type[Exception] = VhostProtocolError) -> None:
        """UML logs and goes on; in strict mode we raise."""
        self.errors.append(text)
        if self.strict:
            raise exc(text)

    def _warn(self, text: str) -> None:
        self.warnings.append(text)

    def _deadline(self, timeout: float | None = None) -> float | None:
        t = self.timeout if timeout is None else timeout
        return None if t is None else _wall.monotonic() + t

    @staticmethod
    def _remaining_ms(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(0.0, (deadline - _wall.monotonic()) * 1000.0)

    def _require_sock(self) -> socket.socket:
        if self._sock is None:
            raise VhostFrontendError("front-end not connected")
        return self._sock

    def sequence(self, channel: str = "front",
                 direction: str | None = "send") -> list[tuple[str, int, int]]:
        """(name, flags, size) of every logged message on ``channel`` (and ``direction``)."""
        return [m.brief() for m in self.log
                if m.channel == channel and (direction is None or m.direction == direction)]

    def _record(self, direction: str, channel: str, request: int, flags: int, size: int,
                payload: bytes, nfds: int) -> VhostMessage:
        msg = VhostMessage(direction, channel, request, flags, size, payload, nfds)
        self.log.append(msg)
        (self.sent if direction == "send" else self.received)[msg.name] += 1
        return msg

    # ------------------------------------------------------------------
    # raw I/O
    # ------------------------------------------------------------------
    def _sendmsg(self, sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
        """``full_sendmsg_fds()``: the fds ride on the first chunk only."""
        view = memoryview(data)
        first = True
        while view:
            if first and fds:
                n = socket.send_fds(sock, [view], list(fds))
            else:
                n = sock.send(view)
            first = False
            view = view[n:]

    def _wait_readable(self, sock: socket.socket, deadline: float | None) -> None:
        """``time_travel_wait_readable()`` plus the SIGIO path of the backend channel.

        With ``tt``: poll the socket and the time socket (vhost socket first, like
        ``os_poll``); time messages are handled like TTMH_READ.  Backend-channel messages
        are taken at once, because UML runs time-travel IRQ handlers even with interrupts
        off (the vring work itself waits until the request is done).  Without ``tt`` UML
        defers the backend channel until interrupts are on again, so it is not watched.
        """
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        tt_fd = req_fd = -1
        if self.tt is not None:
            tt_fd = self.tt.time_socket.fileno()
            poller.register(tt_fd, select.POLLIN)
            if self._req is not None and not self._in_backend_read:
                req_fd = self._req.fileno()
                poller.register(req_fd, select.POLLIN)
        while True:
            ready = poller.poll(self._remaining_ms(deadline))
            if not ready:
                raise VhostTimeout(f"no reply from the back-end in {self.timeout} s")
            fds = {fd for fd, _ev in ready}
            if req_fd in fds:
                # the SIGIO handler runs first: the signal interrupts the poll
                self.read_backend_messages(ev=True)
                if self._recv_rc == _ECONNRESET:
                    poller.unregister(req_fd)     # at EOF it would stay readable
                    req_fd = -1
            if sock.fileno() in fds:
                return
            if tt_fd in fds and self.tt is not None:
                self.tt.serve_message()     # what time_travel_wait_readable() does

    def _full_read(self, sock: socket.socket, n: int, deadline: float | None) -> bytes:
        buf = b""
        while len(buf) < n:
            if not select.select([sock], [], [], None if deadline is None else
                                 max(0.0, deadline - _wall.monotonic()))[0]:
                raise VhostTimeout(f"message incomplete after {self.timeout} s")
            try:
                chunk = sock.recv(n - len(buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise VhostConnectionClosed("back-end closed the connection")
            buf += chunk
        return buf

    # ------------------------------------------------------------------
    # vhost_user_send and friends
    # ------------------------------------------------------------------
    def _send(self, request: int, payload: bytes = b"", *, need_response: bool = False,
              fds: Sequence[int] = ()) -> None:
        """``vhost_user_send()``: NEED_REPLY when REPLY_ACK is on and no reply is natural."""
        sock = self._require_sock()
        flags = VHOST_USER_VERSION
        request_ack = not need_response and self.has_protocol(ProtocolFeature.REPLY_ACK)
        if request_ack:
            flags |= VHOST_USER_FLAG_NEED_REPLY
        data = HEADER.pack(request, flags, len(payload)) + payload
        try:
            self._sendmsg(sock, data, fds)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise VhostConnectionClosed(f"sending {request_name(request)}: {exc}") from exc
        self._record("send", "front", request, flags, len(payload), payload, len(fds))
        if request_ack:
            status = self._recv_u64(request)
            if status:
                self.errors.append(f"slave reports error: {status} ({request_name(request)})")
                raise VhostBackendError(request, status)
            self._after_request()

    def _recv_resp(self, max_payload: int, expect: int) -> tuple[int, int, bytes]:
        """``vhost_user_recv_resp()``: (request, size, payload); flags must be exactly 0x5.

        UML never compares the reply's request id with what it asked: a stray reply is
        taken as the answer to the next request.  We do the same but count it.
        """
        sock = self._require_sock()
        deadline = self._deadline()
        self._wait_readable(sock, deadline)
        head = self._full_read(sock, HEADER_SIZE, deadline)
        request, flags, size = HEADER.unpack(head)
        if size > max_payload:
            # UML returns -EPROTO and leaves the payload in the socket (stream now desynced)
            self._record("recv", "front", request, flags, size, b"", 0)
            raise VhostProtocolError(
                f"reply to {request_name(request)} announces {size} bytes, "
                f"at most {max_payload} expected (UML leaves them unread)")
        payload = self._full_read(sock, size, deadline)
        self._record("recv", "front", request, flags, size, payload, 0)
        if request != expect:
            self.stats["reply_request_mismatch"] += 1
            self._warn(f"reply carries request {request_name(request)}, "
                       f"expected {request_name(expect)} (UML does not check)")
        if flags != VHOST_USER_REPLY_FLAGS:
            raise VhostProtocolError(
                f"reply to {request_name(request)} has flags {flags:#x}, UML wants "
                f"exactly {VHOST_USER_REPLY_FLAGS:#x}")
        return request, size, payload

    def _recv_u64(self, expect: int) -> int:
        _req, size, payload = self._recv_resp(U64.size, expect)
        if size != U64.size:
            raise VhostProtocolError(f"u64 reply has size {size}")
        return U64.unpack(payload)[0]

    def _send_u64(self, request: int, value: int) -> None:
        self._send(request, U64.pack(value & U64_MASK))

    def _set_vring_state(self, request: int, index: int, num: int) -> None:
        self._send(request, VRING_STATE.pack(index & U32_MASK, num & U32_MASK))

    def _get_u64(self, request: int) -> int:
        self._send(request, need_response=True)
        value = self._recv_u64(request)
        self._after_request()
        return value

    def _after_request(self) -> None:
        """Interrupts are on again (spin_unlock_irqrestore): deliver what came meanwhile."""
        if self._irq_pending:
            self.deliver_interrupt()


    # ------------------------------------------------------------------
    # backend channel (interrupts)
    # ------------------------------------------------------------------
    @property
    def backend_channel(self) -> socket.socket | None:
        """Our end of the backend channel, if there is one and it is not being read now."""
        if self._req is None or self._in_backend_read:
            return None
        return self._req

    @property
    def backend_channel_failed(self) -> bool:
        """The last drain of the backend channel ended in an error (EOF, bad message)."""
        return self._recv_rc != _OK

    def poll(self, timeout: float = 0.0) -> int:
        """Wait up to ``timeout`` s for backend messages, handle them all; returns how many.

        One wake-up = UML's SIGIO: ``vu_req_read_message`` drains the channel (with ``tt``:
        GET + REQUEST per message before the ack), then ``vu_req_interrupt`` runs the vring
        callbacks.  Without BACKEND_REQ the call sockets are read instead.
        """
        if self._req is None and not self._call_socks:
            return 0
        socks = [self._req] if self._req is not None else list(self._call_socks.values())
        ready = select.select(socks, [], [], max(0.0, timeout))[0]
        if not ready:
            if self._irq_pending:
                self.deliver_interrupt()
            return 0
        before = self.stats["backend_messages"]
        if self._req is not None:
            self.read_backend_messages(ev=self.tt is not None)
        else:
            self._read_call_fds()
        self.deliver_interrupt()
        return self.stats["backend_messages"] - before

    handle_backend_messages = poll

    def _recv_backend_one(self) -> tuple[str, tuple[int, int, int], bytes]:
        """``vhost_user_recv_req()`` on the non-blocking channel."""
        req = self._req
        assert req is not None
        head = b""
        while len(head) < HEADER_SIZE:
            try:
                chunk = req.recv(HEADER_SIZE - len(head))
            except BlockingIOError:
                if head:
                    # full_read(abortable): the partial header is simply lost
                    self.stats["backend_partial_header_lost"] += 1
                    self._warn(f"partial header ({len(head)} bytes) lost on EAGAIN")
                return _EAGAIN, (0, 0, 0), b""
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return _ECONNRESET, (0, 0, 0), b""
            head += chunk
        request, flags, size = HEADER.unpack(head)
        if size > UML_BACKEND_MAX_PAYLOAD:
            self._record("recv", "backend", request, flags, size, b"", 0)
            return _EPROTO, (request, flags, size), b""
        payload = b""
        deadline = self._deadline()
        while len(payload) < size:
            # not abortable: UML spins on EAGAIN until the payload is there
            try:
                chunk = req.recv(size - len(payload))
            except BlockingIOError:
                wait = None if deadline is None else max(0.0, deadline - _wall.monotonic())
                if not select.select([req], [], [], wait)[0]:
                    raise VhostTimeout("backend message payload incomplete") from None
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return _ECONNRESET, (request, flags, size), payload
            payload += chunk
        self._record("recv", "backend", request, flags, size, payload, 0)
        if flags & ~VHOST_USER_FLAG_NEED_REPLY != VHOST_USER_VERSION:
            return _EPROTO, (request, flags, size), payload
        return _OK, (request, flags, size), payload

    def read_backend_messages(self, ev: bool) -> None:
        """``vu_req_read_message()``, quirks included.

        ``response`` starts at 1 once per drain and is never reset: after one good message,
        a later unknown one in the same drain is acked with 0.  A VRING_CALL payload shorter
        than 4 bytes reuses stale bytes in UML; here they read as zero.
        """
        if self._req is None or self._in_backend_read:
            return
        self._in_backend_read = True
        try:
            response = 1
            while True:
                rc, (request, flags, _size), payload = self._recv_backend_one()
                if rc != _OK:
                    break
                self.stats["backend_messages"] += 1
                if request == BackendRequest.CONFIG_CHANGE_MSG:
                    self._config_changed_irq = True
                    self.stats["config_change_msgs"] += 1
                    response = 0
                elif request == BackendRequest.VRING_CALL:
                    index = int.from_bytes(payload[:4].ljust(4, b"\0"), "little")
                    self.stats["calls"] += 1
                    for vq in self.queues:
                        if vq.index == index:
                            response = 0
                            self._vq_irq_map |= 1 << vq.index
                            self.stats[f"calls_q{vq.index}"] += 1
                            break
                    else:
                        self._warn(f"VRING_CALL for unknown queue {index}")
                else:
                    self._warn(f"unexpected slave request {request}")
                    self.stats["unexpected_backend_requests"] += 1
                if ev and self.tt is not None:
                    self.tt.add_irq_event()     # GET, then REQUEST(now) -- before the ack
                if flags & VHOST_USER_FLAG_NEED_REPLY:
                    self._backend_reply(request, flags, response)
                self._irq_pending = True
            if rc == _EPROTO:
                self.stats["backend_eproto"] += 1
                self._warn(f"malformed backend message {request_name(request)} flags "
                           f"{flags:#x} size {_size}")
            self._recv_rc = _OK if rc == _EAGAIN else rc
            if self._recv_rc != _OK:
                self._irq_pending = True
        finally:
            self._in_backend_read = False

    def _backend_reply(self, request: int, flags: int, response: int) -> None:
        """``vhost_user_reply()``: same header, NEED_REPLY off, REPLY on, u64 status."""
        req = self._req
        assert req is not None
        rflags = (flags & ~VHOST_USER_FLAG_NEED_REPLY) | VHOST_USER_FLAG_REPLY
        payload = U64.pack(response)
        data = HEADER.pack(request, rflags, len(payload)) + payload
        try:
            req.setblocking(True)
            self._sendmsg(req, data)
        except OSError as exc:
            self._warn(f"sending reply to slave request failed: {exc}")
        finally:
            req.setblocking(False)
        self._record("send", "backend", request, rflags, len(payload), payload, 0)
        self.stats["acks_sent"] += 1

    def _read_call_fds(self) -> None:
        """``vu_interrupt()`` for the pipe call fds of the non-INBAND fallback."""
        for index, s in self._call_socks.items():
            while True:
                try:
                    data = s.recv(8)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.stats["backend_messages"] += 1
                self.stats[f"calls_q{index}"] += 1
                self._vq_irq_map |= 1 << index
                self._irq_pending = True

    def deliver_interrupt(self) -> None:
        """``vu_req_interrupt()``: one of connection error / vring callbacks / config change.

        Not re-entered: an interrupt that arrives while one is handled (e.g. during the
        refill kick of the RX poll) runs right after it, as UML's IRQ code does.
        """
        if self._in_interrupt:
            return
        self._in_interrupt = True
        try:
            while self._irq_pending:
                self._irq_pending = False
                self._vu_req_interrupt()
        finally:
            self._in_interrupt = False

    def _vu_req_interrupt(self) -> None:
        if self._recv_rc != _OK:
            rc, self._recv_rc = self._recv_rc, _OK
            if rc == _ECONNRESET and self.registered:
                self.registered = False
                self._close_req()
                raise VhostConnectionClosed("back-end closed the backend channel")
            return
        if self._vq_irq_map:
            vq_map, self._vq_irq_map = self._vq_irq_map, 0
            for vq in self.queues:
                if vq_map >> vq.index & 1:
                    self._vring_interrupt(vq)
        elif self._config_changed_irq:
            # note the elif: a config change drained together with a call waits for the
            # next interrupt
            self._config_changed_irq = False
            self._config_interrupt()

    def _close_req(self) -> None:
        if self._req is not None:
            self._req.close()
            self._req = None

