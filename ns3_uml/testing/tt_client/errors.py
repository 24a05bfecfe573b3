"""What the reference time-travel client raises."""

from __future__ import annotations

__all__ = ["TTLinkBroken", "TTPanic", "TTTimeout"]


class TTPanic(RuntimeError):
    """A condition on which UML 6.12 panics or hits a BUG_ON."""


class TTLinkBroken(TTPanic):
    """The calendar closed the time socket ("external link is broken")."""


class TTTimeout(TimeoutError):
    """Our own guard (UML would block forever): nothing arrived in time."""
