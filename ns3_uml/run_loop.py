"""The run loop: the calendar runs in C++ until a point where Python must act, then Python acts.

Python acts at the simulated times of ``Simulation.at`` callbacks, of scheduled commands'
``at`` and of guests' deadlines, and when a guest's agent says something that needs an
answer (ready, a command ended: the console device stops the run then). Everything else,
output included, stays in C++ (rule 11). Every stop is a fixed point of the schedule (a
stop event at a time, or the event that brought an agent's frame), so what Python does
there (send a command, call a callback) happens at the same place in every run (rule 3).
"""

from __future__ import annotations

import heapq
import itertools
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .calendar import Calendar
from .session import CommandState, GuestSession


@dataclass(order=True)
class _Timer:
    time_ns: int
    seq: int
    fn: Callable[[], Any] = field(compare=False)


class RunLoop:
    """Drives one simulation's calendar and its guests' sessions (by guest name)."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self.sessions: dict[str, GuestSession] = {}
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        #: True while a ``Simulation.at`` callback runs (blocking calls are refused then).
        self.in_callback = False

    @property
    def now_ns(self) -> int:
        return self.calendar.now_ns()

    def at(self, time_ns: int, fn: Callable[[], Any]) -> None:
        heapq.heappush(self._timers, _Timer(time_ns, next(self._seq), fn))

    def advance(self, until_ns: int | None, done: Callable[[], bool]) -> None:
        """Run until ``until_ns`` (simulated), or until ``done()``, or until nothing is left
        to happen (every guest idle, nothing scheduled)."""
        while True:
            self.dispatch()
            now = self.now_ns
            if done() or (until_ns is not None and now >= until_ns):
                return
            target = self._next_wake(now)
            if until_ns is not None:
                target = until_ns if target is None else min(target, until_ns)
            if target is None and not self.calendar.impl.HasPendingEvents():
                return  # nothing will ever happen: every guest waits for the host
            self.calendar.advance(until_ns=target)

    def _next_wake(self, now: int) -> int | None:
        times = [s.next_wake_ns(now) for s in self.sessions.values()]
        if self._timers:
            times.append(max(self._timers[0].time_ns, now))
        times = [t for t in times if t is not None]
        return min(times) if times else None

    def dispatch(self) -> list[CommandState]:
        """What Python does at a stop: take the agents' frames, reach deadlines, call due
        callbacks, send due commands. Returns the commands that ended."""
        now = self.now_ns
        ended = []
        for session in self.sessions.values():
            ended += session.take_frames()
            if (session.stop_at_ns is not None and not session.stopped
                    and now >= session.stop_at_ns):
                session.reach_deadline()
        while self._timers and self._timers[0].time_ns <= now:
            timer = heapq.heappop(self._timers)
            self.in_callback = True
            try:
                timer.fn()
            finally:
                self.in_callback = False
        for session in self.sessions.values():
            for state in session.due(now):
                session.send_run(state)
        return ended

    def power_off(self, timeout_s: float = 30.0, within_ns: int = 10_000_000_000) -> None:
        """Tell every agent to power its guest off and run until they are gone: within
        ``within_ns`` of simulated time (ns-3's own events, a Wi-Fi beacon, never end) and
        ``timeout_s`` of wall time; the caller kills what is left."""
        for session in self.sessions.values():
            if session.device.IsConnected() and not session.powering_off:
                session.send_poweroff()
        end_ns = self.now_ns + within_ns
        deadline = time.monotonic() + timeout_s
        # Each guest's departure stops the run (its console device), so this looks again.
        while (any(s.device.IsConnected() for s in self.sessions.values())
               and self.calendar.impl.HasPendingEvents() and self.now_ns < end_ns
               and time.monotonic() < deadline):
            self.calendar.advance(until_ns=end_ns)
