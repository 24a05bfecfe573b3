"""Starting a User-Mode-Linux guest: its configuration, command line, init, process, outputs.

``config`` (GuestConfig and the name rules), ``cmdline`` (the UML command line), ``setup``
(the set-up steps, as shell lines and as the agent's ``setup.conf``), ``init`` (the
generated init), ``process`` (GuestProcess), ``outputs`` (what the commands did) and
``agent`` (building the guest agent); this package's face re-exports what callers use.

A guest boots the host's ``/`` read-only over hostfs. With an agent (a ``Simulation``'s
guest) the agent is its init: it does the set-up of ``setup.conf`` with system calls and
serves the host's commands. Without one, a generated init script mounts what it needs,
configures its network, runs the configured commands and powers off. The per-guest
host directory ``workdir`` is mounted
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

    init.sh               the generated init (``build_init_script``), without an agent
    setup.conf            the agent's set-up (``build_init_script``), with one
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

from ..procs import group_members as process_group_members
from .agent import AgentBuildError, ensure_agent
from .cmdline import SEED_PARAM, guest_argv
from .config import (COMMANDS_NOT_BEFORE, GUEST_WORKDIR, IPV6_OFF_SYSCTLS, Command,
                     GuestConfig, InterfaceConfig, VhostUserDevice, check_command_name,
                     check_node_name,
                     default_command_name, guest_seed, interface_name)
from .init import build_init_script
from .outputs import CommandResult, read_outputs, read_setup_errors
from .process import ADDR_NO_RANDOMIZE, GuestProcess

__all__ = [
    "ADDR_NO_RANDOMIZE",
    "AgentBuildError",
    "COMMANDS_NOT_BEFORE",
    "GUEST_WORKDIR",
    "IPV6_OFF_SYSCTLS",
    "SEED_PARAM",
    "Command",
    "CommandResult",
    "GuestConfig",
    "GuestProcess",
    "InterfaceConfig",
    "VhostUserDevice",
    "build_init_script",
    "check_command_name",
    "check_node_name",
    "default_command_name",
    "ensure_agent",
    "guest_argv",
    "guest_seed",
    "interface_name",
    "process_group_members",
    "read_outputs",
    "read_setup_errors",
]
