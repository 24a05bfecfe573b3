"""ns3-uml: ns-3 as the clock and the wire for fleets of real Linux (User-Mode-Linux) guests.

Start with :class:`Simulation`: add guests (``add_node``) and native ns-3 nodes
(``add_native_node``), link them (``point_to_point``, ``csma``, ``wifi`` or raw ns-3 and
``attach``), ``run`` it, and read ``results()``. :func:`sweep` runs an experiment function
over a grid of parameters, each point in a fresh process, into one DataFrame.
"""

from __future__ import annotations

from .calendar import Calendar, CalendarError
from .guest import CommandResult
from .node import NativeNode, Node, UmlNode
from .simulation import GuestError, Simulation
from .sweeps import sweep

__all__ = ["Calendar", "CalendarError", "CommandResult", "GuestError", "NativeNode", "Node",
           "Simulation", "UmlNode", "__version__", "sweep"]
__version__ = "0.1.0"
