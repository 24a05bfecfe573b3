"""A command started in a guest while the simulation runs: ``UmlNode.start`` returns one."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .guest import CommandResult
    from .session import CommandState


class CommandTimeout(TimeoutError):
    """A command did not end within its ``timeout`` (simulated seconds); it was killed.
    ``result`` is what it did until then."""

    def __init__(self, message: str, result: "CommandResult") -> None:
        super().__init__(message)
        self.result = result


class CommandService(Protocol):
    """What a handle needs from the simulation that runs its command."""

    def wait(self, state: "CommandState", node: str,
             timeout: str | float | None) -> "CommandResult": ...

    def signal(self, state: "CommandState", node: str, signo: int) -> None: ...


class CommandHandle:
    """A command running in a guest (``node.start(...)``). ``poll()`` and the output so far
    do not advance the simulation; ``wait()`` does (every guest and ns-3 go on meanwhile)."""

    def __init__(self, node: str, state: "CommandState", service: CommandService) -> None:
        self._node = node
        self._state = state
        self._service = service

    def __repr__(self) -> str:
        status = "running" if not self.done else f"returncode={self.poll()}"
        return f"CommandHandle({self._node}: {self.name!r}, {status})"

    @property
    def name(self) -> str:
        """The name its results go under (``node.result(name)``, ``results()``)."""
        return self._state.name

    @property
    def command(self) -> str:
        return self._state.command

    @property
    def done(self) -> bool:
        """Whether it has ended (or could not start)."""
        return self._state.done

    @property
    def stdout(self) -> str:
        """Its standard output so far (as of the simulation's last stop)."""
        return self._state.stdout.decode(errors="replace")

    @property
    def stderr(self) -> str:
        return self._state.stderr.decode(errors="replace")

    def poll(self) -> int | None:
        """Its returncode if it has ended (negative: the signal that ended it), else None."""
        return self._state.returncode if self._state.done else None

    def wait(self, timeout: str | float | None = None) -> "CommandResult":
        """Advance the simulation until it ends; its result. ``timeout``: simulated seconds
        (or "5s") after which it is killed and ``CommandTimeout`` raised."""
        return self._service.wait(self._state, self._node, timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to its process group, at the current simulated time (it takes
        effect when the simulation goes on)."""
        self._service.signal(self._state, self._node, int(sig))

    def result(self) -> "CommandResult":
        """What it did so far."""
        return self._state.result()
