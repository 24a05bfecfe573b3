"""The calendar seen from Python: ns-3's SimulatorImpl that also schedules time-travel clients."""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any

from . import _native
from .log import get_logger
from .protocol import ID_NONE
from .units import parse_time

_log = get_logger(__name__)


class CalendarError(RuntimeError):
    """A run stopped because of a client: a crash, a hang, a broken protocol, an interrupt.

    ``kind`` is one of "protocol", "hang", "crash", "timeout", "interrupted", "setup";
    ``client_id`` is the START id of the client at fault (-1 for a client that gave none),
    or None (no client, or a connection that sent no START). Messages name a client by
    that id in decimal, with its process's pid and command when known.
    """

    def __init__(self, kind: str, client_id: int | None, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.client_id = client_id


class Calendar:
    """The UM time-travel calendar, installed as ns-3's simulator implementation.

    Clients (UML guests with ``time-travel=ext:ID:SOCKET``, or any program speaking the
    protocol) connect to ``socket_path``; their run requests and ns-3's events form one
    schedule. There is one calendar per process at a time (one ns-3 simulation); ``close()``
    destroys the simulation and removes the socket.

    ``clients``: how many clients ``run()`` waits for before time starts (they are then
    ordered by START id; clients without one, id -1, come after the others in the order they
    connected, with a warning when there are two). ``shared_memory``: offer shared-memory
    scheduling. ``tod_epoch_ns``: the guests' time of day at simulated 0 (fixed by default).
    ``yield_timeout`` and ``connect_timeout``: wall-clock seconds before a client counts as
    hung or missing; ``message_timeout``: before a message that has started (on a time or
    device socket) and is not whole counts as stalled. ``max_free_run``: at most this much
    simulated time (e.g. "100ms") runs without the calendar hearing of it (default: up to
    the next event that can reach the client). ``independent_groups``: the guests of nodes
    that no chain of channels joins do not stop for each other's events (False: every guest
    stops for every event; same results for each group, more hand-offs). ``log``: a file
    that gets every protocol message with its simulated time.
    """

    _active: "Calendar | None" = None

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        clients: int = 0,
        shared_memory: bool = True,
        max_clients: int = 64,
        tod_epoch_ns: int | None = None,
        yield_timeout: float = 120.0,
        connect_timeout: float = 60.0,
        message_timeout: float = 10.0,
        max_free_run: str | int | float | None = None,
        independent_groups: bool = True,
        log: str | os.PathLike[str] | None = None,
    ) -> None:
        if Calendar._active is not None:
            raise RuntimeError(
                "a Calendar already exists in this process (ns-3 runs one simulation per "
                "process): close() it first"
            )
        ns = _native.load()
        self.ns = ns
        impl_type = ns.StringValue()
        ns.GlobalValue.GetValueByName("SimulatorImplementationType", impl_type)
        if impl_type.Get() != _native.CALENDAR_TYPE:
            ns.GlobalValue.Bind(
                "SimulatorImplementationType", ns.StringValue(_native.CALENDAR_TYPE)
            )
        try:
            self._impl = _native.calendar_class().Get()
        except _native.error_class() as exc:
            raise RuntimeError(
                "ns-3 already runs with another simulator implementation: create the "
                "Calendar before the first ns.Simulator call"
            ) from exc
        # Random variables take their streams from a process-wide counter: start it afresh
        # so that a simulation repeats exactly whether or not the process ran one before.
        ns.RngSeedManager.ResetNextStreamIndex()
        self.socket_path = Path(socket_path)
        attrs: dict[str, Any] = {
            "SocketPath": ns.StringValue(str(self.socket_path)),
            "SharedMemory": ns.BooleanValue(shared_memory),
            "MaxClients": ns.UintegerValue(max_clients),
            "YieldTimeout": ns.DoubleValue(yield_timeout),
            "ConnectTimeout": ns.DoubleValue(connect_timeout),
            "MessageTimeout": ns.DoubleValue(message_timeout),
            "IndependentGroups": ns.BooleanValue(independent_groups),
            "LogFile": ns.StringValue(str(log) if log else ""),
        }
        if tod_epoch_ns is not None:
            attrs["TodEpoch"] = ns.UintegerValue(tod_epoch_ns)
        if max_free_run is not None:
            attrs["MaxFreeRun"] = ns.TimeValue(ns.NanoSeconds(parse_time(max_free_run)))
        for name, value in attrs.items():
            self._impl.SetAttribute(name, value)
        self._impl.ExpectClients(clients)
        self._closed = False
        self._warned = 0
        self._wakeup_r: socket.socket | None = None
        self._wakeup_w: socket.socket | None = None
        Calendar._active = self
        # A script that never calls close() still leaves no socket file behind.
        atexit.register(self.close)
        # Other Python threads (timers, progress bars, a notebook's kernel) keep running
        # while C++ blocks; cppyy takes the GIL back for Python events and callbacks.
        ns.Simulator.Run.__release_gil__ = True
        self._call(self._impl.Listen)

    @classmethod
    def active(cls) -> "Calendar":
        """The calendar of this process (a "setup" ``CalendarError`` if there is none)."""
        if cls._active is None:
            raise CalendarError("setup", None, "no Calendar in this process: create one first")
        return cls._active

    @property
    def impl(self) -> Any:
        """The C++ ``ns3::UmlCalendar`` (for device code and raw ns-3 use)."""
        return self._impl

    @property
    def scheduler(self) -> Any:
        """The calendar as the ``ns3::UmlGuestScheduler`` that devices are handed."""
        return self._impl.GetGuestScheduler()

    def register_process(self, client_id: int, pid: int) -> None:
        """Tell the calendar which child process is behind a client id, so that its abnormal
        death (not a clean power-off) stops the run with an error naming it. Without it the
        calendar looks at the process at the other end of the client's socket."""
        self._call(self._impl.RegisterProcess, _start_id(client_id), pid)

    def admit_process(self, pid: int, timeout: float) -> int:
        """Serve until the client that child process ``pid`` runs has connected and yielded
        once (no other client may connect meanwhile: the one admitted is taken for its);
        register ``pid`` as its process and return its START id (-1: none). A "crash" CalendarError
        if the process ends before, "timeout" after ``timeout`` wall seconds, "setup" if it
        left before its first WAIT."""
        self._install_interrupt()
        try:
            client_id = int(self._call(self._impl.AdmitProcess, pid, float(timeout)))
            return -1 if client_id == ID_NONE else client_id
        finally:
            self._remove_interrupt()

    def set_client_node(self, client_id: int, node_id: int) -> None:
        """Tell the calendar which ns-3 node a client is the guest of: it then belongs to the
        node's independent group (a client without a node stops for every event)."""
        self._call(self._impl.SetClientContext, _start_id(client_id), node_id)

    def admit(self, n: int) -> None:
        """Serve until ``n`` more clients have connected and yielded once."""
        self._call(self._impl.AdmitClients, n)

    def run(self, until: str | int | float | None = None, *,
            until_ns: int | None = None) -> dict[str, Any]:
        """Run the schedule until ``until`` (simulated, e.g. "10s"), until something calls
        ``Simulator::Stop`` (a device that needs Python), or until nothing is left to do
        (every client gone or waiting with no request). May be called again: the schedule
        goes on from where it stopped. ``until_ns``: ``until`` in ns. Returns ``summary()``."""
        self.advance(until, until_ns=until_ns)
        return self.summary()

    def advance(self, until: str | int | float | None = None, *,
                until_ns: int | None = None) -> None:
        """``run()`` without the summary (a run loop stops often: building it is not free)."""
        ns = self.ns
        stop = None
        if until is not None:
            until_ns = parse_time(until)
        if until_ns is not None:
            delay = until_ns - self.now_ns()
            if delay < 0:
                raise ValueError(f"until {until!r} is before the simulated time "
                                 f"({self.now_ns()} ns)")
            stop = ns.Simulator.Stop(ns.NanoSeconds(delay))
        self._install_interrupt()
        try:
            self._call(ns.Simulator.Run)
        finally:
            self._remove_interrupt()
            self._log_warnings()
            if stop is not None and not self._closed and not ns.Simulator.IsExpired(stop):
                # Stopped earlier: the next run must not stop at this one's end.
                ns.Simulator.Remove(stop)

    def now_ns(self) -> int:
        """The simulated time, in ns."""
        return int(self.ns.Simulator.Now().GetNanoSeconds())

    def summary(self) -> dict[str, Any]:
        """Clients, messages by op, simulated and wall time, independent groups (1: all
        joined; 0: grouping off), runs started beside another's (``runs_ahead``) and the
        ``warnings``. Each client: ``id`` (-1: it gave none), ``name`` (as messages name
        it), ``ordered_by`` ("id", or "connection" for the clients without an id), slot,
        runs, how it left (``departure``), its process (``pid``, ``command``) and how that
        stood when it left (``process``: "still runs", "exited with status N", "killed by
        signal N", ...). Built in C++ in one call (``GetSummaryJson``)."""
        return json.loads(str(self._impl.GetSummaryJson()))

    def close(self) -> None:
        """Destroy the simulation: close every client and remove the socket file."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._impl.Shutdown()
        self.ns.Simulator.Destroy()
        Calendar._active = None

    def __enter__(self) -> "Calendar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _native.error_class() as exc:
            client = int(exc.GetClientId()) if exc.HasClient() else None
            if client == ID_NONE:
                client = -1
            raise CalendarError(str(exc.GetKind()), client, str(exc.what())) from None

    def _log_warnings(self) -> None:
        # Each once, as soon as Python runs again (the C++ loop does not call into Python).
        if self._closed:
            return
        count = int(self._impl.GetWarningCount())
        for i in range(self._warned, count):
            _log.warning("calendar: %s", str(self._impl.GetWarning(i)))
        self._warned = count

    def _install_interrupt(self) -> None:
        # Ctrl-C while C++ blocks in epoll: Python's C-level handler writes the signal number
        # to the wakeup fd, which the calendar watches; the run then stops cleanly. cppyy's
        # backend installs its own SIGINT handler when it loads, so Python's is put back
        # for the run (with a no-op body: the calendar reports the interrupt itself).
        if threading.current_thread() is not threading.main_thread():
            return
        r, w = socket.socketpair()
        r.setblocking(False)
        w.setblocking(False)
        self._saved_handlers = {
            sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        self._saved_wakeup = signal.set_wakeup_fd(w.fileno())
        self._wakeup_r, self._wakeup_w = r, w
        self._impl.SetInterruptFd(r.fileno())

    def _remove_interrupt(self) -> None:
        if self._wakeup_r is None:
            return
        self._impl.SetInterruptFd(-1)
        signal.set_wakeup_fd(self._saved_wakeup)
        for sig, handler in self._saved_handlers.items():
            if handler is None:  # a C-level handler (cppyy's): give Python's usual one
                handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, handler)
        self._wakeup_r.close()
        if self._wakeup_w is not None:
            self._wakeup_w.close()
        self._wakeup_r = self._wakeup_w = None


def _start_id(client_id: int) -> int:
    """A client id as START carries it: -1 (no id) is (u64)-1."""
    return ID_NONE if client_id == -1 else client_id


def _ignore_signal(signum: int, frame: object) -> None:
    """Python-level no-op: the calendar sees the signal through the wakeup fd."""
