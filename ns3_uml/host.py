"""Debian packages on the host: what the kernel build and the guests need.

Guests run the host's own binaries over hostfs (``ip``, ``ping``, ``iperf3``, ...),
so what a guest needs is installed on the host. This module is the one place
that checks packages (``dpkg-query``) and installs them (``apt-get``): as root
it installs what is missing, running ``apt-get update`` first when the package
lists are empty or the install fails without it; otherwise it raises
:class:`HostSetupError` with the exact ``apt-get`` command to run.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Callable, Iterable

from .log import get_logger
from .paths import cache_dir

__all__ = [
    "DEFAULT_GUEST_PACKAGES",
    "HostSetupError",
    "apt_install_command",
    "dpkg_status",
    "ensure_host_packages",
    "missing_packages",
]

#: Packages whose binaries guests commonly run: the init itself needs a shell,
#: coreutils, grep, mount and setsid (util-linux), all essential on Debian;
#: the rest are the usual network tools.
DEFAULT_GUEST_PACKAGES: tuple[str, ...] = (
    "coreutils",
    "grep",
    "mount",
    "util-linux",
    "procps",
    "iproute2",
    "iputils-ping",
    "iperf3",
    # Scripts in guests (the examples send UDP with python3 -c).
    "python3",
)

APT_LISTS = Path("/var/lib/apt/lists")

_log = get_logger(__name__)

# Packages already found installed by this process: dpkg is asked only once.
_verified: set[str] = set()


class HostSetupError(RuntimeError):
    """Host packages are missing and could not be installed; the message says how."""


def dpkg_status(packages: Iterable[str]) -> dict[str, str]:
    """Map of those ``packages`` that are installed to their versions."""
    names = list(packages)
    if not names:
        return {}
    try:
        proc = subprocess.run(
            ["dpkg-query", "-W", "-f=${Package} ${db:Status-Abbrev} ${Version}\n", *names],
            capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise HostSetupError(
            "dpkg-query not found: ns3-uml needs a Debian or Ubuntu host for its "
            "packages (or set NS3_UML_KERNEL to a prebuilt UML kernel and install "
            f"these yourself: {', '.join(names)})") from None
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        # "ii" (installed, no error flag) is the only usable state.
        if len(parts) >= 3 and parts[1] == "ii":
            found[parts[0].split(":")[0]] = parts[2]
    return found


def missing_packages(packages: Iterable[str]) -> list[str]:
    """The ``packages`` that are not installed, in the given order, without repeats."""
    wanted = list(dict.fromkeys(packages))
    unknown = [p for p in wanted if p not in _verified]
    installed = dpkg_status(unknown)
    _verified.update(installed)
    return [p for p in unknown if p not in installed]


def apt_install_command(packages: Iterable[str]) -> str:
    """The command that installs ``packages`` (as shown to users)."""
    return "apt-get install -y " + " ".join(packages)


def ensure_host_packages(
    packages: Iterable[str] = DEFAULT_GUEST_PACKAGES,
    *,
    purpose: str = "ns3-uml guests",
    log: Path | None = None,
    say: Callable[[str], None] | None = None,
) -> list[str]:
    """Make sure ``packages`` are installed; return those that were installed now.

    As root, missing packages are installed with apt-get (output appended to
    ``log``, default ``<cache>/apt.log``); otherwise, or if apt-get fails,
    :class:`HostSetupError` says what is missing and the command to install it.
    ``purpose`` names what needs the packages, for the messages; ``say`` gets
    progress messages (default: this module's logger, at INFO).
    """
    missing = missing_packages(packages)
    if not missing:
        return []
    command = apt_install_command(missing)
    if os.geteuid() != 0:
        raise HostSetupError(
            f"{purpose} need these packages, which are not installed: "
            f"{', '.join(missing)}\nInstall them with:\n  sudo {command}\n"
            "(run `sudo apt-get update` first if apt cannot find them)")
    if log is None:
        log = cache_dir() / "apt.log"  # the cache is where ns3-uml keeps its logs
    log.parent.mkdir(parents=True, exist_ok=True)
    (say or _log.info)(f"Installing {' '.join(missing)} (for {purpose}) ...")
    # A fresh machine has empty package lists: update first only then, or when
    # the install fails without it (stale lists).
    if not _apt_lists_present() or not _apt_install(missing, log):
        _apt(["apt-get", "update"], log)
        if not _apt_install(missing, log):
            raise HostSetupError(
                f"`{command}` failed even after `apt-get update`; see {log}")
    still = missing_packages(missing)
    if still:
        raise HostSetupError(
            f"packages still missing after apt-get: {', '.join(still)}; see {log}")
    return missing


def _apt_lists_present() -> bool:
    return any(APT_LISTS.glob("*_Packages*"))


def _apt_install(packages: list[str], log: Path) -> bool:
    return _apt(["apt-get", "install", "-y", "--no-install-recommends", *packages],
                log) == 0


def _apt(argv: list[str], log: Path) -> int:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, env=env, check=False).returncode
