"""What decides how one guest boots and what it runs, and the one place for its name rules.

A guest's name is its hostname and names its directory; a command's name names its result
files; a word on the UML command line may hold no whitespace (the kernel splits there).
``UmlNode`` and ``GuestConfig`` check names with the functions here, so that a bad name is
refused where it is given.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COMMANDS_NOT_BEFORE",
    "GUEST_WORKDIR",
    "IPV6_OFF_SYSCTLS",
    "Command",
    "GuestConfig",
    "InterfaceConfig",
    "VhostUserDevice",
    "check_cmdline_word",
    "check_command_name",
    "check_node_name",
    "default_command_name",
    "guest_seed",
    "interface_name",
]

#: Where the guest sees its host ``workdir`` (read-write).
GUEST_WORKDIR = "/mnt/ns3uml"
#: Subdirectory of ``workdir`` holding the recorded command results.
OUTPUT_DIR = "out"
INIT_SCRIPT = "init.sh"
CONSOLE_LOG = "console.log"
SETUP_ERRORS = "setup.err"
#: Uptime (s) before which no command starts; see ``init.build_init_script``.
COMMANDS_NOT_BEFORE = 1.0

_NODE_NAME_RE = re.compile(r"[A-Za-z0-9_-]+")
_COMMAND_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_U64 = 1 << 64
#: The longest path a unix socket address holds (sun_path, less its NUL).
_SUN_PATH_MAX = 107


#: Sysctls that turn IPv6 off in a guest: its multicast reports and router solicitations
#: would otherwise share the links (and the pcaps) with what a run measures.
IPV6_OFF_SYSCTLS = {"net.ipv6.conf.all.disable_ipv6": "1",
                    "net.ipv6.conf.default.disable_ipv6": "1"}


def guest_seed(base: int, name: str) -> int:
    """A guest's seed derived from a simulation seed and the guest's name.

    Stable across runs and Python versions (SHA-256, not ``hash()``), and
    different for every guest of one simulation.
    """
    digest = hashlib.sha256(f"ns3-uml seed {base} {name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def interface_name(index: int) -> str:
    """The guest's name of its interface number ``index`` (0-based)."""
    return f"eth{index}"


def check_node_name(name: str) -> None:
    """ValueError unless ``name`` can name a guest: it is its hostname and its directory."""
    if not isinstance(name, str) or not _NODE_NAME_RE.fullmatch(name):
        raise ValueError(f"node name {name!r}: use letters, digits, '-' and '_'")


def check_command_name(name: str) -> None:
    """ValueError unless ``name`` can name a command's results (it names files)."""
    if not isinstance(name, str) or not _COMMAND_NAME_RE.fullmatch(name):
        raise ValueError(f"command name {name!r}: use letters, digits, '.', '_', "
                         "'-' (it names files), starting with a letter or digit")


def default_command_name(cmd: str, taken: set[str]) -> str:
    """A command's name from its program ("ping"), numbered if taken ("ping-2")."""
    words = cmd.split()
    base = os.path.basename(words[0]) if words else ""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip("._-") or "cmd"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def check_cmdline_word(what: str, value: str, forbid: str = ",") -> None:
    """ValueError unless ``value`` is one word of the UML command line: the kernel splits
    it on whitespace, mount options split on commas (``forbid``: what else may not be in
    it)."""
    if not value or any(c.isspace() for c in value) or any(c in value for c in forbid):
        chars = "".join(f" or {c!r}" for c in forbid)
        raise ValueError(f"{what} {value!r} must be non-empty, without whitespace"
                         f"{chars} (it goes on the guest's kernel command line)")


@dataclass
class InterfaceConfig:
    """One virtio-net interface, backed by a vhost-user device at ``socket``."""

    socket: Path | str
    #: Address with prefix length, e.g. "10.0.0.1/24"; None: no IPv4 address.
    ipv4: str | None = None
    #: Address with prefix length, e.g. "fd00::1/64"; None: link-local only.
    ipv6: str | None = None
    mtu: int | None = None

    def __post_init__(self) -> None:
        self.socket = Path(self.socket).absolute()
        # The driver splits "<socket>:<id>" at the first colon.
        check_cmdline_word("vhost-user socket", str(self.socket), forbid=":,")
        if self.ipv4 is not None:
            self.ipv4 = str(ipaddress.IPv4Interface(self.ipv4))
        if self.ipv6 is not None:
            self.ipv6 = str(ipaddress.IPv6Interface(self.ipv6))
        if self.mtu is not None and not 68 <= self.mtu <= 65535:
            raise ValueError(f"mtu {self.mtu} out of range 68..65535")


