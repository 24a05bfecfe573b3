"""System calls the standard library does not wrap (personality, prctl), through libc."""

from __future__ import annotations

import ctypes
import os

_libc: ctypes.CDLL | None = None


def call(name: str, *args: int) -> int:
    """``name(*args)`` from libc, each argument an unsigned long; its result, or OSError
    (with errno) when it returns -1."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    result = getattr(_libc, name)(*(ctypes.c_ulong(a) for a in args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args}: {os.strerror(err)}")
    return int(result)
