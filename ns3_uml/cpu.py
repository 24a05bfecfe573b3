"""Claiming a CPU for one simulation: its calendar thread and all its guests run there.

A simulation's actors run strictly one after another (docs/DESIGN.md rule 1), so one CPU
is all it can use (unless guests of independent groups run at once: then it claims one per
guest that may; ``on_cpu`` takes several); spread over several, every hand-off and every
guest system call is a wake-up across CPUs (an inter-processor interrupt, dear in a VM).
A claim is a lock file per CPU under ``cache_dir()/cpus``, held with ``flock`` for as long
as the claim lasts: simulations running at once (a sweep's points) take different CPUs,
and the kernel drops a dead process's claim. Where it runs changes nothing in the results
(rule 3).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Collection, Iterator, Literal, Union

from .lock import exclusive
from .log import get_logger
from .paths import cache_dir

__all__ = ["CpuChoice", "check_choice", "claimed", "lock_path", "on_cpu", "pinned"]

#: Where a simulation runs: "auto" (a CPU no other simulation holds, if any), a CPU
#: number (that CPU, held or not), or None / False (wherever the OS puts it; bool is an
#: int, so False fits).
CpuChoice = Union[int, Literal["auto"], None]

_log = get_logger(__name__)


class _Held(Exception):
    """Another simulation holds the CPU's lock."""


def _refuse() -> None:
    raise _Held


def lock_path(cpu: int) -> Path:
    """The lock file whose holder has claimed ``cpu``."""
    return cache_dir() / "cpus" / f"cpu{cpu}.lock"


def check_choice(cpu: CpuChoice) -> CpuChoice:
    """``cpu`` as ``pinned`` takes it ("auto", a CPU number or None; False becomes None).
    Raises ValueError for anything else, or a CPU this thread may not run on."""
    if cpu is None or cpu is False:
        return None
    if cpu == "auto":
        return "auto"
    if isinstance(cpu, bool) or not isinstance(cpu, int):
        raise ValueError(f"cpu must be 'auto', a CPU number or None, not {cpu!r}")
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not one this process may run on "
                         f"({_describe(allowed)})")
    return cpu


def _describe(cpus: set[int]) -> str:
    return "CPUs " + ", ".join(str(c) for c in sorted(cpus))


def _take(stack: contextlib.ExitStack, cpu: int) -> bool:
    """Hold ``cpu``'s lock until ``stack`` closes, if nobody else holds it."""
    try:
        stack.enter_context(exclusive(lock_path(cpu), _refuse))
    except _Held:
        return False
    except OSError as exc:  # no writable cache: placement is only an optimisation
        _log.debug("cannot claim CPU %d: %s", cpu, exc)
        return False
    return True


def _choose(stack: contextlib.ExitStack, cpu: CpuChoice, allowed: set[int]) -> int | None:
    if isinstance(cpu, int):
        if not _take(stack, cpu):
            _log.debug("CPU %d is claimed by another simulation; pinning to it as asked", cpu)
        return cpu
    if len(allowed) < 2:
        _log.debug("only %s allowed: not pinning", _describe(allowed))
        return None
    for candidate in sorted(allowed):
        if _take(stack, candidate):
            return candidate
    _log.debug("every allowed CPU is claimed by another simulation (%s): not pinning",
               _describe(allowed))
    return None


@contextlib.contextmanager
def claimed(cpu: CpuChoice = "auto") -> Iterator[int | None]:
    """Claim a CPU for the block: yields it, or None if nothing is to be pinned.

    ``cpu="auto"`` claims an allowed CPU (``os.sched_getaffinity``) that no other running
    simulation holds; with every one held, or only one allowed, nothing is pinned. A CPU
    number is used as asked, claimed too if it is free. None or False: nothing is pinned.
    The claim is released when the block ends however it ends (or the process dies)."""
    choice = check_choice(cpu)
    if choice is None:
        yield None
        return
    with contextlib.ExitStack() as claim:
        yield _choose(claim, choice, os.sched_getaffinity(0))


@contextlib.contextmanager
def on_cpu(where: int | Collection[int] | None) -> Iterator[None]:
    """Run the calling thread, and every process it starts meanwhile, on CPU ``where`` (or
    on the CPUs ``where`` names) for the block (None or none: leave it); its previous mask
    is back when the block ends."""
    cpus = {where} if isinstance(where, int) else set(where or ())
    if not cpus:
        yield
        return
    # Per thread (pid 0: the caller), as is what processes started from it inherit.
    allowed = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, allowed)


@contextlib.contextmanager
def pinned(cpu: CpuChoice = "auto") -> Iterator[int | None]:
    """``claimed`` and ``on_cpu`` together: the block runs on the CPU it claimed; yields
    that CPU, or None if it stays where it was."""
    with claimed(cpu) as where, on_cpu(where):
        if where is not None:
            _log.debug("pinned to CPU %d", where)
        yield where
