"""The file lock that kernel builds, the ns-3 header cache and sweep records share."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ns3_uml.lock import exclusive


def _held_by_another_process(lock: Path, seconds: float) -> subprocess.Popen:
    # Its own process group: _release kills flock and its sleep together. -o: only flock
    # itself holds the lock (not its sleep), so the lock is free once flock is reaped.
    holder = subprocess.Popen(["flock", "-o", str(lock), "sleep", str(seconds)],
                              start_new_session=True)
    deadline = time.monotonic() + 5
    while subprocess.run(["flock", "-n", str(lock), "true"]).returncode == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return holder


def _release(holder: subprocess.Popen, lock: Path | None = None) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(holder.pid, signal.SIGKILL)
    holder.wait()
    if lock is not None:
        # Under load the lock was once still held just after the holder was reaped (CI,
        # 2026-12-01): wait until another process can take it before the test goes on.
        deadline = time.monotonic() + 5
        while subprocess.run(["flock", "-n", str(lock), "true"]).returncode != 0:
            assert time.monotonic() < deadline, "the lock stayed held after its holder died"
            time.sleep(0.02)


def test_waits_for_the_holder_and_says_so(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "k.lock"  # its directory is made too
    lock.parent.mkdir()
    holder = _held_by_another_process(lock, 1)
    try:
        said: list[float] = []
        entered: list[float] = []

        def take() -> None:
            with exclusive(lock, lambda: said.append(time.monotonic())):
                entered.append(time.monotonic())

        t0 = time.monotonic()
        thread = threading.Thread(target=take)
        thread.start()
        thread.join(10)
        assert said and said[0] - t0 < 0.3  # told at once...
        # ...and let in once the holder left. The kernel drops a dying process's locks
        # before its parent can reap it, so wait for the exit rather than poll: under
        # load the thread may get in during that window.
        assert entered and holder.wait(timeout=5) is not None
        assert entered[0] - t0 > 0.3
    finally:
        _release(holder)


def test_on_wait_may_refuse_to_wait(tmp_path: Path) -> None:
    lock = tmp_path / "k.lock"
    holder = _held_by_another_process(lock, 30)
    try:
        def refuse() -> None:
            raise RuntimeError("busy")

        with pytest.raises(RuntimeError, match="busy"):
            with exclusive(lock, refuse):
                pytest.fail("entered a lock another process holds")
    finally:
        _release(holder, lock)
    with exclusive(lock, refuse):  # free now: no wait, no refusal
        pass