@dataclass(frozen=True)
class VhostUserDevice:
    """A virtio device of the guest served over vhost-user by another process: the guest
    connects to ``socket`` while it boots and probes a device of virtio id ``device_id``
    (``virtio_uml.device=<socket>:<id>``; e.g. ``VIRTIO_ID_MAC80211_HWSIM`` for wmediumd's
    ``-u`` socket)."""

    socket: Path
    device_id: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "socket", Path(self.socket).absolute())
        # The driver splits "<socket>:<id>" at the first colon.
        check_cmdline_word("vhost-user socket", str(self.socket), forbid=":,")
        if len(os.fsencode(self.socket)) > _SUN_PATH_MAX:
            raise ValueError(f"vhost-user socket {self.socket}: a unix socket path has at most "
                             f"{_SUN_PATH_MAX} bytes (Simulation.socket_dir is short)")
        if (isinstance(self.device_id, bool) or not isinstance(self.device_id, int)
                or not 0 < self.device_id < 1 << 32):
            raise ValueError(f"device_id {self.device_id!r}: a virtio device id is a positive "
                             "32-bit number (1 net, 29 mac80211_hwsim, ...)")


@dataclass
class Command:
    """A command for the guest's init (``/bin/sh -c cmd``, in ``GUEST_WORKDIR``).

    The init reaches the commands in list order: one starts when the foreground
    commands before it have ended and its ``at`` has come, whichever is later.
    """

    cmd: str
    #: Simulated seconds since boot before which it does not start.
    at: float | None = None
    #: Started and not waited for (the init waits for it before power-off).
    background: bool = False
    #: Key of its results (file names in ``out/``); default: its index.
    name: str | None = None


@dataclass
class GuestConfig:
    """Everything that decides how one guest boots and what it runs."""

    name: str
    client_id: int
    tt_socket: Path | str | None
    workdir: Path | str
    memory: str = "64M"
    commands: list[str | Command] = field(default_factory=list)
    #: More words for the guest kernel's command line (after ns3-uml's own).
    extra_args: list[str] = field(default_factory=list)
    #: Overrides ``ext:<client_id>:<tt_socket>``, e.g. "inf-cpu" to boot alone.
    time_travel: str | None = None
    interfaces: list[InterfaceConfig] = field(default_factory=list)
    #: Arguments of ``ip route add``, e.g. "default via 10.0.0.254"; a leading
    #: "-6 " (or "-4 ") selects the family: "-6 default via fd00::1".
    routes: list[str] = field(default_factory=list)
    #: sysctl name (dots, as sysctl(8) spells it) to value.
    sysctls: dict[str, str] = field(default_factory=dict)
    #: Seed of the guest's randomness (u64); None: ``guest_seed(0, name)``.
    seed: int | None = None
    #: Simulated seconds since boot at which still-running commands are killed.
    stop_at: float | None = None
    #: Guest wall clock at boot, ns since 1970 (``time-travel-start=``). None:
    #: the calendar's (GET_TOD) in ``ext`` mode, 0 in the other modes.
    tod_epoch_ns: int | None = None
    #: The vhost-user socket of its agent's console (``virtio_uml.device=<socket>:3``) and
    #: the agent binary: with both, the init ends by exec'ing the agent, which runs what the
    #: host sends (``commands`` are then the host's to send); without, the init runs
    #: ``commands`` itself and powers off.
    console_socket: Path | str | None = None
    agent: Path | str | None = None
    #: Devices served by other processes, probed after the interfaces and the console.
    vhost_user_devices: list[VhostUserDevice] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_node_name(self.name)
        self.workdir = Path(self.workdir).absolute()
        if self.tt_socket is not None:
            self.tt_socket = Path(self.tt_socket).absolute()
        if (self.console_socket is None) != (self.agent is None):
            raise ValueError("console_socket and agent go together: the agent serves the "
                             "console")
        if self.console_socket is not None:
            self.console_socket = Path(self.console_socket).absolute()
            check_cmdline_word("console socket", str(self.console_socket), forbid=":,")
        if self.agent is not None:
            self.agent = Path(self.agent).absolute()
        if self.seed is None:
            self.seed = guest_seed(0, self.name)
        if not 0 <= self.seed < _U64:
            raise ValueError(f"seed {self.seed} is not an unsigned 64-bit number")
        if self.stop_at is not None and self.stop_at < 0:
            raise ValueError(f"stop_at {self.stop_at} is negative")
        if self.tod_epoch_ns is not None and not 0 <= self.tod_epoch_ns < _U64:
            raise ValueError(f"tod_epoch_ns {self.tod_epoch_ns} out of range")
        for arg in self.extra_args:
            check_cmdline_word("kernel argument", arg, forbid="")

    @property
    def workdir_path(self) -> Path:
        """The guest's host directory as a Path."""
        return Path(self.workdir)

    @property
    def output_dir(self) -> Path:
        """Where the commands' outputs go (``out/`` in ``workdir``)."""
        return self.workdir_path / OUTPUT_DIR

    def command_list(self) -> list[Command]:
        """The commands as :class:`Command` objects with their result names set.

        Raises ValueError for a name that is not a plain file name, a repeated
        name or a negative ``at``.
        """
        result = []
        seen: set[str] = set()
        for i, item in enumerate(self.commands):
            c = Command(item) if isinstance(item, str) else item
            name = str(i) if c.name is None else c.name
            check_command_name(name)
            if name in seen:
                raise ValueError(f"two commands are named {name!r}")
            seen.add(name)
            if c.at is not None and c.at < 0:
                raise ValueError(f"command {name!r}: at={c.at} is negative")
            result.append(Command(c.cmd, c.at, c.background, name))
        return result

