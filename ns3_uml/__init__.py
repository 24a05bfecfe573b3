"""ns3-uml: ns-3 as the clock and the wire for fleets of real Linux (User-Mode-Linux) guests."""

from __future__ import annotations

from .calendar import Calendar, CalendarError
from .simulation import GuestError, Simulation, UmlNode

__all__ = ["Calendar", "CalendarError", "GuestError", "Simulation", "UmlNode", "__version__"]
__version__ = "0.1.0"
