"""The two sockets of a UML 6.12 guest's time-travel side, as ``time.c`` reads and writes them.

The time socket to the calendar: one ``struct um_timetravel_msg`` per write and per read
(``time_travel_handle_message``'s read part), the fds of the START ACK, the ``os_poll`` waits.
The interrupt line, an "irq" stream socket modelling a vhost-user device: every byte on it is
one interrupt message, read like ``vu_req_read_message`` does and answered with one byte.
The device line, its other end: a device this client drives and another client serves (as
wmediumd serves UML's hwsim radios); a kick is one byte, its reply one byte.
Interrupts are taken where UML takes SIGIO time-travel handlers: while waiting for RUN, and at
interrupt points while running, never inside an ACK wait (UML blocks signals hard there and
runs the handlers right after).

What a message or an interrupt means is the client's (:mod:`.client`); the calendar's end of
the time socket is ``UmlCalendar`` (``bindings/model/uml-calendar.h``).
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

from ns3_uml.protocol import MAX_FDS, MSG, MSG_SIZE, START_ACK_ID_MASK, Op
from ns3_uml.testing.tt_client.errors import TTLinkBroken, TTPanic, TTTimeout

__all__ = ["TIME_MINUS_ONE", "TTConnection", "U32_MASK", "U64_MASK"]

U32_MASK = 0xFFFF_FFFF
U64_MASK = (1 << 64) - 1
#: UML passes -1 as the time of WAIT/GET/GET_TOD; on the wire that is all ones.
TIME_MINUS_ONE = U64_MASK

# time_travel_message_handling
TTMH_IDLE = 0
TTMH_POLL = 1
TTMH_READ = 2
TTMH_READ_START_ACK = 3

_OP_NAMES = {int(op): op.name for op in Op}


def _op_name(op: int) -> str:
    return _OP_NAMES.get(op, f"OP_{op}")


class TTConnection:
    """The time socket and the interrupt line of one client, with their message counts and log.

    What the client above decides: :meth:`_setup_shm` (the START ACK's memfd) and
    :meth:`add_irq_event` (one interrupt message); :meth:`_record` adds its times to log entries.
    """

    def __init__(self, socket_path: str | None, *, sock: socket.socket | None,
                 irq: str | socket.socket | None, use_shm: bool,
                 timeout: float | None,
                 device: socket.socket | None = None) -> None:
        if socket_path is None and sock is None:
            raise ValueError("need socket_path or sock")
        self.socket_path = socket_path
        self.use_shm = use_shm
        self.timeout = timeout
        self._sock = sock
        self._irq_spec = irq
        self._irq: socket.socket | None = None
        self._device = device
        self._poll_time: select.poll | None = None
        self._poll_both: select.poll | None = None
        self._signals_blocked = 0           # block_signals_hard depth
        self._in_irq = False
        self.closed = False

        # --- bookkeeping (not in UML) -----------------------------------
        self.slot: int | None = None        # START ACK time & 0xffff
        self.start_fds: int | None = None   # fds that came with START ACK
        self.sent: dict[str, int] = {}
        self.received: dict[str, int] = {}
        self.log: list[dict[str, Any]] = []
        self.warnings: list[str] = []

    # ------------------------------------------------------------------
    # what the client decides
    # ------------------------------------------------------------------
    def _setup_shm(self, fd: int, slot: int) -> None:
        """time_travel_setup_shm() (the client's); a bare connection just closes ``fd``."""
        os.close(fd)

    def add_irq_event(self) -> None:
        """time_travel_add_irq_event() (the client's): one interrupt message arrived."""

    def serve_message(self) -> None:
        """One time message while a device waits (the client's); a bare connection reads it."""
        self._read_msg(TTMH_READ)

    def _record(self, event: str, **extra: Any) -> dict[str, Any]:
        entry = {"event": event}
        entry.update(extra)
        self.log.append(entry)
        return entry

    def _count(self, table: dict[str, int], op: int) -> None:
        name = _op_name(op)
        table[name] = table.get(name, 0) + 1

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        self._record("warning", text=text)

    # ------------------------------------------------------------------
    # the time socket
    # ------------------------------------------------------------------
    def _require_sock(self) -> socket.socket:
        if self._sock is None:
            raise RuntimeError("client not started")
        return self._sock

    @property
    def time_socket(self) -> socket.socket:
        """The time socket, for a device that waits on it together with its own."""
        return self._require_sock()

    def _connect(self) -> None:
        """Connect the irq socket, then the calendar's (unless given connected)."""
        spec = self._irq_spec
        if isinstance(spec, socket.socket):
            self._irq = spec
        elif spec is not None:
            irq = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            irq.connect(spec)
            self._irq = irq
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except OSError as exc:
                sock.close()
                raise TTPanic("time-travel: failed to connect to external "
                              f"socket {self.socket_path}: {exc}") from exc
            self._sock = sock

    def _write_msg(self, op: int, seq: int, time: int) -> None:
        # os_write_file(): one write(), result ignored by UML
        data = MSG.pack(op & U32_MASK, seq & U32_MASK, time & U64_MASK)
        try:
            self._require_sock().send(data)
        except (BrokenPipeError, ConnectionResetError):
            self._warn(f"write of {_op_name(op)} failed: peer gone")
        self._count(self.sent, op)

    def _wait_time_readable(self) -> None:
        """Block until the time socket is readable (only with a timeout)."""
        if self.timeout is None:
            return
        if self._poll_time is None:
            self._poll_time = select.poll()
            self._poll_time.register(self._require_sock(), select.POLLIN)
        if not self._poll_time.poll(self.timeout * 1000.0):
            raise TTTimeout(f"no message from the calendar in {self.timeout} s")

    def _idle_poll(self) -> None:
        """``while (os_poll(1, &ext_fd) != 0)`` with SIGIO handlers live.

        Interrupts (irq socket bytes) are serviced while waiting; the time
        socket wins when both are readable.
        """
        sock = self._require_sock()
        if self._irq is None or self._in_irq or self._signals_blocked:
            self._wait_time_readable()
            return
        if self._poll_both is None:
            self._poll_both = select.poll()
            self._poll_both.register(sock, select.POLLIN)
            self._poll_both.register(self._irq, select.POLLIN)
        tfd = sock.fileno()
        timeout = None if self.timeout is None else self.timeout * 1000.0
        while True:
            ready = self._poll_both.poll(timeout)
            if not ready:
                raise TTTimeout(
                    f"no message from the calendar in {self.timeout} s")
            if any(fd == tfd for fd, _ in ready):
                return
            self._service_irq()
            if self._irq is None:          # irq peer went away
                self._wait_time_readable()
                return

    def _read_msg(self, mode: int) -> tuple[int, int, int]:
        """Read one message like time_travel_handle_message's read part."""
        sock = self._require_sock()
        if mode != TTMH_READ:
            self._idle_poll()
        else:
            self._wait_time_readable()
        try:
            if mode == TTMH_READ_START_ACK:
                data, fds, _flags, _addr = socket.recv_fds(sock, MSG_SIZE,
                                                           MAX_FDS)
            else:
                data, fds = sock.recv(MSG_SIZE), []
        except ConnectionResetError:
            data, fds = b"", []
        if mode == TTMH_READ_START_ACK:
            if len(data) == MSG_SIZE:
                self._take_start_fds(data, fds)
            else:
                for fd in fds:
                    os.close(fd)
        if not data:
            raise TTLinkBroken("time-travel external link is broken")
        if len(data) != MSG_SIZE:
            raise TTPanic(f"invalid time-travel message - {len(data)} bytes")
        op, seq, time = MSG.unpack(data)
        self._count(self.received, op)
        return op, seq, time

    def _take_start_fds(self, data: bytes, fds: list[int]) -> None:
        """The fd part of TTMH_READ_START_ACK: memfd -> shm setup, close log fd."""
        _op, _seq, time = MSG.unpack(data)
        self.start_fds = len(fds)
        self.slot = time & START_ACK_ID_MASK
        if len(fds) < MAX_FDS:
            # 6.12 would use uninitialised fd numbers (0 = its own stdin)
            self._warn(f"START ACK carried {len(fds)} fds; UML 6.12 needs 2")
        for fd in fds[MAX_FDS:]:
            os.close(fd)
        if fds:
            if self.use_shm:
                self._setup_shm(fds[0], self.slot)
            else:
                os.close(fds[0])
        if len(fds) > 1:
            os.close(fds[1])     # "we don't use the logging for now"

    # ------------------------------------------------------------------
    # the interrupt line
    # ------------------------------------------------------------------
    def _irq_point(self) -> None:
        """A point where a pending SIGIO time-travel handler would run."""
        if (self._irq is None or self._in_irq or self._signals_blocked
                or self.closed):
            return
        if select.select([self._irq], [], [], 0)[0]:
            self._service_irq()

    def _service_irq(self) -> None:
        """vu_req_read_message(): drain the irq socket, one event per byte."""
        irq = self._irq
        if irq is None or self._in_irq:
            return
        self._in_irq = True
        try:
            while True:
                try:
                    data = irq.recv(4096, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                except ConnectionResetError:
                    data = b""
                if not data:
                    self._record("irq_socket_closed")
                    self._close_irq()
                    break
                for _ in data:
                    self.add_irq_event()
                    # reply only after GET + REQUEST, like UML's REPLY_ACK
                    try:
                        irq.send(b"\x00")
                    except OSError:
                        self._warn("irq reply failed: peer gone")
        finally:
            self._in_irq = False

    # ------------------------------------------------------------------
    # the device line
    # ------------------------------------------------------------------
    def _kick_device(self) -> None:
        """Kick the device and wait for its reply, serving the time socket meanwhile, as
        ``vhost_user_recv`` does in ``time_travel_wait_readable`` (device socket first)."""
        if self._device is None:
            raise ValueError("kick needs a device line (--device-fd)")
        self._device.sendall(b"\x01")
        poller = select.poll()
        poller.register(self._device, select.POLLIN)
        poller.register(self._require_sock(), select.POLLIN)
        dfd = self._device.fileno()
        timeout = None if self.timeout is None else self.timeout * 1000.0
        while True:
            ready = {fd for fd, _ in poller.poll(timeout)}
            if not ready:
                raise TTTimeout(f"no reply from the device in {self.timeout} s")
            if dfd in ready:
                if not self._device.recv(1):
                    raise TTLinkBroken("the device closed its line")
                return
            self.serve_message()

    def _close_lines(self) -> None:
        """Close the interrupt and device lines."""
        self._close_irq()
        if self._device is not None:
            self._device.close()
            self._device = None

    def _close_irq(self) -> None:
        if self._irq is not None:
            if self._poll_both is not None:
                self._poll_both = None
            self._irq.close()
            self._irq = None
