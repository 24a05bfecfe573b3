"""Test helpers for ns3-uml: reference clients that hold one side of a protocol still.

They are how the calendar and the devices are tested, and you can test devices of your own
with them.  None of them imports ns-3.

* ``tt_client``: a UM time-travel client modelled on UML 6.12's ``time.c``
  (``python -m ns3_uml.testing.tt_client`` runs one from a JSON script).
* ``vhost_frontend``: a vhost-user front-end modelled on UML 6.12's ``virtio_uml.c`` and the
  virtio-net driver's use of split rings, one module per concern (driver memory, ring,
  channels, transport, virtio-net, hostile helpers); see its docstring.
* ``fake_guest``: both coupled in one process as a UML guest's virtio-net interface is,
  driven by a JSON script (``python -m ns3_uml.testing.fake_guest``): a fake guest for a
  vhost-user back-end running inside the calendar.

Names are loaded lazily so that ``python -m ns3_uml.testing.tt_client`` does not import the
module twice (runpy warns about that) and stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ns3_uml.testing.tt_client import (
        HostileTTClient,
        TTClient,
        TTEvent,
        TTLinkBroken,
        TTPanic,
        TTTimeout,
        run_script,
    )
    from ns3_uml.testing.vhost_frontend import (
        DEFAULT_ACCEPTED_FEATURES,
        DEFAULT_RESERVED,
        DriverMemory,
        HostileFrontend,
        HostileResult,
        PostedChain,
        RingBroken,
        SplitQueue,
        VhostBackendError,
        VhostConnectionClosed,
        VhostFrontendError,
        VhostMessage,
        VhostProtocolError,
        VhostTimeout,
        VhostUnsupported,
        VhostUserFrontend,
    )

_MODULE_OF = {
    **dict.fromkeys(
        ["TTClient", "HostileTTClient", "TTEvent", "TTLinkBroken", "TTPanic", "TTTimeout",
         "run_script"],
        "tt_client",
    ),
    **dict.fromkeys(
        ["VhostUserFrontend", "HostileFrontend", "DriverMemory", "SplitQueue", "PostedChain",
         "HostileResult", "VhostMessage", "VhostFrontendError", "VhostProtocolError",
         "VhostBackendError", "VhostConnectionClosed", "VhostUnsupported", "VhostTimeout", "RingBroken",
         "DEFAULT_ACCEPTED_FEATURES", "DEFAULT_RESERVED"],
        "vhost_frontend",
    ),
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"ns3_uml.testing.{module}"), name)
