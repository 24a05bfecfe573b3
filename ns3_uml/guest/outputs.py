"""What a guest's commands did, as its init recorded it in ``<workdir>/out/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import SETUP_ERRORS, GuestConfig

__all__ = ["CommandResult", "read_outputs", "read_setup_errors"]


@dataclass
class CommandResult:
    """What one init command did. Times are guest uptime seconds (simulated)."""

    index: int
    command: str
    stdout: str
    stderr: str
    returncode: int | None  # None: the command did not finish
    start: float | None  # None: it never started
    end: float | None
    name: str = ""
    background: bool = False
    #: True if ``stop_at`` killed it (then returncode is None, end the kill time).
    killed: bool = False

    @property
    def duration(self) -> float | None:
        """Simulated seconds from start to end (None if it did not both start and end)."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start



def read_outputs(cfg: GuestConfig) -> list[CommandResult]:
    """Command results recorded in ``cfg``'s output directory."""
    out = cfg.output_dir
    results = []
    for i, c in enumerate(cfg.command_list()):
        name = c.name or str(i)
        killed = (out / f"{name}.killed").exists()
        rc_text = _read(out / f"{name}.rc")
        times = (_read(out / f"{name}.time") or "").split()
        results.append(CommandResult(
            index=i,
            command=c.cmd,
            stdout=_read(out / f"{name}.stdout") or "",
            stderr=_read(out / f"{name}.stderr") or "",
            returncode=(int(rc_text) if rc_text and rc_text.strip().isdigit() and not killed
                        else None),
            start=float(times[0]) if len(times) >= 1 else None,
            end=float(times[1]) if len(times) >= 2 else None,
            name=name,
            background=c.background,
            killed=killed,
        ))
    return results


def read_setup_errors(cfg: GuestConfig) -> list[str]:
    """Set-up failures the init recorded (``out/setup.err``), one per entry."""
    text = _read(cfg.output_dir / SETUP_ERRORS) or ""
    return [line for line in text.splitlines() if line]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
