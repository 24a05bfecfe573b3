"""Progress bars: the one way ns3-uml makes one (kernel builds, sweeps, simulated time)."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

__all__ = ["SimTimeProgress", "bar"]


def bar(total: float | None = None, *, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr (a widget in a notebook) that adapts to the terminal's width;
    ``options`` go to tqdm (``desc``, ``unit``, ``bar_format``, ...). With ``enabled``
    False it shows nothing and its methods do nothing."""
    from tqdm.auto import tqdm  # noqa: PLC0415  (only when a bar is shown)

    options = {"file": sys.stderr, "dynamic_ncols": True, **options}
    return tqdm(total=total, disable=not enabled, **options)


class SimTimeProgress:
    """Shows simulated seconds reached (out of ``until``) with tqdm, from a thread that polls
    ``now_ns`` a few times a second: the run itself holds no Python state to hook into (the
    calendar blocks in C++ with the GIL released)."""

    def __init__(self, now_ns: Callable[[], int], until_s: float | None,
                 interval: float = 0.2, **tqdm_args: Any) -> None:
        self._now_ns = now_ns
        self._interval = interval
        if until_s:
            shape = "{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} sim s [{elapsed}]"
        else:
            shape = "{desc}: {n:.3f} sim s [{elapsed}]"
        self._bar = bar(until_s, desc="simulating", bar_format=shape, **tqdm_args)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="ns3-uml progress",
                                        daemon=True)

    def __enter__(self) -> "SimTimeProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._show()
        self._bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(self._interval):
            self._show()

    def _show(self) -> None:
        reached = self._now_ns() / 1e9
        if self._bar.total is not None:
            reached = min(reached, self._bar.total)
        self._bar.update(reached - self._bar.n)
