"""Where ns3-uml keeps what it builds once per host: the kernel, the ns-3 header cache, logs."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$NS3_UML_CACHE`` or ``~/.cache/ns3-uml``."""
    env = os.environ.get("NS3_UML_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ns3-uml"
