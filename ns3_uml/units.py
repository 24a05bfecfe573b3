"""Simulated times written the way users write them: "10s", "5ms", "250us", 1.5 (seconds)."""

from __future__ import annotations

import re

_UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "min": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_TIME = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|ms|s|min|h)?\s*$")


def parse_time(value: str | int | float) -> int:
    """Nanoseconds from "10s", "5ms", "100us", "42ns", "1.5s", or a number of seconds."""
    if isinstance(value, bool):
        raise TypeError("a time is a string like '10s' or a number of seconds, not a bool")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"a time cannot be negative: {value!r}")
        return round(value * 1_000_000_000)
    match = _TIME.match(value)
    if not match:
        raise ValueError(
            f"not a time: {value!r} (write e.g. '10s', '5ms', '250us', '100ns' or '2min')"
        )
    number, unit = match.groups()
    scale = _UNITS_NS[unit or "s"]
    if "." in number:
        return round(float(number) * scale)
    return int(number) * scale


def format_time(ns: int) -> str:
    """A short human form of a time in ns: "1.5 s", "250 us", "42 ns"."""
    for unit, scale in (("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if abs(ns) >= scale:
            return f"{ns / scale:g} {unit}"
    return f"{ns} ns"
