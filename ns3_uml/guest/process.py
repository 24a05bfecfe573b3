"""A running guest: its UML process, in a session and process group of its own."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType

from .. import libc
from ..procs import group_members
from .cmdline import guest_argv
from .config import CONSOLE_LOG, GuestConfig
from .init import build_init_script
from .outputs import CommandResult, read_outputs, read_setup_errors

__all__ = ["ADDR_NO_RANDOMIZE", "GuestProcess"]

# personality(2) flag that turns address-space randomisation off (setarch -R).
ADDR_NO_RANDOMIZE = 0x0040000
_PERSONALITY_QUERY = 0xFFFFFFFF


class GuestProcess:
    """One running UML guest, in its own session and process group.

    ``kill()`` and leaving the ``with`` block kill the whole group (UML forks
    helper processes) and reap it: nothing of the guest is left running.
    """

    def __init__(self, cfg: GuestConfig, kernel: Path | str | None = None,
                 time_travel: str | None = None) -> None:
        self.cfg = cfg
        self.kernel = Path(kernel) if kernel is not None else None
        self.time_travel = time_travel
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._returncode: int | None = None

    # -- properties -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The UML process's pid (None before ``start``)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else None."""
        return self._returncode

    @property
    def console_log(self) -> Path:
        """The guest's console: kernel messages and init errors."""
        return self.cfg.workdir_path / CONSOLE_LOG

    @property
    def argv(self) -> list[str]:
        """The UML command line the guest is started with."""
        return guest_argv(self._kernel_path(), self.cfg, self.time_travel)

    def _kernel_path(self) -> Path:
        if self.kernel is None:
            from ..kernel import ensure_kernel  # builds only if nothing is cached
            self.kernel = ensure_kernel()
        return self.kernel

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Write the init script and launch the guest."""
        if self._proc is not None:
            raise RuntimeError(f"guest {self.cfg.name!r} already started")
        workdir = self.cfg.workdir_path
        workdir.mkdir(parents=True, exist_ok=True)
        out = self.cfg.output_dir
        out.mkdir(exist_ok=True)
        # Results of an earlier run must not pass for this run's.
        for stale in out.iterdir():
            if stale.is_file():
                stale.unlink()
        build_init_script(self.cfg)
        argv = self.argv
        with open(self.console_log, "wb") as console:
            # ADDR_NO_RANDOMIZE is per thread and inherited by the child: set it
            # only around the fork, so no preexec_fn (unsafe with threads) is needed.
            old = libc.call("personality", _PERSONALITY_QUERY)
            libc.call("personality", old | ADDR_NO_RANDOMIZE)
            try:
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=console,
                    stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
            finally:
                libc.call("personality", old)
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except OSError:
            self._pidfd = None  # old host kernel: wait() polls instead

    def poll(self) -> int | None:
        """Returncode if the guest has exited (and is then reaped), else None."""
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the guest to exit; reap it and whatever it left in its group.

        Raises ``subprocess.TimeoutExpired`` if it is still running after ``timeout``
        seconds (the guest keeps running then).
        """
        proc = self._require_started()
        if self._returncode is not None:
            return self._returncode
        if not self._wait_exited(timeout):
            raise subprocess.TimeoutExpired(proc.args, timeout or 0.0)
        # The main process has exited but is not reaped, so its pid (the group
        # id) cannot be reused yet: killing the group now hits only the guest.
        self._kill_group()
        return self._reap()

    def kill(self) -> None:
        """Kill the guest's whole process group and reap it (no-op once reaped)."""
        if self._proc is None or self._returncode is not None:
            return
        self._kill_group()
        self._reap()

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"guest {self.cfg.name!r} was not started")
        return self._proc

    def _wait_exited(self, timeout: float | None) -> bool:
        """Block until the main process has exited, without reaping it."""
        proc = self._require_started()
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

    def _kill_group(self) -> None:
        proc = self._require_started()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
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

    def __enter__(self) -> GuestProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.kill()

    def __del__(self) -> None:
        # Last resort only; callers are expected to kill() or use `with`.
        if getattr(self, "_proc", None) is not None and self._returncode is None:
            try:
                self.kill()
            except Exception:
                pass

    # -- results ----------------------------------------------------------------

    def finished(self) -> bool:
        """True once the init ran all commands (it writes ``out/done``)."""
        return (self.cfg.output_dir / "done").exists()

    def read_outputs(self) -> list[CommandResult]:
        """The recorded result of every configured command, in order."""
        return read_outputs(self.cfg)

    def result(self, name: str | int) -> CommandResult:
        """The recorded result of the command named ``name`` (default names: indices)."""
        for r in self.read_outputs():
            if r.name == str(name):
                return r
        raise KeyError(f"guest {self.cfg.name!r} has no command named {name!r}")

    def setup_errors(self) -> list[str]:
        """What went wrong while the init configured sysctls, interfaces and routes."""
        return read_setup_errors(self.cfg)

