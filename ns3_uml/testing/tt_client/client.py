"""Reference client of the UM time-travel protocol, modelled on UML 6.12.

The class :class:`TTClient` speaks the client ("host") side of the protocol the
way ``arch/um/kernel/time.c`` of Linux 6.12 does, function by function, with the
project's kernel patch 0004 (the time reached is published before every WAIT;
``publish_before_wait=False`` for a stock kernel):

=============================  ===========================================
time.c                         here
=============================  ===========================================
time_travel_set_time           ``_set_time``
time_travel_setup_shm          ``_setup_shm`` (the page: ``shm.ShmPage``)
time_travel_handle_message     ``_handle_message`` (its read part:
                               ``connection.TTConnection._read_msg``)
time_travel_ext_req            ``ext_req``
time_travel_ext_update_request ``ext_update_request``
__time_travel_propagate_time   ``propagate_time``
time_travel_ext_request        ``ext_request``
time_travel_ext_wait           ``ext_wait``
time_travel_ext_get_time       ``ext_get_time``
__time_travel_update_time      ``_update_time_once``
__time_travel_add_event        ``add_event``
time_travel_del_event          ``del_event``
time_travel_update_time        ``update_time``
time_travel_ndelay             ``ndelay``
time_travel_add_irq_event      ``add_irq_event``
time_travel_sleep              ``idle_sleep``
time_travel_set_start          ``get_tod`` (returns what
                               read_persistent_clock64 computes)
timer_read                     ``read_clock``
bc_store                       ``broadcast``
=============================  ===========================================

The sockets (the time socket and the "irq" interrupt line) are
:class:`~ns3_uml.testing.tt_client.connection.TTConnection`'s, which this class
extends.  Everything UML would ``panic()`` or ``BUG_ON()`` on raises
:class:`TTPanic`.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Callable

from ns3_uml.protocol import (
    CAP_TIME_SHARE,
    FLAG_REQ_RUN,
    ID_NONE,
    TIME_NEVER,
    TIMER_MULTIPLIER,
    Op,
)
from ns3_uml.testing.tt_client.connection import (
    TIME_MINUS_ONE,
    TTMH_IDLE,
    TTMH_POLL,
    TTMH_READ,
    TTMH_READ_START_ACK,
    U32_MASK,
    U64_MASK,
    TTConnection,
)
from ns3_uml.testing.tt_client.errors import TTLinkBroken, TTPanic, TTTimeout
from ns3_uml.testing.tt_client.shm import ShmMapFailed, ShmPage, ShmRefused

__all__ = ["DEFAULT_ID", "TTClient", "TTEvent", "TTLinkBroken", "TTPanic", "TTTimeout"]


#: UML's default START id when none is given on the command line (~0ULL).
DEFAULT_ID = ID_NONE
#: S64_MAX: what time_travel_sleep() asks for when nothing is pending.
S64_MAX = TIME_NEVER


class TTEvent:
    """``struct time_travel_event``: one entry of the client's event list."""

    __slots__ = ("name", "fn", "time", "pending", "onstack")

    def __init__(self, name: str, fn: Callable[[TTEvent], None] | None = None,
                 onstack: bool = False) -> None:
        self.name = name
        self.fn = fn
        self.time = 0
        self.pending = False
        self.onstack = onstack

    def __repr__(self) -> str:
        state = "pending" if self.pending else "idle"
        return f"TTEvent({self.name!r}, time={self.time}, {state})"



