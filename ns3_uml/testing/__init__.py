"""Test helpers for ns3-uml: a reference UM time-travel client.

Names are loaded lazily so that ``python -m ns3_uml.testing.tt_client`` does
not import the module twice (runpy warns about that) and stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ns3_uml.testing.tt_client import (
        TTClient,
        TTEvent,
        TTLinkBroken,
        TTPanic,
        TTTimeout,
        run_script,
    )

__all__ = [
    "TTClient",
    "TTEvent",
    "TTLinkBroken",
    "TTPanic",
    "TTTimeout",
    "run_script",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ns3_uml.testing import tt_client

        return getattr(tt_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
