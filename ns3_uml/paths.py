"""Where ns3-uml keeps what it builds once per host (the kernel, the guest agent, the ns-3
header cache, logs), and the variables that point at a prebuilt binary instead."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["cache_dir", "executable_override", "is_executable", "ns3_package_dir"]


def cache_dir() -> Path:
    """``$NS3_UML_CACHE`` or ``~/.cache/ns3-uml``."""
    env = os.environ.get("NS3_UML_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ns3-uml"


def ns3_package_dir() -> str:
    """The ns3 wheel's package directory (its headers and libraries), found without
    importing it, as CMakeLists.txt finds it."""
    spec = importlib.util.find_spec("ns3")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the ns3 package (pip install ns3) was not found")
    return str(list(spec.submodule_search_locations)[0])


def is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def executable_override(var: str, error: type[Exception] = ValueError) -> Path | None:
    """The binary the environment variable ``var`` names (resolved), or None if it is unset
    or empty; ``error``, naming the variable, if it is not an executable file."""
    value = os.environ.get(var)
    if not value:
        return None
    path = Path(value).expanduser()
    if not is_executable(path):
        raise error(f"{var}={value} does not exist or is not executable")
    return path.resolve()
