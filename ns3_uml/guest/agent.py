"""Build and cache the guest agent (``data/agent/ns3-uml-agent.c``), as ``kernel`` does the kernel.

The agent is compiled with the host's C compiler, statically linked (docs/DESIGN.md
section 7), into ``cache_dir()/agent/<key>/ns3-uml-agent``; the key hashes the source,
the protocol header (``agent-protocol.h``, installed with the core's headers) and
``cc --version``, so a changed input gives a new binary. Builds serialise on a lock and
publish the binary atomically. ``$NS3_UML_AGENT`` names a prebuilt agent instead.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from .. import _native
from ..atomic import replacing
from ..host import HostSetupError, ensure_host_packages
from ..lock import exclusive
from ..log import get_logger
from ..paths import cache_dir, executable_override, is_executable

__all__ = [
    "AGENT_BUILD_VERSION",
    "AgentBuildError",
    "agent_key",
    "agent_source",
    "build_agent",
    "ensure_agent",
    "find_agent",
    "protocol_header",
]

#: Bump when the build procedure changes in a way the key cannot see.
AGENT_BUILD_VERSION = 1

#: Debian packages the build needs: the compiler and the static C library (libc.a).
BUILD_PACKAGES = ("gcc", "libc6-dev")

COMPILER = "cc"
CFLAGS = ("-std=c11", "-static", "-O2", "-Wall", "-Wextra")
BINARY = "ns3-uml-agent"
HEADER = "agent-protocol.h"

_log = get_logger(__name__)


class AgentBuildError(RuntimeError):
    """The guest agent could not be found or built; the message says why."""


def agent_source() -> Path:
    return Path(__file__).resolve().parent.parent / "data" / "agent" / f"{BINARY}.c"


def protocol_header() -> Path:
    """``agent-protocol.h``: among the installed core's headers (or the source tree's)."""
    for directory in _native.include_dirs():
        if (directory / HEADER).is_file():
            return directory / HEADER
    raise AgentBuildError(
        f"{HEADER} not found in {', '.join(map(str, _native.include_dirs()))} "
        "(is ns3-uml installed with its core?)")


def _compiler_version() -> str:
    try:
        proc = subprocess.run([COMPILER, "--version"], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        raise AgentBuildError(f"no C compiler `{COMPILER}` (package gcc)") from None
    if proc.returncode != 0:
        raise AgentBuildError(f"`{COMPILER} --version` failed: {proc.stderr.strip()}")
    return proc.stdout


def agent_key() -> str:
    """Short hash over the source, the header, the compiler and ``AGENT_BUILD_VERSION``."""
    h = hashlib.sha256()
    h.update(f"ns3-uml agent v{AGENT_BUILD_VERSION} {' '.join(CFLAGS)}\n".encode())
    h.update(b"source\n" + agent_source().read_bytes())
    h.update(b"header\n" + protocol_header().read_bytes())
    h.update(b"compiler\n" + _compiler_version().encode())
    return h.hexdigest()[:16]


def _agent_path(key: str) -> Path:
    return cache_dir() / "agent" / key / BINARY


def find_agent() -> Path | None:
    """The agent to use: ``$NS3_UML_AGENT``, else the cached build, else None."""
    override = executable_override("NS3_UML_AGENT", AgentBuildError)
    if override is not None:
        return override
    path = _agent_path(agent_key())
    return path if is_executable(path) else None


def ensure_agent() -> Path:
    """The guest agent, built first if there is none yet (a second or so)."""
    return find_agent() or build_agent()


def build_agent(force: bool = False) -> Path:
    """Compile the agent into the cache (unless cached) and return its path.

    Installs the compiler and libc.a first if needed (``host``). ``force`` rebuilds even
    when a cached binary exists. Concurrent callers serialise on a lock file; the binary
    appears atomically.
    """
    try:
        ensure_host_packages(BUILD_PACKAGES, purpose="the guest agent's build",
                             log=cache_dir() / "apt.log")
    except HostSetupError as exc:
        raise AgentBuildError(str(exc)) from None
    key = agent_key()
    final = _agent_path(key)
    if is_executable(final) and not force:
        return final
    lock = final.parent.parent / f"{key}.lock"
    with exclusive(lock, lambda: _log.info(f"Waiting for another build of the agent ({lock})")):
        if is_executable(final) and not force:
            return final  # built by whoever held the lock
        _compile(final)
    return final


def _compile(final: Path) -> None:
    source, header = agent_source(), protocol_header()
    _log.info(f"Building the guest agent {final}")
    with replacing(final, 0o755, sync=True) as tmp:
        argv = [COMPILER, *CFLAGS, f"-I{header.parent}", "-o", str(tmp), str(source)]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AgentBuildError(
                f"building the guest agent failed (exit {proc.returncode}): "
                f"`{' '.join(argv)}`\n{proc.stderr.strip()}")
        if proc.stderr.strip():  # the source is -Wall -Wextra clean with gcc 12 (a test)
            _log.warning(f"the guest agent built with warnings:\n{proc.stderr.strip()}")
