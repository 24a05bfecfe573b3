"""Starting a User-Mode-Linux guest: its command line, its init script, its process.

A guest boots the host's ``/`` read-only over hostfs and runs a generated init
script that mounts what it needs, configures its network, runs the configured
commands and powers off. The per-guest host directory ``workdir`` is mounted
read-write in the guest at ``GUEST_WORKDIR`` (the commands' working directory).

Network: every :class:`InterfaceConfig` is a virtio-net device behind a
vhost-user socket (``virtio_uml.device=<socket>:1`` on the command line, one per
interface, in order). The devices are probed in command-line order, so interface
``i`` is ``eth<i>`` (``/sys/devices/virtio-uml-cmdline/virtio-uml.<i>``); no udev
runs to rename it. The init brings up ``lo``, turns off IPv6 duplicate address
detection and router solicitations (they add waits and random delays), applies
the sysctls, gives each interface its MTU and addresses, waits until all are up
and then adds the routes.

Commands: a plain string, or a :class:`Command` that can start at a simulated
time (``at``, seconds of uptime) and run in the background. The init goes
through the commands in order: each starts once the foreground commands before
it have ended, and not before its ``at``; background commands are not waited
for, except at the end, before power-off. No command starts before 1 s of uptime
(``COMMANDS_NOT_BEFORE``): boot takes no simulated time, and programs such as
ping treat a monotonic clock below 1 s as unset. ``GuestConfig.stop_at`` is a deadline
in simulated seconds since boot: whatever still runs then is killed (SIGKILL to
the commands' process group) and commands not started yet never start.

Randomness: the guest kernel draws all its entropy from ``ns3uml.seed=<u64>``
(kernel patch 0003), never from the host; ``GuestConfig.seed`` sets it. Its wall
clock starts at ``tod_epoch_ns`` (``time-travel-start=``), or in ``ext`` mode
from the calendar; never from the host's clock.

Files in ``workdir``::

    init.sh               the generated init (``build_init_script``)
    console.log           the guest's console (kernel messages, init errors)
    out/<name>.stdout     a command's standard output
    out/<name>.stderr     its standard error
    out/<name>.time       "<start> [<end>]": simulated seconds since boot, 9 decimals
                          (end is missing while it runs or if it never ended)
    out/<name>.rc         its exit status, written last (absent: did not finish)
    out/<name>.killed     present if ``stop_at`` killed it
    out/setup.err         network/sysctl set-up failures, one per line (if any)
    out/done              written once all commands have ended, before power-off

``<name>`` is ``Command.name``, by default the command's index in the list.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import select
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import libc

__all__ = [
    "GUEST_WORKDIR",
    "Command",
    "CommandResult",
    "GuestConfig",
    "GuestProcess",
    "InterfaceConfig",
    "build_init_script",
    "guest_argv",
    "guest_seed",
    "interface_name",
    "process_group_members",
    "read_outputs",
    "read_setup_errors",
]

#: Where the guest sees its host ``workdir`` (read-write).
GUEST_WORKDIR = "/mnt/ns3uml"
#: Subdirectory of ``workdir`` holding the recorded command results.
OUTPUT_DIR = "out"
INIT_SCRIPT = "init.sh"
CONSOLE_LOG = "console.log"
SETUP_ERRORS = "setup.err"
#: Name of UML's own run directory (pid file) inside ``workdir``.
UMID = "uml"
#: virtio device id of a network card (include/uapi/linux/virtio_ids.h).
VIRTIO_ID_NET = 1
#: Kernel parameter that seeds all of a guest's randomness (patch 0003).
SEED_PARAM = "ns3uml.seed"

# personality(2) flag that turns address-space randomisation off (setarch -R).
ADDR_NO_RANDOMIZE = 0x0040000
#: Uptime (s) before which no command starts; see build_init_script.
COMMANDS_NOT_BEFORE = 1.0
_PERSONALITY_QUERY = 0xFFFFFFFF

_GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SYSCTL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
# Simulated seconds an interface may take to come up before the init gives up.
_LINK_UP_TIMEOUT = 10
_U64 = 1 << 64


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
        _check_cmdline_word("vhost-user socket", str(self.socket), forbid=":,")
        if self.ipv4 is not None:
            self.ipv4 = str(ipaddress.IPv4Interface(self.ipv4))
        if self.ipv6 is not None:
            self.ipv6 = str(ipaddress.IPv6Interface(self.ipv6))
        if self.mtu is not None and not 68 <= self.mtu <= 65535:
            raise ValueError(f"mtu {self.mtu} out of range 68..65535")


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

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).absolute()
        if self.tt_socket is not None:
            self.tt_socket = Path(self.tt_socket).absolute()
        if self.seed is None:
            self.seed = guest_seed(0, self.name)
        if not 0 <= self.seed < _U64:
            raise ValueError(f"seed {self.seed} is not an unsigned 64-bit number")
        if self.stop_at is not None and self.stop_at < 0:
            raise ValueError(f"stop_at {self.stop_at} is negative")
        if self.tod_epoch_ns is not None and not 0 <= self.tod_epoch_ns < _U64:
            raise ValueError(f"tod_epoch_ns {self.tod_epoch_ns} out of range")

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
            if not _NAME_RE.fullmatch(name):
                raise ValueError(f"command name {name!r}: use letters, digits, '.', '_', "
                                 "'-' (it names files), starting with a letter or digit")
            if name in seen:
                raise ValueError(f"two commands are named {name!r}")
            seen.add(name)
            if c.at is not None and c.at < 0:
                raise ValueError(f"command {name!r}: at={c.at} is negative")
            result.append(Command(c.cmd, c.at, c.background, name))
        return result


@dataclass
class CommandResult:
    """What one init command did. Times are guest uptime seconds (simulated)."""

    index: int
    command: str
    stdout: str
    stderr: str
    returncode: int | None  # None: the command did not finish
    start: float | None  # None: it never started
    end: float | None
    name: str = ""
    background: bool = False
    #: True if ``stop_at`` killed it (then returncode is None, end the kill time).
    killed: bool = False

    @property
    def duration(self) -> float | None:
        """Simulated seconds from start to end (None if it did not both start and end)."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start


