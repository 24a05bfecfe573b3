"""What a guest's commands did, as its init recorded it in ``<workdir>/out/``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .config import SETUP_ERRORS, GuestConfig

__all__ = ["CommandResult", "read_outputs", "read_setup_errors", "write_result"]


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
            returncode=None if killed else _int(rc_text),
            start=float(times[0]) if len(times) >= 1 else None,
            end=float(times[1]) if len(times) >= 2 else None,
            name=name,
            background=c.background,
            killed=killed,
        ))
    return results


def write_result(out: Path, result: CommandResult) -> None:
    """Record ``result`` in ``out`` in the files ``read_outputs`` reads (as the shell init
    writes them): for results that reach the host over the agent's channel."""
    out.mkdir(parents=True, exist_ok=True)
    name = result.name
    (out / f"{name}.stdout").write_text(result.stdout)
    (out / f"{name}.stderr").write_text(result.stderr)
    times = [t for t in (result.start, result.end) if t is not None]
    (out / f"{name}.time").write_text(" ".join(f"{t:.9f}" for t in times) + "\n")
    if result.killed:
        (out / f"{name}.killed").write_text("")
    if result.returncode is not None:
        # Written last, as the init does: its presence means the command finished.
        (out / f"{name}.rc").write_text(f"{result.returncode}\n")


def read_setup_errors(cfg: GuestConfig) -> list[str]:
    """Set-up failures the init recorded (``out/setup.err``), one per entry."""
    text = _read(cfg.output_dir / SETUP_ERRORS) or ""
    return [line for line in text.splitlines() if line]


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
