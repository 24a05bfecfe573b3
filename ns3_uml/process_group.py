"""A child process in a session and process group of its own, killed and reaped whole.

Guests (UML forks helpers) and external time-travel clients are such children. The main
process is left unreaped until its owner reaps it (``waitid(WNOWAIT)``), so the calendar can
tell how it ended (docs/DESIGN.md rule 9) and its pid, the group's id, is not reused
meanwhile.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Mapping, Sequence

from . import libc
from .procs import group_members

__all__ = ["ADDR_NO_RANDOMIZE", "ProcessGroup"]

# personality(2) flag that turns address-space randomisation off (setarch -R).
ADDR_NO_RANDOMIZE = 0x0040000
_PERSONALITY_QUERY = 0xFFFFFFFF


class ProcessGroup:
    """``argv`` started by ``start`` in a new session, without address-space randomisation
    (as ``setarch -R``: a process's layout then does not vary between runs); ``kill`` kills
    the whole group and reaps it, so nothing of it is left running."""

    def __init__(self, argv: Sequence[str], name: str) -> None:
        self.argv = list(argv)
        #: Who it is, for messages.
        self.name = name
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._returncode: int | None = None

    @property
    def pid(self) -> int | None:
        """The main process's pid (None before ``start``)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else None."""
        return self._returncode

    def start(self, stdout: IO[bytes], stderr: IO[bytes] | int, cwd: Path | None = None,
              env: Mapping[str, str] | None = None) -> None:
        """Launch it (stdin /dev/null); ``stderr`` may be ``subprocess.STDOUT``."""
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        # ADDR_NO_RANDOMIZE is per thread and inherited by the child: set it only around
        # the fork, so no preexec_fn (unsafe with threads) is needed.
        old = libc.call("personality", _PERSONALITY_QUERY)
        libc.call("personality", old | ADDR_NO_RANDOMIZE)
        try:
            self._proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd,
                env=None if env is None else dict(env), start_new_session=True)
        finally:
            libc.call("personality", old)
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except OSError:
            self._pidfd = None  # old host kernel: waits poll instead

    def poll(self) -> int | None:
        """Returncode if it has exited (and is then reaped), else None."""
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the main process to exit; reap it and whatever it left in its group.

        Raises ``subprocess.TimeoutExpired`` if it still runs after ``timeout`` seconds
        (it keeps running then).
        """
        proc = self._require_started()
        if self._returncode is not None:
            return self._returncode
        if not self.wait_exited(timeout):
            raise subprocess.TimeoutExpired(proc.args, timeout or 0.0)
        # The main process has exited but is not reaped, so its pid (the group id) cannot
        # be reused yet: killing the group now hits only what it left.
        self._kill_group(signal.SIGKILL)
        return self._reap()

    def kill(self) -> None:
        """Kill the whole process group and reap it (no-op once reaped)."""
        if self._proc is None or self._returncode is not None:
            return
        self._kill_group(signal.SIGKILL)
        self._reap()

    def stop(self, grace: float) -> None:
        """End it politely: wait up to ``grace`` seconds for it to exit on its own, then
        SIGTERM its group and as long again, then ``kill``."""
        if self._proc is None or self._returncode is not None:
            return
        for sig in (None, signal.SIGTERM):
            if sig is not None:
                self._kill_group(sig)
            if self.wait_exited(grace):
                break
        self.kill()

    def wait_exited(self, timeout: float | None) -> bool:
        """Block until the main process has exited (at most ``timeout`` s), not reaping."""
        proc = self._require_started()
        if self._returncode is not None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # WNOWAIT leaves the zombie in place (see wait()).
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._pidfd is not None:
                poller = select.poll()
                poller.register(self._pidfd, select.POLLIN)
                poller.poll(None if left is None else max(1, int(left * 1000)))
            else:
                time.sleep(0.01 if left is None else min(0.01, left))

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self._proc

    def _kill_group(self, sig: int) -> None:
        proc = self._require_started()
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self, settle: float = 5.0) -> int:
        proc = self._require_started()
        rc = proc.wait()
        self._returncode = rc
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        # Killed helpers were reparented: wait until they are dead. Their new parent (the
        # host's init, or a container's) reaps them when it will: some take seconds, a
        # container's first process may never.
        deadline = time.monotonic() + settle
        while group_members(proc.pid, zombies=False) and time.monotonic() < deadline:
            time.sleep(0.01)
        return rc

    def __del__(self) -> None:
        # Last resort only; owners are expected to kill() it.
        if getattr(self, "_proc", None) is not None and self._returncode is None:
            try:
                self.kill()
            except Exception:
                pass