def _check_cmdline_word(what: str, value: str, forbid: str = ",") -> None:
    # The UML command line is split on whitespace and mount options on commas.
    if not value or any(c.isspace() for c in value) or any(c in value for c in forbid):
        chars = " or ".join(repr(c) for c in forbid)
        raise ValueError(f"{what} {value!r} must be non-empty, without whitespace "
                         f"or {chars} (it goes on the guest's kernel command line)")


def _ns(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


def _sysctl_path(key: str) -> str:
    # sysctl(8)'s rule: dots separate levels, a slash stands for a dot in a
    # name (net.ipv4.conf.eth0/100.forwarding).
    if not _SYSCTL_RE.fullmatch(key) or ".." in key:
        raise ValueError(f"sysctl name {key!r} is not valid")
    return "/proc/sys/" + key.translate(str.maketrans("./", "/."))


def _route_argv(route: str) -> list[str]:
    words = shlex.split(route)
    family = []
    if words and words[0] in ("-4", "-6"):
        family, words = words[:1], words[1:]
    if not words:
        raise ValueError(f"route {route!r} is empty")
    return ["ip", *family, "route", "add", *words]


# Shell functions of the init. Times are ns of CLOCK_MONOTONIC, which is uptime
# in UML (it never suspends); /proc/uptime has only centiseconds.
_SH_FUNCTIONS = r"""log() { echo "ns3-uml init: $*" >&2; }
fail() { log "$*"; echo "$*" >> "$OUT/setup.err"; }
mnt() { mount "$@" || log "mount $* failed"; }
# try CMD...: run it, record its error message if it fails.
try() { if ! err=$("$@" 2>&1); then fail "$*: $err"; fi; }
# sc PATH VALUE NAME: write a sysctl.
sc() { { echo "$2" > "$1"; } 2>/dev/null || fail "sysctl $3=$2: cannot write $1"; }
now() { { read -r _; read -r _; read -r _ _ NOW _; } < /proc/timer_list; }
secs() { printf '%d.%09d' $(($1 / 1000000000)) $(($1 % 1000000000)); }
# wait_until NS: sleep until uptime NS, without the 50 us default timer slack.
wait_until() {
  now
  [ "$1" -gt "$NOW" ] || return 0
  (echo 1 > /proc/self/timerslack_ns; exec sleep "$(secs $(($1 - NOW)))")
}
# run NAME COMMAND: run it with its output, times and exit status in $OUT.
run() {
  now; t0=$(secs $NOW)
  echo "$t0" > "$OUT/$1.time"
  /bin/sh -c "$2" < /dev/null > "$OUT/$1.stdout" 2> "$OUT/$1.stderr"
  rc=$?
  now; echo "$t0 $(secs $NOW)" > "$OUT/$1.time"
  echo $rc > "$OUT/$1.rc"
}
# link_up DEV: wait until DEV is up (operstate), at most a few simulated seconds.
link_up() {
  n=0
  while :; do
    read -r state < "/sys/class/net/$1/operstate"
    case $state in up|unknown) return 0 ;; esac
    [ $n -ge __LINK_POLLS__ ] && return 1
    n=$((n + 1))
    # Link state changes reach operstate from a work queue: let it run.
    sleep 0.001
  done
}"""


def build_init_script(cfg: GuestConfig) -> str:
    """Write ``<workdir>/init.sh`` (the guest's init) and return its text."""
    workdir = cfg.workdir_path
    _check_cmdline_word("workdir", str(workdir))
    commands = cfg.command_list()
    q = shlex.quote
    out = f"{GUEST_WORKDIR}/{OUTPUT_DIR}"
    script = f"{GUEST_WORKDIR}/{INIT_SCRIPT}"
    stopped = "/run/ns3uml-stopped"
    lines = [
        "#!/bin/sh",
        f"# Generated by ns3-uml: init of guest {cfg.name!r}. Do not edit.",
        f"export PATH={_GUEST_PATH} HOME=/tmp TERM=dumb",
        "umask 022",
        f"OUT={out}",
        _SH_FUNCTIONS.replace("__LINK_POLLS__", str(_LINK_UP_TIMEOUT * 1000)),
    ]
    # The same script, started again in its own session, runs the commands (so
    # that stop_at can kill all of them at once) or the stop_at timer.
    lines += ["", 'if [ "$1" = --commands ]; then', f"  cd {GUEST_WORKDIR}",
              # Boot takes no simulated time, but programs such as ping take a
              # monotonic clock below 1 s for "not set yet" (iputils' pinger then
              # sends without waiting for its interval): start no earlier.
              f"  wait_until {_ns(COMMANDS_NOT_BEFORE)}"]
    for c in commands:
        lines.append(f"  # command {c.name}")
        if c.at is not None:
            lines.append(f"  wait_until {_ns(c.at)}")
        lines.append(f"  run {c.name} {q(c.cmd)}" + (" &" if c.background else ""))
    lines += [
        "  wait  # background commands",
        "  exit 0",
        "fi",
    ]
    if cfg.stop_at is not None:
        lines += [
            'if [ "$1" = --stop ]; then',
            f"  wait_until {_ns(cfg.stop_at)}",
            f"  : > {stopped}",
            '  kill -s KILL -- "-$2"',
            "  exit 0",
            "fi",
        ]
    lines += [
        "",
        "mnt -t proc proc /proc",
        "mnt -t sysfs sysfs /sys",
        # The kernel mounts devtmpfs on /dev itself (DEVTMPFS_MOUNT).
        "grep -q ' /dev devtmpfs ' /proc/mounts || mnt -t devtmpfs devtmpfs /dev",
        "mkdir -p /dev/pts /dev/shm",
        "mnt -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts",
        "mnt -t tmpfs -o mode=1777 tmpfs /dev/shm",
        # The host's / is read-only: writable scratch space comes from tmpfs.
        "mnt -t tmpfs -o mode=1777 tmpfs /tmp",
        "mnt -t tmpfs -o mode=755 tmpfs /run",
        "mnt -t tmpfs -o mode=755 tmpfs /var",
        "mkdir -p /run/lock /var/tmp /var/log /var/lib /var/cache /var/spool",
        "chmod 1777 /var/tmp /run/lock",
        "ln -s /run /var/run; ln -s /run/lock /var/lock",
        # The per-guest host directory, read-write, under a tmpfs mount point.
        "mnt -t tmpfs -o mode=755 tmpfs /mnt",
        f"mkdir -p {GUEST_WORKDIR}",
        f"mnt -t hostfs -o {q(str(workdir))} hostfs {GUEST_WORKDIR}",
        "mkdir -p $OUT",
        f"echo {q(cfg.name)} > /proc/sys/kernel/hostname",
        "try ip link set dev lo up",
    ]
    lines += _network_lines(cfg)
    if commands:
        lines += [
            "",
            "# The commands, in a session of their own.",
            f"setsid /bin/sh {script} --commands < /dev/null &",
            "cmds=$!",
        ]
        if cfg.stop_at is not None:
            lines += [
                f"setsid /bin/sh {script} --stop $cmds < /dev/null &",
                "timer=$!",
                "wait $cmds",
                'kill -s KILL -- "-$timer" 2>/dev/null',
                # Whatever started but did not finish was killed at stop_at.
                f"if [ -e {stopped} ]; then",
                "  now; t1=$(secs $NOW)",
                "  for n in " + " ".join(c.name for c in commands) + "; do",
                '    if [ -e "$OUT/$n.time" ] && [ ! -e "$OUT/$n.rc" ]; then',
                '      read -r t0 rest < "$OUT/$n.time"',
                '      echo "$t0 $t1" > "$OUT/$n.time"',
                '      : > "$OUT/$n.killed"',
                "    fi",
                "  done",
                "fi",
            ]
        else:
            lines.append("wait $cmds")
    lines += [
        "",
        "touch $OUT/done",
        # hostfs caches writes in the guest: flush them to the host before power-off.
        "cd /",
        "sync",
        f"umount {GUEST_WORKDIR} || log 'umount {GUEST_WORKDIR} failed'",
        # sysrq 'o' powers off from the kernel (no host binary needed); init must
        # never exit (that panics), so wait for it.
        "if [ -w /proc/sysrq-trigger ]; then echo o > /proc/sysrq-trigger; "
        "else poweroff -f; fi",
        "while :; do sleep 1; done",
        "",
    ]
    text = "\n".join(lines)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / INIT_SCRIPT
    tmp = path.with_name(f".{INIT_SCRIPT}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)
    return text


def _network_lines(cfg: GuestConfig) -> list[str]:
    """Init lines for IPv6 defaults, sysctls, interfaces and routes."""
    q = shlex.quote
    names = [interface_name(i) for i in range(len(cfg.interfaces))]
    lines = [
        "",
        "# IPv6: no duplicate address detection, no router solicitations: they",
        "# wait (seconds) and draw random delays before an address is usable.",
    ]
    for conf in ("all", "default"):
        lines += _ipv6_defaults(conf)
    for i, (iface, dev) in enumerate(zip(cfg.interfaces, names)):
        # Device i of the command line is platform device virtio-uml.<i>; a
        # device that failed to probe would shift the eth<N> names.
        sysfs = f"/sys/devices/virtio-uml-cmdline/virtio-uml.{i}/virtio*/net/{dev}"
        lines += [
            f"# {dev}: vhost-user device {iface.socket}",
            f"if [ -e {sysfs} ]; then",
            f"  have_{dev}=1",
            *("  " + line for line in _ipv6_defaults(dev)),
            "else",
            f"  fail {q(f'{dev}: no network device for vhost-user socket {iface.socket}')}",
            "fi",
        ]
    if cfg.sysctls:
        lines.append("# sysctls")
        for key, value in cfg.sysctls.items():
            value = str(value)
            if "\n" in value:
                raise ValueError(f"sysctl {key}: value {value!r} spans lines")
            lines.append(f"sc {q(_sysctl_path(key))} {q(value)} {q(key)}")
    for iface, dev in zip(cfg.interfaces, names):
        lines.append(f'if [ -n "$have_{dev}" ]; then')
        if iface.mtu is not None:
            lines.append(f"  try ip link set dev {dev} mtu {iface.mtu}")
        if iface.ipv4 is not None:
            lines.append(f"  try ip addr add {iface.ipv4} dev {dev}")
        if iface.ipv6 is not None:
            lines.append(f"  try ip -6 addr add {iface.ipv6} dev {dev}")
        lines += [f"  try ip link set dev {dev} up", "fi"]
    # Routes through a gateway need their interface up.
    for dev in names:
        lines.append(f'[ -n "$have_{dev}" ] && {{ link_up {dev} || '
                     f'fail "{dev} did not come up"; }}')
    if cfg.routes:
        lines.append("# routes")
        for route in cfg.routes:
            lines.append("try " + " ".join(q(w) for w in _route_argv(route)))
    return lines


def _ipv6_defaults(conf: str) -> list[str]:
    return [f"sc /proc/sys/net/ipv6/conf/{conf}/{key} 0 net.ipv6.conf.{conf}.{key}"
            for key in ("accept_dad", "router_solicitations")]


def guest_argv(kernel: Path | str, cfg: GuestConfig,
               time_travel: str | None = None) -> list[str]:
    """The UML command line for ``cfg``.

    ``time_travel`` (or ``cfg.time_travel``) overrides the default
    ``ext:<client_id>:<tt_socket>``, e.g. ``"inf-cpu"`` for a guest without calendar.
    """
    workdir = cfg.workdir_path
    _check_cmdline_word("workdir", str(workdir))
    mode = time_travel or cfg.time_travel
    if mode is None:
        if cfg.tt_socket is None:
            raise ValueError(f"guest {cfg.name!r}: no tt_socket and no time_travel mode")
        _check_cmdline_word("tt_socket", str(cfg.tt_socket))
        mode = f"ext:{cfg.client_id}:{cfg.tt_socket}"
    clock = []
    if cfg.tod_epoch_ns is not None:
        clock = [f"time-travel-start={cfg.tod_epoch_ns}"]
    elif not mode.startswith("ext:"):
        # Without a calendar the wall clock would start from the host's.
        clock = ["time-travel-start=0"]
    return [
        str(kernel),
        f"mem={cfg.memory}",
        f"time-travel={mode}",
        *clock,
        # The host's / read-only over hostfs.
        "root=/dev/root",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        f"init={workdir / INIT_SCRIPT}",
        # Console 0 writes to stdout (console.log) and reads nothing; no other
        # consoles or serial lines (they would allocate host ptys).
        "con=null",
        "ssl=null",
        "con0=null,fd:1",
        # UML's pid file directory, inside the workdir instead of ~/.uml.
        f"uml_dir={workdir}",
        f"umid={UMID}",
        # No dummy0 with a random MAC in every guest (the driver is built in).
        "dummy.numdummies=0",
        # All of the guest's randomness comes from here (kernel patch 0003).
        f"{SEED_PARAM}={cfg.seed}",
        # One virtio-net device per interface; probed in this order: eth0, eth1, ...
        *(f"virtio_uml.device={iface.socket}:{VIRTIO_ID_NET}" for iface in cfg.interfaces),
        "quiet",
        *cfg.extra_args,
    ]


def process_group_members(pgid: int) -> list[int]:
    """Pids of all processes (zombies included) in process group ``pgid``."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # exited meanwhile
        # Fields after the command name "(...)": state ppid pgrp ...
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


class GuestProcess:
    """One running UML guest, in its own session and process group.

    ``kill()`` and leaving the ``with`` block kill the whole group (UML forks
    helper processes) and reap it: nothing of the guest is left running.
    """

    def __init__(self, cfg: GuestConfig, kernel: Path | str | None = None,
                 time_travel: str | None = None) -> None:
        self.cfg = cfg
        self.kernel = Path(kernel) if kernel is not None else None
        self.time_travel = time_travel
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self._returncode: int | None = None

    # -- properties -----------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The UML process's pid (None before ``start``)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal), else None."""
        return self._returncode

    @property
    def console_log(self) -> Path:
        """The guest's console: kernel messages and init errors."""
        return self.cfg.workdir_path / CONSOLE_LOG

    @property
    def argv(self) -> list[str]:
        """The UML command line the guest is started with."""
        return guest_argv(self._kernel_path(), self.cfg, self.time_travel)

    def _kernel_path(self) -> Path:
        if self.kernel is None:
            from .kernel import ensure_kernel  # builds only if nothing is cached
            self.kernel = ensure_kernel()
        return self.kernel

    # -- life cycle -------------------------------------------------------------

    def start(self) -> None:
        """Write the init script and launch the guest."""
        if self._proc is not None:
            raise RuntimeError(f"guest {self.cfg.name!r} already started")
        workdir = self.cfg.workdir_path
        workdir.mkdir(parents=True, exist_ok=True)
        out = self.cfg.output_dir
        out.mkdir(exist_ok=True)
        # Results of an earlier run must not pass for this run's.
        for stale in out.iterdir():
            if stale.is_file():
                stale.unlink()
        build_init_script(self.cfg)
        argv = self.argv
        with open(self.console_log, "wb") as console:
            # ADDR_NO_RANDOMIZE is per thread and inherited by the child: set it
            # only around the fork, so no preexec_fn (unsafe with threads) is needed.
            old = libc.call("personality", _PERSONALITY_QUERY)
            libc.call("personality", old | ADDR_NO_RANDOMIZE)
            try:
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=console,
                    stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True)
            finally:
                libc.call("personality", old)
        try:
            self._pidfd = os.pidfd_open(self._proc.pid)
        except OSError:
            self._pidfd = None  # old host kernel: wait() polls instead

    def poll(self) -> int | None:
        """Returncode if the guest has exited (and is then reaped), else None."""
        try:
            return self.wait(timeout=0)
        except subprocess.TimeoutExpired:
            return None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the guest to exit; reap it and whatever it left in its group.

        Raises ``subprocess.TimeoutExpired`` if it is still running after ``timeout``
        seconds (the guest keeps running then).
        """
        proc = self._require_started()
        if self._returncode is not None:
            return self._returncode
        if not self._wait_exited(timeout):
            raise subprocess.TimeoutExpired(proc.args, timeout or 0.0)
        # The main process has exited but is not reaped, so its pid (the group
        # id) cannot be reused yet: killing the group now hits only the guest.
        self._kill_group()
        return self._reap()

    def kill(self) -> None:
        """Kill the guest's whole process group and reap it (no-op once reaped)."""
        if self._proc is None or self._returncode is not None:
            return
        self._kill_group()
        self._reap()

    def _require_started(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise RuntimeError(f"guest {self.cfg.name!r} was not started")
        return self._proc

    def _wait_exited(self, timeout: float | None) -> bool:
        """Block until the main process has exited, without reaping it."""
        proc = self._require_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # WNOWAIT leaves the zombie in place (see wait()).
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if info is not None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._pidfd is not None:
                poller = select.poll()
                poller.register(self._pidfd, select.POLLIN)
                poller.poll(None if left is None else max(1, int(left * 1000)))
            else:
                time.sleep(0.01 if left is None else min(0.01, left))

    def _kill_group(self) -> None:
        proc = self._require_started()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _reap(self, settle: float = 5.0) -> int:
        proc = self._require_started()
        rc = proc.wait()
        self._returncode = rc
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        # Killed helpers were reparented; wait until their new parent reaps them.
        deadline = time.monotonic() + settle
        while process_group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        return rc

    def __enter__(self) -> GuestProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.kill()

    def __del__(self) -> None:
        # Last resort only; callers are expected to kill() or use `with`.
        if getattr(self, "_proc", None) is not None and self._returncode is None:
            try:
                self.kill()
            except Exception:
                pass

    # -- results ----------------------------------------------------------------

    def finished(self) -> bool:
        """True once the init ran all commands (it writes ``out/done``)."""
        return (self.cfg.output_dir / "done").exists()

    def read_outputs(self) -> list[CommandResult]:
        """The recorded result of every configured command, in order."""
        return read_outputs(self.cfg)

    def result(self, name: str | int) -> CommandResult:
        """The recorded result of the command named ``name`` (default names: indices)."""
        for r in self.read_outputs():
            if r.name == str(name):
                return r
        raise KeyError(f"guest {self.cfg.name!r} has no command named {name!r}")

    def setup_errors(self) -> list[str]:
        """What went wrong while the init configured sysctls, interfaces and routes."""
        return read_setup_errors(self.cfg)


def read_outputs(cfg: GuestConfig) -> list[CommandResult]:
    """Command results recorded in ``cfg``'s output directory."""
    out = cfg.output_dir
    results = []
    for i, c in enumerate(cfg.command_list()):
        name = c.name or str(i)
        killed = (out / f"{name}.killed").exists()
        rc_text = _read(out / f"{name}.rc")
        times = (_read(out / f"{name}.time") or "").split()
        results.append(CommandResult(
            index=i,
            command=c.cmd,
            stdout=_read(out / f"{name}.stdout") or "",
            stderr=_read(out / f"{name}.stderr") or "",
            returncode=(int(rc_text) if rc_text and rc_text.strip().isdigit() and not killed
                        else None),
            start=float(times[0]) if len(times) >= 1 else None,
            end=float(times[1]) if len(times) >= 2 else None,
            name=name,
            background=c.background,
            killed=killed,
        ))
    return results


def read_setup_errors(cfg: GuestConfig) -> list[str]:
    """Set-up failures the init recorded (``out/setup.err``), one per entry."""
    text = _read(cfg.output_dir / SETUP_ERRORS) or ""
    return [line for line in text.splitlines() if line]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return None
