"""A running guest: its UML process, in a session and process group of its own."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import TracebackType

from ..process_group import ADDR_NO_RANDOMIZE, ProcessGroup
from .cmdline import guest_argv
from .config import CONSOLE_LOG, GuestConfig
from .init import build_init_script
from .outputs import CommandResult, read_outputs, read_setup_errors

__all__ = ["ADDR_NO_RANDOMIZE", "GuestProcess"]


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
        self._group: ProcessGroup | None = None

    # -- properties -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The UML process's pid (None before ``start``)."""
        return self._group.pid if self._group is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else None."""
        return self._group.returncode if self._group is not None else None

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
        if self._group is not None:
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
        group = ProcessGroup(self.argv, f"guest {self.cfg.name!r}")
        with open(self.console_log, "wb") as console:
            group.start(console, subprocess.STDOUT, cwd=workdir)
        self._group = group

    def poll(self) -> int | None:
        """Returncode if the guest has exited (and is then reaped), else None."""
        return self._require_started().poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the guest to exit; reap it and whatever it left in its group.

        Raises ``subprocess.TimeoutExpired`` if it is still running after ``timeout``
        seconds (the guest keeps running then).
        """
        return self._require_started().wait(timeout)

    def kill(self) -> None:
        """Kill the guest's whole process group and reap it (no-op once reaped)."""
        if self._group is not None:
            self._group.kill()

    def _require_started(self) -> ProcessGroup:
        if self._group is None:
            raise RuntimeError(f"guest {self.cfg.name!r} was not started")
        return self._group

    def __enter__(self) -> GuestProcess:
        if self._group is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.kill()

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

