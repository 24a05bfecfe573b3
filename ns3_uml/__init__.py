"""ns3-uml: ns-3 as the clock and the wire for fleets of real Linux (User-Mode-Linux) guests.

Start with :class:`Simulation`: add guests (``add_node``) and native ns-3 nodes
(``add_native_node``), link them (``point_to_point``, ``csma``, ``wifi`` or raw ns-3 and
``attach``), ``run`` it, and read ``results()``. :func:`sweep` runs an experiment function
over a grid of parameters, each point in a fresh process, into one DataFrame.

The names below load on first use (PEP 562): ``import ns3_uml`` stays cheap, and importing
one module of the package (``ns3_uml.testing.tt_client``) does not load the others.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .calendar import Calendar, CalendarError
    from .external import ExternalClient
    from .guest import CommandResult
    from .limits import HostLimitError
    from .node import NativeNode, Node, UmlNode
    from .simulation import ExternalClientError, GuestError, Simulation
    from .sweeps import sweep

#: Each public name and the module it lives in.
_HOMES = {
    "Calendar": "calendar",
    "CalendarError": "calendar",
    "CommandResult": "guest",
    "ExternalClient": "external",
    "ExternalClientError": "simulation",
    "GuestError": "simulation",
    "HostLimitError": "limits",
    "NativeNode": "node",
    "Node": "node",
    "Simulation": "simulation",
    "UmlNode": "node",
    "sweep": "sweeps",
}

__all__ = sorted([*_HOMES, "__version__"])
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(f".{home}", __name__), name)
        globals()[name] = value  # found directly from now on
        return value
    # A submodule used as an attribute (``ns3_uml._native.load()``), as it was when this
    # face imported everything.
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
