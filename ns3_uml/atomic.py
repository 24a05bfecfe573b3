"""Files that appear whole or not at all: written beside their place, then renamed onto it.

A reader (another process, a guest booting, a crash's survivor) sees the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Iterator

__all__ = ["replacing", "write_atomic"]


def _temporary_name(path: Path) -> Path:
    # Unique per writer (pid and random part): concurrent writers never share one.
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def replacing(path: Path, mode: int = 0o644, sync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` (not created) for the block to write; when the
    block ends without error it gets ``mode`` (a shared cache must not keep mkstemp's
    0600), is flushed to disk first if ``sync``, and replaces ``path``. Whatever the block
    leaves behind on an error is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        os.chmod(tmp, mode)
        if sync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644, sync: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically (see :func:`replacing`)."""
    raw = data.encode() if isinstance(data, str) else data
    with replacing(path, mode, sync) as tmp:
        tmp.write_bytes(raw)
