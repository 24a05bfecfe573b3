"""The host's side of one guest's agent: commands sent over its console, what came back.

A ``GuestSession`` owns the guest's ``ns3::VirtioConsoleDevice``. Frames for the guest go
into the device (it writes them into the guest's receive buffers at the current simulated
time); frames from the guest wait in the device, which stops the run when one that Python
must act on arrives (READY, EXIT, ERROR: ``WAKE_TYPES``). ``take_frames`` applies what came
back to the commands' state. Output pieces never stop a run (rule 11): they are picked up
at the next stop.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import agent_protocol as ap
from .console import send_bytes, take_received
from .guest.outputs import CommandResult, write_result

#: Frames that stop a run: Python acts on them (a command ended, the agent is ready).
WAKE_TYPES = (ap.Type.READY, ap.Type.EXIT, ap.Type.ERROR)


def wake_mask(types: tuple[ap.Type, ...] = WAKE_TYPES) -> int:
    """The device's SetStopTypes mask: bit (type - 16) per guest-to-host type."""
    return sum(1 << (int(t) - int(ap.Type.READY)) for t in types)


@dataclass
class CommandState:
    """One command of a guest, as far as the host knows."""

    id: int
    name: str
    command: str
    index: int
    background: bool = False
    #: Uptime (ns) before which it may not start (scheduled commands), or None.
    at_ns: int | None = None
    scheduled: bool = False
    sent: bool = False
    start_ns: int | None = None
    end_ns: int | None = None
    #: waitpid status once it exited.
    status: int | None = None
    killed: bool = False
    #: Why it could not run (the agent's ERROR), or None.
    error: str | None = None
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def done(self) -> bool:
        return self.end_ns is not None or self.error is not None

    @property
    def returncode(self) -> int | None:
        """Exit code, or -N if signal N ended it (as subprocess); None while it runs, if it
        could not start or if ``stop_at`` killed it."""
        if self.status is None or self.killed:
            return None
        if os.WIFEXITED(self.status):
            return os.WEXITSTATUS(self.status)
        if os.WIFSIGNALED(self.status):
            return -os.WTERMSIG(self.status)
        return None

    def result(self) -> CommandResult:
        stderr = self.stderr.decode(errors="replace")
        if self.error is not None:
            stderr += self.error
        return CommandResult(
            index=self.index, command=self.command,
            stdout=self.stdout.decode(errors="replace"), stderr=stderr,
            returncode=self.returncode,
            start=None if self.start_ns is None else self.start_ns / 1e9,
            end=None if self.end_ns is None else self.end_ns / 1e9,
            name=self.name, background=self.background, killed=self.killed)


