"""The host's limits, checked before a simulation boots its guests.

Each guest costs the calendar's process descriptors (its time socket, console and device
sockets, the memory it shares with its devices, capture files) and the user processes (UML
runs a host process for its kernel and one per guest address space), and its memory is a file
on a tmpfs (UML's tempdir: ``$TMPDIR``, ``$TMP``, ``$TEMP`` or ``/dev/shm``). Running out of
any of them halfway through kills guests and loses the run, so a simulation that cannot fit
fails at once with a message that names the limit and how to raise it. A soft limit below
the hard one is raised (as any program may do), so only what needs the administrator stops a
run.
"""

from __future__ import annotations

import logging
import os
import re
import resource
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Generous per-item figures: measured ~10 descriptors per guest with one interface.
FDS_BASE = 256            # ns-3, Python, cppyy, the calendar's own
FDS_PER_GUEST = 16
FDS_PER_INTERFACE = 8
PROCESSES_PER_GUEST = 8   # UML's kernel, its helpers and one per guest address space
# What an idle guest keeps of its memory file (measured: ~10 MiB PSS at mem=64M); a busy one
# may touch all of it.
IDLE_GUEST_BYTES = 16 << 20

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kKmMgGtT]?)i?[bB]?\s*$")


class HostLimitError(RuntimeError):
    """The host cannot run this many guests as it is set up: the message says what to raise."""


@dataclass(frozen=True)
class GuestNeeds:
    """What the guests of a simulation will ask of the host."""
    interfaces: int
    memory_bytes: tuple[int, ...]  # each guest's

    @property
    def guests(self) -> int:
        return len(self.memory_bytes)


def parse_size(value: int | str) -> int:
    """A size in bytes: an int, or "900M", "1.5G", "64m", "65536K", "4096" (as the kernel's
    ``mem=`` and sweeps' memory per point are written)."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a size: {value!r} (write e.g. '900M', '1.5G' or bytes)")
    number, unit = match.groups()
    scale = 1024 ** ("KMGT".index(unit.upper()) + 1) if unit else 1
    return int(float(number) * scale)


def uml_tempdir() -> Path:
    """Where UML puts its guests' memory files (arch/um/os-Linux/mem.c choose_tempdir)."""
    for var in ("TMPDIR", "TMP", "TEMP"):
        if os.environ.get(var):
            return Path(os.environ[var])
    return Path("/dev/shm")


def _raise_soft(which: int, needed: int) -> tuple[int, int]:
    soft, hard = resource.getrlimit(which)
    if soft != resource.RLIM_INFINITY and soft < needed:
        new = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        resource.setrlimit(which, (new, hard))
        soft = new
    return soft, hard


def _user_processes() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += 1
            except OSError:
                pass
    return count


def available_memory() -> int | None:
    """The host's MemAvailable in bytes (None if unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_host_limits(needs: GuestNeeds) -> None:
    """Raise ``HostLimitError`` unless the host can run these guests (descriptors, processes,
    memory); soft limits below what is needed are raised to the hard ones first."""
    n = needs.guests
    if n == 0:
        return
    fds = FDS_BASE + FDS_PER_GUEST * n + FDS_PER_INTERFACE * needs.interfaces
    soft, hard = _raise_soft(resource.RLIMIT_NOFILE, fds)
    if soft != resource.RLIM_INFINITY and soft < fds:
        raise HostLimitError(
            f"{n} guests need about {fds} open files in this process, and the limit is "
            f"{soft} (hard limit {hard}): raise it (`ulimit -Hn {fds}` as root, LimitNOFILE= "
            "for a systemd service, or nofile in /etc/security/limits.conf), or run fewer "
            "guests")
    procs = _user_processes() + PROCESSES_PER_GUEST * n
    if os.geteuid() != 0:  # root is not held to RLIMIT_NPROC
        soft, hard = _raise_soft(resource.RLIMIT_NPROC, procs)
        if soft != resource.RLIM_INFINITY and soft < procs:
            raise HostLimitError(
                f"{n} guests need about {procs} processes of this user, and the limit is "
                f"{soft} (hard limit {hard}): raise it (`ulimit -Hu {procs}` as root, or "
                "nproc in /etc/security/limits.conf), or run fewer guests")
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    if procs > pid_max:
        raise HostLimitError(
            f"{n} guests need about {procs} processes, more than kernel.pid_max ({pid_max}): "
            f"raise it (sysctl kernel.pid_max={procs * 2}), or run fewer guests")
    # Memory files are sparse: guests at rest need little of them, busy ones all. Too little
    # even for resting guests is an error; too little for busy ones, a warning.
    floor = sum(min(IDLE_GUEST_BYTES, m) for m in needs.memory_bytes)
    ceiling = sum(needs.memory_bytes)
    tempdir = uml_tempdir()
    try:
        st = os.statvfs(tempdir)
    except OSError as exc:
        raise HostLimitError(f"UML keeps guest memory in {tempdir}, which cannot be used "
                             f"({exc}): set TMPDIR to a tmpfs directory") from None
    room = {f"free space in {tempdir} (UML's memory files)": st.f_bavail * st.f_frsize}
    available = available_memory()
    if available is not None:
        room["the host's available memory"] = available
    for what, have in room.items():
        if floor > have:
            raise HostLimitError(
                f"{n} guests need at least {floor >> 20} MiB even at rest, more than "
                f"{what} ({have >> 20} MiB): free some (for a tmpfs, mount -o remount,size=; "
                "or point TMPDIR at a larger tmpfs), or run fewer guests")
        if ceiling > have:
            log.warning("%d guests may use up to %d MiB of memory, more than %s (%d MiB): "
                        "guests that fill their memory would die", n, ceiling >> 20, what,
                        have >> 20)
