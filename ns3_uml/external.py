"""Processes outside ns3-uml that a Simulation works with: external time-travel clients
(a device simulator such as wmediumd, added by ``Simulation.add_client``) and the
vhost-user sockets other processes serve for guests (``UmlNode.add_vhost_user_device``).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Mapping, Sequence

from .process_group import ProcessGroup

__all__ = ["ExternalClient", "listening_problem"]

#: ``__SO_ACCEPTCON`` in /proc/net/unix's Flags: the socket listens.
_SO_ACCEPTCON = 1 << 16


class ExternalClient:
    """A program that joins the simulation's calendar as a time-travel client.

    It runs in a process group of its own from the first ``run()`` until ``close()``, its
    standard output and error in ``stdout_log`` and ``stderr_log`` (``<workdir>/<name>/``).
    ``client_id`` is the START id it sends (None until it has joined, if it was not given).
    """

    def __init__(self, name: str, argv: Sequence[str | os.PathLike[str]], workdir: Path,
                 client_id: int | None, env: Mapping[str, str] | None,
                 connect_timeout: float) -> None:
        #: Its name in messages; also its directory's.
        self.name = name
        #: Its command line.
        self.argv = [os.fspath(a) for a in argv]
        if not self.argv:
            raise ValueError(f"external client {name!r}: argv is empty")
        #: The START id: the one it was told to send, or the one it sent.
        self.client_id = client_id
        #: Where its logs go.
        self.workdir = workdir / name
        #: Wall seconds it has to connect and yield once (to be admitted).
        self.connect_timeout = connect_timeout
        self._env = None if env is None else {**os.environ, **env}
        self._group = ProcessGroup(self.argv, f"external client {name!r}")

    def __repr__(self) -> str:
        return f"ExternalClient({self.name!r}, client_id={self.client_id})"

    @property
    def stdout_log(self) -> Path:
        """Its standard output."""
        return self.workdir / "stdout.log"

    @property
    def stderr_log(self) -> Path:
        """Its standard error: the first place to look when it fails."""
        return self.workdir / "stderr.log"

    @property
    def pid(self) -> int | None:
        """Its process id (None before the first run)."""
        return self._group.pid

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has ended and been reaped (negative: the signal)."""
        return self._group.returncode

    def start(self) -> int:
        """Start it (the Simulation does, at the first run); its pid."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_log, "wb") as out, open(self.stderr_log, "wb") as err:
            self._group.start(out, err, env=self._env)
        pid = self._group.pid
        assert pid is not None
        return pid

    def stop(self, grace: float = 2.0) -> None:
        """Let it end on its own (it sees the calendar go) for ``grace`` seconds, then
        SIGTERM, then SIGKILL; reap it and its process group. A no-op once it has."""
        if self._group.pid is not None:
            self._group.stop(grace)

    def kill(self) -> None:
        """Kill its process group at once and reap it."""
        if self._group.pid is not None:
            self._group.kill()


def listening_problem(path: str | os.PathLike[str]) -> str | None:
    """Why no process serves the unix socket ``path`` (None: one listens there).

    Read from /proc/net/unix rather than by connecting: a vhost-user server takes any
    connection for a front-end, and may drop its device when that one closes.
    """
    path = os.path.abspath(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "there is no socket there (is the process that serves it running?)"
    except OSError as exc:
        return f"it cannot be looked at ({exc.strerror})"
    if not stat.S_ISSOCK(mode):
        return "it is not a unix socket"
    with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
        next(table)  # the header
        for line in table:
            fields = line.split(maxsplit=7)
            if len(fields) == 8 and int(fields[3], 16) & _SO_ACCEPTCON:
                bound = fields[7].rstrip("\n")
                # A server that bound a relative path is listed with that path.
                if bound == path or (not bound.startswith("/")
                                     and path.endswith("/" + bound.removeprefix("./"))):
                    return None
    return "it is a socket file, but no process listens on it (a stale file?)"