class TTClient(TTConnection):
    """One time-travel client, behaving like a UML 6.12 guest's time.c.

    ``socket_path`` is the calendar's listening socket (or pass a connected
    ``sock``).  ``client_id`` is the START id (UML default ``~0``).
    ``use_shm=False`` makes the client refuse shared memory (it still receives
    and closes the fds, as UML always does).  ``irq`` is a connected stream
    socket or a path to connect to before START; each byte on it is one device
    interrupt.  ``device`` is a connected stream socket to a device another client
    serves (:meth:`kick`).  ``tod_start`` mirrors UML's ``time-travel-start=`` (no
    GET_TOD then).  ``offset`` is the calendar time at START if the caller knows it
    (message mode cannot learn it; shm mode uses the page's value).
    ``timeout`` (seconds) bounds every blocking wait; UML has none.
    ``publish_before_wait``: patch 0004's propagate_time() before WAIT.
    """

    def __init__(self, socket_path: str | None = None,
                 client_id: int = DEFAULT_ID, *,
                 sock: socket.socket | None = None,
                 use_shm: bool = True,
                 irq: str | socket.socket | None = None,
                 device: socket.socket | None = None,
                 tod_start: int | None = None,
                 offset: int | None = None,
                 timeout: float | None = None,
                 publish_before_wait: bool = True) -> None:
        super().__init__(socket_path, sock=sock, irq=irq, use_shm=use_shm,
                         timeout=timeout, device=device)
        self.client_id = client_id & U64_MASK
        self.publish_before_wait = publish_before_wait

        # --- state of time.c -------------------------------------------
        self.time = 0                       # time_travel_time (local ns)
        self.shm_offset = 0                 # time_travel_shm_offset
        self.waiting = 0                    # time_travel_ext_waiting
        self.prev_request_valid = False
        self.prev_request = 0
        self.seq = 0                        # static seq of ext_req
        self.next_event = 0                 # time_travel_next_event
        self.bc_message = 0
        self._free_until_ptr: str | None = None   # None / "own" / "shm"
        self._own_free_until = 0            # _time_travel_ext_free_until
        self._last_propagated = 0           # static in propagate_time
        self._tod_start_set = tod_start is not None
        self._tod_start = (tod_start or 0) & U64_MASK
        self.shm: ShmPage | None = None     # time_travel_shm
        self.shm_id = 0                     # time_travel_shm_id
        self.events: list[TTEvent] = []     # time_travel_events
        self.timer_event = TTEvent("timer", self._timer_fired)
        self.irq_event = TTEvent("irq", self._irq_fired)

        # --- bookkeeping (not in UML) -----------------------------------
        self._known_offset = offset
        self.started = False
        self.runs: list[dict[str, Any]] = []
        self.irqs: list[dict[str, Any]] = []
        self.broadcasts: list[dict[str, Any]] = []
        self.tods: list[int] = []
        self.timers_fired = 0
        self.irqs_handled = 0
        # how long after an interrupt its work is due (0: at once, as UML's handlers; a
        # device client such as wmediumd delivers a frame later)
        self.irq_delay = 0
        self._warned_unknown = False

    # ------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------
    @property
    def offset(self) -> int:
        """Calendar time minus local time (shm: from the page; else given or 0)."""
        if self.shm is not None:
            return self.shm_offset
        return self._known_offset or 0

    @property
    def offset_known(self) -> bool:
        """Whether the client can map its local time to the calendar's (shm, or a known offset)."""
        return self.shm is not None or self._known_offset is not None

    def calendar_time(self, local: int | None = None) -> int:
        """Local time converted to the calendar's time base."""
        return ((self.time if local is None else local) + self.offset) & U64_MASK

    @property
    def free_until(self) -> int | None:
        """What ``*time_travel_ext_free_until`` reads now (None: NULL pointer)."""
        if self._free_until_ptr is None:
            return None
        if self._free_until_ptr == "own":
            return self._own_free_until
        assert self.shm is not None
        return self.shm.free_until

    def first_event(self) -> TTEvent | None:
        """time_travel_first_event()."""
        return self.events[0] if self.events else None

    def _record(self, event: str, local: int | None = None,
                **extra: Any) -> dict[str, Any]:
        local = self.time if local is None else local
        return super()._record(event, local=local,
                               calendar=self.calendar_time(local), **extra)

    def serve_message(self) -> None:
        """Handle one time message while a device waits, as ``time_travel_wait_readable``
        does (``TTMH_READ``)."""
        self._handle_message(TTMH_READ)

    # ------------------------------------------------------------------
    # time.c, function by function
    # ------------------------------------------------------------------
    def _set_time(self, ns: int) -> None:
        if ns < self.time:
            raise TTPanic(
                f"time-travel: time goes backwards {self.time} -> {ns}")
        if ns >= S64_MAX:
            raise TTPanic("The system was going to sleep forever, aborting")
        self.time = ns

    def _setup_shm(self, fd: int, slot: int) -> None:
        try:
            page = ShmPage.map(fd, slot)
        except ShmMapFailed as exc:
            self._warn(str(exc))
            return
        except ShmRefused as exc:
            self._record("shm_refused", version=exc.version, len=exc.length)
            return
        finally:
            os.close(fd)
        self.shm = page
        self.shm_offset = page.current_time
        page.capa |= CAP_TIME_SHARE
        self.shm_id = slot
        # always look at the page's free_until from now on
        self._free_until_ptr = "shm"
        self._record("shm", slot=slot, len=page.length,
                     shm_offset=self.shm_offset)

    def _handle_message(self, mode: int) -> tuple[int, int, int]:
        op, seq, time = self._read_msg(mode)
        if op == Op.ACK:
            return op, seq, time
        if op == Op.RUN:
            self._set_time(time)
            # RUN inside an ACK wait is consumed here and never seen by ext_wait
            nested = mode in (TTMH_READ, TTMH_READ_START_ACK)
            entry = {"local": time, "calendar": self.calendar_time(time)}
            if nested:
                entry["in_ack_wait"] = True
            self.runs.append(entry)
            self._record("run", time, **({"in_ack_wait": True} if nested
                                         else {}))
            if self.shm is not None:
                self.shm.flags &= ~FLAG_REQ_RUN
                return op, seq, time      # no ACK for shm RUN
        elif op == Op.FREE_UNTIL:
            self._record("free_until", value=time, ignored=self.shm is not None)
            if self.shm is None:
                self._free_until_ptr = "own"
                self._own_free_until = time
        elif op == Op.BROADCAST:
            self.bc_message = time
            self.broadcasts.append({"value": time, "local": self.time,
                                    "calendar": self.calendar_time()})
            self._record("broadcast", value=time)
        else:
            # WARN_ONCE, then ACKed like any other message
            if not self._warned_unknown:
                self._warned_unknown = True
                self.warnings.append(f"time-travel: unexpected message {op}")
            self._record("unexpected_message", op=op, value=time)
        self._ack(seq)
        return op, seq, time

    def _ack(self, seq: int) -> None:
        self._write_msg(Op.ACK, seq, 0)

    def ext_req(self, op: int, time: int) -> int:
        """time_travel_ext_req(): send, then read until our ACK; returns ACK.time."""
        self.seq = (self.seq + 1) & U32_MASK
        mseq = self.seq
        time &= U64_MASK
        self._signals_blocked += 1          # block_signals_hard()
        try:
            self._write_msg(op, mseq, time)
            msg = (op, mseq, time)
            # no ACK expected for WAIT in shared memory mode
            if not (op == Op.WAIT and self.shm is not None):
                mode = TTMH_READ_START_ACK if op == Op.START else TTMH_READ
                while msg[0] != Op.ACK:
                    msg = self._handle_message(mode)
                if msg[1] != mseq:
                    raise TTPanic(
                        "time-travel: ACK message has different seqno! "
                        f"op={msg[0]}, seq={msg[1]} != {mseq} time={msg[2]}")
                if op == Op.GET:
                    self._set_time(msg[2])
            result = msg[2]
        finally:
            self._signals_blocked -= 1
        # unblock_signals_hard(): interrupts that came meanwhile run now
        self._irq_point()
        return result

    def ext_update_request(self, time: int) -> None:
        """time_travel_ext_update_request()."""
        if self.prev_request_valid and time == self.prev_request:
            return
        # running and allowed past it: nothing to tell
        fu = self.free_until
        if (not self.waiting and fu is not None
                and time < ((fu - self.shm_offset) & U64_MASK)):
            return
        self.prev_request = time
        self.prev_request_valid = True
        page = self.shm
        if page is not None:
            if page.capa_of(page.running_id) & CAP_TIME_SHARE:
                page.flags |= FLAG_REQ_RUN
                abs_time = (time + self.shm_offset) & U64_MASK
                page.req_time = abs_time
                if abs_time < page.free_until:
                    page.free_until = abs_time
                return
        self.ext_req(Op.REQUEST, time)

    def propagate_time(self) -> None:
        """__time_travel_propagate_time(): what UML does before a device kick."""
        if self.shm is not None:
            if self.shm.running_id != self.shm_id:
                raise TTPanic("time-travel: setting time while not running")
            self.shm.current_time = (self.time + self.shm_offset) & U64_MASK
            return
        if self._last_propagated == self.time:
            return
        self.ext_req(Op.UPDATE, self.time)
        self._last_propagated = self.time

    def ext_request(self, time: int) -> bool:
        """time_travel_ext_request(): True if we must WAIT for ``time``."""
        fu = self.free_until
        if (not self.waiting and fu is not None
                and time < ((fu - self.shm_offset) & U64_MASK)):
            return False
        self.ext_update_request(time)
        return True

    def ext_wait(self, idle: bool = False) -> None:
        """time_travel_ext_wait(): WAIT, then serve messages until RUN."""
        if (self.publish_before_wait and not self.waiting
                and (self.shm is None or self.shm.running_id == self.shm_id)):
            self.propagate_time()  # patch 0004: only while running
        self.prev_request_valid = False
        if self.shm is None:
            self._free_until_ptr = None     # FREE_UNTIL is forgotten here
        self.waiting += 1
        self.ext_req(Op.WAIT, TIME_MINUS_ONE)
        mode = TTMH_IDLE if idle else TTMH_POLL
        op = Op.ACK
        while op != Op.RUN:
            op = self._handle_message(mode)[0]
        self.waiting -= 1
        # we might request more stuff while polling - reset when we run
        self.prev_request_valid = False

    def ext_get_time(self) -> None:
        """time_travel_ext_get_time()."""
        if self.shm is not None:
            now = self.shm.current_time
            self._set_time((now - self.shm_offset) & U64_MASK)
        else:
            self.ext_req(Op.GET, TIME_MINUS_ONE)

    def _update_time_once(self, ns: int, idle: bool) -> None:
        """__time_travel_update_time()."""
        if self.ext_request(ns):
            self.ext_wait(idle)
        else:
            self._set_time(ns)

    def add_event(self, time: int, fn: Callable[[TTEvent], None] | None = None,
                  *, event: TTEvent | None = None) -> TTEvent:
        """__time_travel_add_event(): queue ``event`` (or a new one) at ``time``.

        A pending event is left alone ("first wins"), as in UML.
        """
        if event is None:
            event = TTEvent("event", fn or self._plain_event_fired)
        if event.pending:
            return event
        event.pending = True
        event.time = time
        for i, tmp in enumerate(self.events):
            # equal on-stack events: the later one must be dequeued first
            if tmp.time > time or (tmp.time == time and tmp.onstack
                                   and event.onstack):
                self.events.insert(i, event)
                break
        else:
            self.events.append(event)
        first = self.events[0]
        self.ext_update_request(first.time)
        self.next_event = first.time
        return event

    def del_event(self, event: TTEvent) -> bool:
        """time_travel_del_event()."""
        if not event.pending:
            return False
        self.events.remove(event)
        event.pending = False
        return True

    def _deliver_event(self, event: TTEvent) -> None:
        # UML may defer non-timer events to the irq list while irqs are off;
        # local time does not move in between, so delivering now is the same.
        if event.fn is not None:
            event.fn(event)

    def update_time(self, next_time: int, idle: bool = False) -> None:
        """time_travel_update_time(): run events up to ``next_time``.

        With ``idle`` (the idle loop) it returns after one step, as UML does.
        """
        ne = TTEvent("on-stack", None, onstack=True)
        self.add_event(next_time, event=ne)
        finished = idle
        while True:
            self._irq_point()
            e = self.first_event()
            if e is None:
                raise TTPanic("BUG: empty event list in update_time")
            self._update_time_once(e.time, idle)
            # new events may have been inserted while we were waiting
            if e is self.first_event():
                self.del_event(e)
                if self.time != e.time:
                    raise TTPanic(f"BUG: time {self.time} != event time "
                                  f"{e.time} after it was run")
                if e is ne:
                    finished = True
                else:
                    if e.onstack:
                        raise TTPanic("On-stack event dequeued outside of "
                                      f"the stack! time={self.time}")
                    self._deliver_event(e)
            e = self.first_event()
            if e is not None:
                self.ext_update_request(e.time)
            if not (ne.pending and not finished):
                break
        self.del_event(ne)

    def ndelay(self, ns: int) -> None:
        """time_travel_ndelay(): busy-advance local time by ``ns``."""
        self.update_time(self.time + ns, False)

    def read_clock(self) -> int:
        """timer_read(): costs TIMER_MULTIPLIER ns unless waiting."""
        if not self.waiting:
            self.update_time(self.time + TIMER_MULTIPLIER, False)
        return self.time // TIMER_MULTIPLIER

    def idle_sleep(self) -> None:
        """time_travel_sleep(): one pass of the idle loop."""
        self.update_time(S64_MAX, True)

    def sleep_until(self, t: int) -> None:
        """A kernel timer at ``t`` (one-shot clockevent) and idle until it fired."""
        if t < self.time:
            raise ValueError(f"sleep_until({t}) is in the past (now {self.time})")
        # itimer_next_event(): re-arm the one timer event
        self.del_event(self.timer_event)
        self.add_event(t, event=self.timer_event)
        while self.timer_event.pending:
            self.idle_sleep()

    def sleep(self, ns: int) -> None:
        """Sleep ``ns`` of simulated time like a guest timer sleep."""
        self.sleep_until(self.time + ns)

    def wait_irq(self) -> None:
        """Idle until one more device interrupt has been delivered."""
        handled = self.irqs_handled
        while self.irqs_handled == handled:
            self.idle_sleep()

    def _timer_fired(self, _event: TTEvent) -> None:
        self.timers_fired += 1
        self._record("timer")  # when it woke, whether by RUN or running freely to it

    def _plain_event_fired(self, event: TTEvent) -> None:
        self._record("event", event.time)

    def add_irq_event(self) -> None:
        """time_travel_add_irq_event() for the modelled device interrupt."""
        self.ext_get_time()
        was_pending = self.irq_event.pending
        self.add_event(self.time + self.irq_delay, event=self.irq_event)
        if was_pending:
            if self.irqs:
                self.irqs[-1]["coalesced"] = self.irqs[-1].get("coalesced", 0) + 1
        else:
            self.irqs.append({"received_local": self.time,
                              "received_calendar": self.calendar_time(),
                              "waiting": bool(self.waiting)})
        self._record("irq_received", coalesced=was_pending)

    def _irq_fired(self, _event: TTEvent) -> None:
        self.irqs_handled += 1
        for rec in reversed(self.irqs):
            if "handled_local" not in rec:
                rec["handled_local"] = self.time
                rec["handled_calendar"] = self.calendar_time()
                break
        self._record("irq_handled")

    def kick(self) -> None:
        """A kick of a device that another client serves (virtio_uml's vu_notify with
        REPLY_ACK): the time is told first, then the reply is awaited while the time socket
        is served, since the device's client asks the calendar for time before it answers."""
        self.propagate_time()
        self._record("kick")
        self._kick_device()

    def get_tod(self) -> int:
        """Wall clock as read_persistent_clock64() computes it (boot sequence)."""
        if not self._tod_start_set:
            start = self.ext_req(Op.GET_TOD, TIME_MINUS_ONE)
            # controller gave us the *current* time, so adjust by that
            self.ext_get_time()
            self._tod_start = (start - self.time) & U64_MASK
            self._tod_start_set = True
        value = (self._tod_start + self.time) & U64_MASK
        self.tods.append(value)
        self._record("tod", value=value)
        return value

    def broadcast(self, value: int) -> None:
        """bc_store(): send a BROADCAST and wait for its ACK."""
        self.bc_message = value & U64_MASK
        self.ext_req(Op.BROADCAST, value)

    # ------------------------------------------------------------------
    # life cycle
    # ------------------------------------------------------------------
    def start(self) -> None:
        """Connect the irq socket, then the calendar: START(id), take the ACK's fds.

        The irq socket is connected first (UML probes devices later) so that a
        harness may accept it before it lets the calendar run; a unix-socket
        connect() never needs the peer's accept().
        """
        self._connect()
        self.ext_req(Op.START, self.client_id)
        self.started = True
        self._record("started", slot=self.slot, shm=self.shm is not None)

    def exit_running(self) -> None:
        """Depart like a UML poweroff: close the socket while running, no WAIT."""
        self._record("exit")
        self.close()

    def close(self) -> None:
        """Release sockets and the mapping (no protocol action)."""
        if self.closed:
            return
        self.closed = True
        self._close_lines()
        if self._sock is not None:
            self._sock.close()
        if self.shm is not None:
            self.shm.close()

    # ------------------------------------------------------------------
    # results
    # ------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        """Everything a test or benchmark wants to know, JSON-ready."""
        return {
            "id": self.client_id,
            "slot": self.slot,
            "shm": self.shm is not None,
            "offset": self.offset,
            "offset_known": self.offset_known,
            "start_fds": self.start_fds,
            "runs": self.runs,
            "irqs": self.irqs,
            "broadcasts": self.broadcasts,
            "tods": self.tods,
            "messages": {"sent": dict(self.sent),
                         "received": dict(self.received)},
            "final_time": self.time,
            "timers_fired": self.timers_fired,
            "warnings": self.warnings,
            "log": self.log,
        }

