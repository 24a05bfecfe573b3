"""The host's processes as ``/proc`` shows them: groups, descendants, command lines.

Every scan tolerates processes that exit while it reads (their files vanish).
"""

from __future__ import annotations

import os
from typing import Iterator

__all__ = ["cmdline", "descendants", "group_members", "pids"]


def pids() -> Iterator[int]:
    """Every process's pid."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None  # exited meanwhile


def cmdline(pid: int) -> str | None:
    """``pid``'s command line, arguments separated by spaces (None: it has gone)."""
    raw = _read(f"/proc/{pid}/cmdline")
    return None if raw is None else raw.replace(b"\0", b" ").decode(errors="replace")


def group_members(pgid: int, zombies: bool = True) -> list[int]:
    """Pids of all processes in process group ``pgid`` (``zombies=False``: of those not yet
    dead; a zombie is dead, and only its parent can take it away)."""
    members = []
    for pid in pids():
        stat = _read(f"/proc/{pid}/stat")
        if stat is None:
            continue
        # Fields after the command name "(...)": state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and (zombies or fields[0] != b"Z"):
            members.append(pid)
    return members


def _children(pid: int) -> list[int]:
    """Pids of ``pid``'s children (each thread's; Linux lists them per thread)."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []  # gone meanwhile
    kids: list[int] = []
    for tid in tasks:
        raw = _read(f"/proc/{pid}/task/{tid}/children")
        if raw is not None:
            kids += [int(x) for x in raw.split()]
    return kids


def descendants(root: int) -> list[int]:
    """Pids of every process below ``root``, parents before their children."""
    found, queue = [], _children(root)
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(_children(pid))
    return found
