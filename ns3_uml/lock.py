"""One process at a time: an exclusive lock on a file, for caches and records on disk."""

from __future__ import annotations

import contextlib
import errno
import fcntl
from pathlib import Path
from typing import Callable, Iterator


@contextlib.contextmanager
def exclusive(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if needed) for the block. If another
    process holds it, ``on_wait`` is called first (to say so, or to raise rather than wait),
    then we wait. The kernel drops the lock if we die, so a crash never leaves it held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if on_wait is not None:
                on_wait()
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