class GuestSession:
    """The agent channel of one guest: ``device`` is its ``ns3::VirtioConsoleDevice``;
    results are also written to ``output_dir`` (``out/<name>.*``) as they end."""

    def __init__(self, name: str, device: Any, output_dir: Path, *, not_before_ns: int = 0,
                 stop_at_ns: int | None = None) -> None:
        #: The guest's name (errors name it).
        self.name = name
        self.device = device
        self.output_dir = output_dir
        #: No command starts before this uptime (COMMANDS_NOT_BEFORE).
        self.not_before_ns = not_before_ns
        #: The guest's deadline (``stop_at``): what runs then is killed, nothing starts after.
        self.stop_at_ns = stop_at_ns
        self.stopped = False
        self._reader = ap.FrameReader()
        #: Every command in the order it was given (scheduled and interactive).
        self.commands: list[CommandState] = []
        self._by_id: dict[int, CommandState] = {}
        #: Guest uptime (ns) at which the agent said it was ready; None before.
        self.ready_ns: int | None = None
        self.powering_off = False
        self._seen_connected = False

    @property
    def ready(self) -> bool:
        return self.ready_ns is not None

    @property
    def gone(self) -> bool:
        """Whether the guest has left (powered off, or its agent's console closed)."""
        if self.device.IsConnected():
            self._seen_connected = True
            return False
        return self._seen_connected or self.ready

    def add(self, name: str, command: str, *, background: bool = False,
            at_ns: int | None = None, scheduled: bool = False) -> CommandState:
        state = CommandState(len(self.commands) + 1, name, command, len(self.commands),
                             background, at_ns, scheduled)
        self.commands.append(state)
        self._by_id[state.id] = state
        return state

    def by_name(self, name: str) -> CommandState | None:
        return next((c for c in self.commands if c.name == name), None)

    # -- what is due -------------------------------------------------------------------
    def due(self, now_ns: int) -> list[CommandState]:
        """The commands that should be sent at ``now_ns``: interactive ones as soon as the
        agent is ready; scheduled ones in order, each once the foreground ones before it
        have ended and its ``at`` has come."""
        if (not self.ready or self.stopped or self.powering_off or self.gone
                or now_ns < self.not_before_ns):
            return []
        due = [c for c in self.commands if not c.scheduled and not c.sent]
        for c in self.commands:
            if not c.scheduled or c.sent:
                if c.scheduled and not c.background and not c.done:
                    break  # a foreground command still runs
                continue
            if c.at_ns is not None and c.at_ns > now_ns:
                break
            due.append(c)
            if not c.background:
                break
        return due

    def next_wake_ns(self, now_ns: int) -> int | None:
        """The next time (after ``now_ns``) at which something becomes due without the
        guest saying so: the ``at`` of the next scheduled command, the first allowed start,
        the deadline."""
        times = []
        if self.stop_at_ns is not None and not self.stopped:
            times.append(self.stop_at_ns)
        if self.ready and not self.stopped:
            waiting = [c for c in self.commands if not c.sent]
            if waiting and now_ns < self.not_before_ns:
                times.append(self.not_before_ns)
            nxt = self._next_scheduled()
            if nxt is not None and nxt.at_ns is not None and nxt.at_ns > now_ns:
                times.append(nxt.at_ns)
        times = [t for t in times if t > now_ns]
        return min(times) if times else None

    def _next_scheduled(self) -> CommandState | None:
        """The first scheduled command not sent, if every foreground one before it ended."""
        for c in self.commands:
            if not c.scheduled:
                continue
            if not c.sent:
                return c
            if not c.background and not c.done:
                return None
        return None

    def scheduled_done(self) -> bool:
        """Whether every scheduled command has ended, or never will start (deadline)."""
        return all(c.done or (self.stopped and not c.sent)
                   for c in self.commands if c.scheduled)

    def reach_deadline(self) -> None:
        """``stop_at`` has come: kill what runs; nothing starts any more."""
        self.stopped = True
        for c in self.commands:
            if c.sent and not c.done:
                c.killed = True
                self.send_signal(c, signal.SIGKILL)

    # -- to the guest -----------------------------------------------------------------
    def send_run(self, state: CommandState) -> None:
        state.sent = True
        self._send(ap.run_frame(state.id, state.command))

    def send_signal(self, state: CommandState, signo: int = signal.SIGKILL) -> None:
        self._send(ap.signal_frame(state.id, int(signo)))

    def send_poweroff(self) -> None:
        self.powering_off = True
        self._send(ap.poweroff_frame())

    def _send(self, frame: bytes) -> None:
        send_bytes(self.device, frame)

    # -- from the guest ---------------------------------------------------------------
    def take_frames(self) -> list[CommandState]:
        """Apply the guest's frames that arrived since the last call; the commands that
        ended meanwhile."""
        data = take_received(self.device)
        if not data:
            return []
        ended = []
        try:
            frames = self._reader.feed(data)
        except ap.AgentProtocolError as exc:
            raise self._error(str(exc)) from None
        for frame in frames:
            state = self._apply(frame)
            if state is not None and state.done:
                ended.append(state)
                write_result(self.output_dir, state.result())
            elif state is not None and frame.type == ap.Type.STARTED:
                # As the shell init does: its files say it runs (a start, no end yet).
                write_result(self.output_dir, state.result())
        return ended

    def _apply(self, frame: ap.Frame) -> CommandState | None:
        try:
            return self._apply_checked(frame)
        except ap.AgentProtocolError as exc:  # a payload of the wrong size
            if getattr(exc, "node", None):
                raise
            raise self._error(str(exc)) from None

    def _apply_checked(self, frame: ap.Frame) -> CommandState | None:
        if frame.type == ap.Type.READY:
            self.ready_ns = frame.ready_ns()
            return None
        state = self._by_id.get(frame.id)
        if state is None:
            if frame.type == ap.Type.ERROR:
                raise self._error(f"the agent refused a frame: {frame.text()}")
            raise self._error(f"{frame.type.name} frame for unknown command {frame.id}")
        if frame.type not in (ap.Type.STARTED, ap.Type.STDOUT, ap.Type.STDERR, ap.Type.EXIT,
                              ap.Type.ERROR) or state.done:
            raise self._error(f"{frame.type.name} frame for command {frame.id} "
                              f"({'ended' if state.done else 'running'})")
        if frame.type == ap.Type.STARTED:
            state.start_ns = frame.started()[0]
        elif frame.type == ap.Type.STDOUT:
            state.stdout += frame.payload
        elif frame.type == ap.Type.STDERR:
            state.stderr += frame.payload
        elif frame.type == ap.Type.EXIT:
            state.start_ns, state.end_ns, state.status = frame.exit()
        elif frame.type == ap.Type.ERROR:
            state.error = frame.text()
        return state

    def _error(self, message: str) -> ap.AgentProtocolError:
        error = ap.AgentProtocolError(f"its agent broke the protocol: {message}")
        error.node = self.name
        return error
