"""What a guest sets up before its commands: one list of steps, two renderings.

``setup_steps(cfg)`` is the one source of truth for a guest's mounts, directories,
hostname, sysctls, interfaces and routes. The shell init (``init.py``, for a guest
without an agent) renders each step as shell lines (``shell_lines``); a guest of a
``Simulation`` gets them as ``<workdir>/setup.conf`` (``setup_conf``), which its agent
applies with system calls, without a fork (docs/DESIGN.md section 7). The file's format is
documented in ``data/agent/ns3-uml-agent.c``'s header: one step a line, ``[?DEV ]OP ARG...``,
words separated by one space; the last word of ``device`` and ``sysctl`` is the rest of the
line.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ..agent_protocol import PORT_NAME as AGENT_PORT_NAME
from .config import GUEST_WORKDIR, OUTPUT_DIR, GuestConfig, interface_name

__all__ = ["GUEST_ENV", "GUEST_UMASK", "LINK_UP_TIMEOUT", "SETUP_CONF", "Step",
           "setup_conf", "setup_steps", "shell_lines"]

#: The set-up file of a guest with an agent, in its ``workdir``.
SETUP_CONF = "setup.conf"
#: The environment of the init and of every command.
GUEST_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "HOME": "/tmp", "TERM": "dumb"}
GUEST_UMASK = 0o022
#: Simulated seconds an interface may take to come up before the set-up gives up.
LINK_UP_TIMEOUT = 10

_SYSCTL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
# Steps whose last argument is the rest of the line (it may hold spaces).
_REST_OF_LINE = {"device", "sysctl", "#"}


@dataclass(frozen=True)
class Step:
    """One set-up step: ``op`` with ``args``, done only if device ``guard`` was found."""

    op: str
    args: tuple[str, ...] = ()
    guard: str | None = None


def _sysctl_path(key: str) -> str:
    # sysctl(8)'s rule: dots separate levels, a slash stands for a dot in a
    # name (net.ipv4.conf.eth0/100.forwarding).
    if not _SYSCTL_RE.fullmatch(key) or ".." in key:
        raise ValueError(f"sysctl name {key!r} is not valid")
    return "/proc/sys/" + key.translate(str.maketrans("./", "/."))


def _route_words(route: str) -> list[str]:
    """``ip`` arguments adding ``route`` ("-6 default via fd00::1")."""
    words = shlex.split(route)
    family = []
    if words and words[0] in ("-4", "-6"):
        family, words = words[:1], words[1:]
    if not words:
        raise ValueError(f"route {route!r} is empty")
    return [*family, "route", "add", *words]


def _sysctl(path: str, name: str, value: str, guard: str | None = None) -> Step:
    if "\n" in value:
        raise ValueError(f"sysctl {name}: value {value!r} spans lines")
    return Step("sysctl", (path, name, value), guard)


def _ipv6_defaults(conf: str, guard: str | None = None) -> list[Step]:
    return [_sysctl(f"/proc/sys/net/ipv6/conf/{conf}/{key}", f"net.ipv6.conf.{conf}.{key}",
                    "0", guard)
            for key in ("accept_dad", "router_solicitations")]


def setup_steps(cfg: GuestConfig) -> list[Step]:
    """The mounts, the hostname and the network of ``cfg``, in the order they are done."""
    tmpfs = "tmpfs"
    steps = [
        Step("mount", ("proc", "proc", "/proc")),
        Step("mount", ("sysfs", "sysfs", "/sys")),
        # The kernel mounts devtmpfs on /dev itself (DEVTMPFS_MOUNT).
        Step("mount-once", ("devtmpfs", "devtmpfs", "/dev")),
        Step("mkdir", ("/dev/pts", "/dev/shm")),
        Step("mount", ("devpts", "devpts", "/dev/pts", "gid=5,mode=620,ptmxmode=666")),
        Step("mount", (tmpfs, tmpfs, "/dev/shm", "mode=1777")),
        # The host's / is read-only: writable scratch space comes from tmpfs.
        Step("mount", (tmpfs, tmpfs, "/tmp", "mode=1777")),
        Step("mount", (tmpfs, tmpfs, "/run", "mode=755")),
        Step("mount", (tmpfs, tmpfs, "/var", "mode=755")),
        Step("mkdir", ("/run/lock", "/var/tmp", "/var/log", "/var/lib", "/var/cache",
                       "/var/spool")),
        Step("chmod", ("1777", "/var/tmp", "/run/lock")),
        Step("symlink", ("/run", "/var/run")),
        Step("symlink", ("/run/lock", "/var/lock")),
        # The per-guest host directory, read-write, under a tmpfs mount point.
        Step("mount", (tmpfs, tmpfs, "/mnt", "mode=755")),
        Step("mkdir", (GUEST_WORKDIR,)),
        Step("mount", ("hostfs", "hostfs", GUEST_WORKDIR, str(cfg.workdir_path))),
        Step("mkdir", (f"{GUEST_WORKDIR}/{OUTPUT_DIR}",)),
        Step("hostname", (cfg.name,)),
        Step("ip", ("link", "set", "dev", "lo", "up")),
    ]
    return steps + _network_steps(cfg)


def _network_steps(cfg: GuestConfig) -> list[Step]:
    """IPv6 defaults, sysctls, interfaces and routes."""
    names = [interface_name(i) for i in range(len(cfg.interfaces))]
    steps = [
        Step("#", ("IPv6: no duplicate address detection, no router solicitations: they",)),
        Step("#", ("wait (seconds) and draw random delays before an address is usable.",)),
    ]
    for conf in ("all", "default"):
        steps += _ipv6_defaults(conf)
    for i, (iface, dev) in enumerate(zip(cfg.interfaces, names)):
        # Device i of the command line is platform device virtio-uml.<i>; a
        # device that failed to probe would shift the eth<N> names.
        sysfs = f"/sys/devices/virtio-uml-cmdline/virtio-uml.{i}/virtio*/net/{dev}"
        steps += [
            Step("#", (f"{dev}: vhost-user device {iface.socket}",)),
            Step("device", (dev, sysfs,
                            f"{dev}: no network device for vhost-user socket {iface.socket}")),
            *_ipv6_defaults(dev, guard=dev),
        ]
    if cfg.sysctls:
        steps.append(Step("#", ("sysctls",)))
        for key, value in cfg.sysctls.items():
            steps.append(_sysctl(_sysctl_path(key), key, str(value)))
    for iface, dev in zip(cfg.interfaces, names):
        if iface.mtu is not None:
            steps.append(Step("ip", ("link", "set", "dev", dev, "mtu", str(iface.mtu)), dev))
        if iface.ipv4 is not None:
            steps.append(Step("ip", ("addr", "add", iface.ipv4, "dev", dev), dev))
        if iface.ipv6 is not None:
            steps.append(Step("ip", ("-6", "addr", "add", iface.ipv6, "dev", dev), dev))
        steps.append(Step("ip", ("link", "set", "dev", dev, "up"), dev))
    # Routes through a gateway need their interface up.
    steps += [Step("wait-link", (dev, str(LINK_UP_TIMEOUT)), dev) for dev in names]
    if cfg.routes:
        steps.append(Step("#", ("routes",)))
        steps += [Step("ip", tuple(_route_words(route))) for route in cfg.routes]
    return steps


# -- the shell rendering ------------------------------------------------------------------


def _shell(step: Step) -> list[str]:
    """The shell lines of one step, without its guard (functions.sh has the helpers)."""
    q = shlex.quote
    a = step.args
    if step.op == "#":
        return [f"# {a[0]}"]
    if step.op in ("mount", "mount-once"):
        fstype, source, target = a[:3]
        opts = f" -o {q(a[3])}" if len(a) > 3 else ""
        line = f"mnt -t {fstype}{opts} {source} {target}"
        if step.op == "mount-once":
            line = f"grep -q ' {target} {fstype} ' /proc/mounts || {line}"
        return [line]
    if step.op == "mkdir":
        return ["mkdir -p " + " ".join(map(q, a))]
    if step.op == "chmod":
        return ["chmod " + " ".join(map(q, a))]
    if step.op == "symlink":
        return [f"ln -s {q(a[0])} {q(a[1])}"]
    if step.op == "hostname":
        return [f"echo {q(a[0])} > /proc/sys/kernel/hostname"]
    if step.op == "sysctl":
        path, name, value = a
        return [f"sc {q(path)} {q(value)} {q(name)}"]
    if step.op == "ip":
        return ["try " + " ".join(q(w) for w in ("ip", *a))]
    if step.op == "wait-link":
        return [f'link_up {a[0]} || fail "{a[0]} did not come up"']
    raise ValueError(f"no shell rendering for set-up step {step.op!r}")


def shell_lines(steps: list[Step]) -> list[str]:
    """The init script's lines for ``steps``: a ``device`` step sets ``have_<dev>`` (its
    guarded steps right after it go into its ``then``), other guarded steps run only if it
    is set."""
    lines: list[str] = []
    i = 0
    while i < len(steps):
        step = steps[i]
        i += 1
        if step.op == "device":
            dev, sysfs, message = step.args
            lines += [f"if [ -e {sysfs} ]; then", f"  have_{dev}=1"]
            while i < len(steps) and steps[i].guard == dev:
                lines += ["  " + line for line in _shell(steps[i])]
                i += 1
            lines += ["else", f"  fail {shlex.quote(message)}", "fi"]
        elif step.guard is None:
            lines += _shell(step)
        elif step.op == "wait-link":
            lines.append(f'[ -n "$have_{step.guard}" ] && {{ {_shell(step)[0]}; }}')
        else:
            lines.append(f'if [ -n "$have_{step.guard}" ]; then')
            lines += ["  " + line for line in _shell(step)]
            while i < len(steps) and steps[i].guard == step.guard and \
                    steps[i].op != "wait-link":
                lines += ["  " + line for line in _shell(steps[i])]
                i += 1
            lines.append("fi")
    return lines


# -- the agent's rendering ------------------------------------------------------------------


def _conf_line(step: Step) -> str:
    words = [step.op, *step.args]
    plain = words[:-1] if step.op in _REST_OF_LINE else words
    for word in words:
        if "\n" in word:
            raise ValueError(f"set-up step {step.op}: {word!r} spans lines")
    for word in plain:
        if not word or any(c.isspace() for c in word):
            raise ValueError(f"set-up step {step.op}: {word!r} is not one word (the agent's "
                             "set-up file splits at spaces)")
    return ("" if step.guard is None else f"?{step.guard} ") + " ".join(words)


def setup_conf(cfg: GuestConfig) -> str:
    """The text of ``<workdir>/setup.conf``: the environment, ``setup_steps``, then the
    agent's port (waited for as long as a link)."""
    lines = [f"# ns3-uml: set-up of guest {cfg.name!r}, applied by its agent. Do not edit.",
             *(f"env {name} {value}" for name, value in GUEST_ENV.items()),
             f"umask {GUEST_UMASK:03o}"]
    lines += [_conf_line(step) for step in setup_steps(cfg)]
    lines.append(f"wait-port {AGENT_PORT_NAME} {LINK_UP_TIMEOUT}")
    return "\n".join(lines) + "\n"
