"""What a test may leave behind, found the way a user would look: ``ps`` for a path."""

from __future__ import annotations

import os
import time

from ns3_uml import procs


def processes_mentioning(text: str | os.PathLike[str]) -> dict[int, str]:
    """Host processes (not this one) whose command line contains ``text``, with their
    command lines: guests and their helpers run with their work directory or sockets on
    it."""
    needle = os.fspath(text)
    found = {}
    for pid in procs.pids():
        line = procs.cmdline(pid) if pid != os.getpid() else None
        if line is not None and needle in line:  # None: gone meanwhile, or this process
            found[pid] = line
    return found


def wait_gone(text: str | os.PathLike[str], timeout: float = 30.0) -> dict[int, str]:
    """``processes_mentioning(text)`` once they are gone or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left
