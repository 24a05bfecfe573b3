"""The nodes of a Simulation: real Linux guests, and native nodes running ns-3's own stack.

The Simulation owns its nodes; a node never sees the Simulation, only the small
:class:`NodeContext` it is given (as in Mininet, where the network owns its nodes).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence

from .bridge import bridge_interface, guest_mac
from .guest import (Command, CommandResult, GuestConfig, GuestProcess, InterfaceConfig,
                    VhostUserDevice, check_command_name, default_command_name, guest_seed,
                    interface_name)
from .units import parse_time

if TYPE_CHECKING:
    from .commands import CommandHandle


class GuestCommands(Protocol):
    """What a guest asks of its simulation to run commands once it has booted."""

    def started(self) -> bool: ...

    def schedule(self, node: "UmlNode", command: Command) -> None: ...

    def command_names(self, node: "UmlNode") -> set[str]: ...

    def cmd(self, node: "UmlNode", command: str, name: str,
            timeout: str | float | None) -> CommandResult: ...

    def start(self, node: "UmlNode", command: str, name: str) -> "CommandHandle": ...

    def results(self, node: "UmlNode") -> list[CommandResult] | None: ...


@dataclass(frozen=True)
class NodeContext:
    """What a node needs from the simulation that holds it."""

    #: ns-3's ``ns`` namespace.
    ns: Any
    #: Where guests' directories go (``<workdir>/<name>``).
    workdir: Path
    #: The simulation's seed; each guest's entropy derives from it and the guest's name.
    seed: int
    #: The calendar's socket, where guests connect.
    calendar_socket: Path
    #: Raises RuntimeError once nodes, links and commands may no longer be added.
    check_building: Callable[[], None]
    #: A short path for a vhost-user socket called ``tag`` (Unix socket paths are short).
    socket_path: Callable[[str], Path]
    #: Whether guests' interfaces offer checksum offload and TSO/USO unless a node says.
    offloads: bool = True
    #: Runs guests' commands through their agents.
    commands: GuestCommands | None = None


class Node:
    """What guests and native nodes share: a name, an ns-3 node, addressed interfaces."""

    def __init__(self, context: NodeContext, name: str) -> None:
        self._context = context
        #: The node's name (a guest's hostname).
        self.name = name
        #: The ``ns3::Node`` behind it, for raw ns-3 (devices, applications, mobility).
        self.ns3_node = context.ns.CreateObject["ns3::Node"]()
        #: IPv4 interface addresses with prefix, one per interface with an address, in order.
        self.addresses: list[ipaddress.IPv4Interface] = []
        #: Capture file per interface name, for devices the Simulation built.
        self.pcaps: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def ip(self) -> str:
        """The node's first IPv4 address, e.g. "10.0.0.1" (once a link has given it one)."""
        if not self.addresses:
            raise ValueError(f"{self.name} has no IPv4 address yet: connect it to a link first")
        return str(self.addresses[0].ip)

    @property
    def ips(self) -> list[str]:
        """Every IPv4 address of the node, in interface order."""
        return [str(a.ip) for a in self.addresses]

    def attach(self, device: Any, ip: str | None = None, ipv6: str | None = None,
               mtu: int | None = None) -> str:
        """Give the node a new interface on ``device``, an ns-3 NetDevice installed on this
        node's ``ns3_node``. Returns the interface's name."""
        raise NotImplementedError

    def add_route(self, destination: str, via: str) -> None:
        """Route ``destination`` ("10.1.0.0/24" or "default") through the gateway ``via``."""
        raise NotImplementedError

    def _check_device(self, device: Any) -> None:
        if device.GetNode() != self.ns3_node:
            raise ValueError(f"{self.name}: the device is on another ns-3 node; install it on "
                             f"{self.name}.ns3_node")

    def _network_of(self, gateway: str) -> int:
        """The index (in ``addresses``) of the interface whose subnet holds ``gateway``."""
        address = ipaddress.IPv4Address(gateway)
        for k, iface in enumerate(self.addresses):
            if address in iface.network:
                return k
        nets = ", ".join(str(a.network) for a in self.addresses) or "none"
        raise ValueError(f"{self.name}: gateway {gateway} is on none of its subnets ({nets})")


class UmlNode(Node):
    """A real Linux guest (User-Mode Linux) that is also an ns-3 node.

    Give it commands with ``run``; after ``Simulation.run`` its ``results`` tell what each
    did. ``sysctls`` and ``routes`` are applied at boot, before the first command. Its
    ``config`` (a :class:`~ns3_uml.guest.GuestConfig`) is everything it boots with.
    """

    def __init__(self, context: NodeContext, name: str, index: int, memory: str, *,
                 stop_at: float | str | None = None,
                 kernel_args: Sequence[str] = (), offloads: bool | None = None,
                 rx_coalesce: str | float | None = None,
                 rx_coalesce_frames: int = 0) -> None:
        super().__init__(context, name)
        #: Receive coalescing of its interfaces (VirtioNetDevice RxCoalesceTime, ns; 0: off)
        #: and RxCoalesceFrames (0: the window alone).
        self.rx_coalesce_ns = 0 if rx_coalesce is None else parse_time(rx_coalesce)
        if not isinstance(rx_coalesce_frames, int) or rx_coalesce_frames < 0:
            raise ValueError(f"rx_coalesce_frames must be a count >= 0, not "
                             f"{rx_coalesce_frames!r}")
        if rx_coalesce_frames and not self.rx_coalesce_ns:
            raise ValueError("rx_coalesce_frames ends a coalescing window: give rx_coalesce "
                             "(the window) too")
        self.rx_coalesce_frames = rx_coalesce_frames
        #: The ns3::VirtioNetDevice of each interface, in order (counters: GetKickCount,
        #: GetCallCount, GetTxFrameCount, GetRxFrameCount).
        self.virtio_devices: list[Any] = []
        #: The guest's position among the simulation's guests (its MACs derive from it).
        self.index = index
        #: Whether its interfaces offer checksum offload and TSO/USO (``bridge_interface``).
        self.offloads = context.offloads if offloads is None else offloads
        #: How the guest boots and what it runs; the node's other fields are views of it.
        self.config = GuestConfig(
            name=name, client_id=index + 1, tt_socket=context.calendar_socket,
            workdir=context.workdir / name, memory=memory,
            extra_args=list(kernel_args), seed=guest_seed(context.seed, name),
            stop_at=None if stop_at is None else parse_time(stop_at) / 1e9)
        self._process: GuestProcess | None = None

    @property
    def client_id(self) -> int:
        """Its time-travel client id."""
        return self.config.client_id

    @property
    def memory(self) -> str:
        """Guest memory, e.g. "64M"."""
        return self.config.memory

    @property
    def workdir(self) -> Path:
        """The guest's own directory on the host (console log, command outputs)."""
        return self.config.workdir_path

    @property
    def interfaces(self) -> list[InterfaceConfig]:
        """Its network interfaces (eth0, eth1, ...), in order."""
        return self.config.interfaces

    @property
    def routes(self) -> list[str]:
        """Routes given to ``ip route add`` at boot, e.g. "default via 10.0.0.1"."""
        return self.config.routes

    @property
    def sysctls(self) -> dict[str, str]:
        """Sysctls set at boot, e.g. {"net.ipv4.ip_forward": "1"}."""
        return self.config.sysctls

    @property
    def stop_at(self) -> float | None:
        """Simulated seconds since boot at which whatever still runs is killed (its results
        say ``killed``) and commands not started yet never start; None: no deadline."""
        return self.config.stop_at

    @property
    def kernel_args(self) -> list[str]:
        """Extra words for the guest kernel's command line (e.g. "loglevel=7")."""
        return self.config.extra_args

    @property
    def process(self) -> GuestProcess | None:
        """The running guest (None before ``Simulation.run``)."""
        return self._process

    def run(self, cmd: str, at: float | str | None = None, background: bool = False,
            name: str | None = None) -> str:
        """Run a shell command in the guest, after the previous ones, and not before ``at``
        (simulated time since boot: seconds or "2.5s"); ``background`` commands are not
        waited for. Returns the name its results are found under (default: the program's
        name, numbered if it repeats: "ping", "ping-2"); a name must be letters, digits,
        '.', '_' or '-', starting with a letter or digit (it names files). Also between
        runs: the command then follows those given before (an ``at`` already past: as soon
        as they have ended)."""
        start = None if at is None else parse_time(at) / 1e9
        name = self._command_name(cmd, name)
        command = Command(cmd, start, background, name)
        service = self._service()
        if service.started():
            service.schedule(self, command)
        else:
            self._context.check_building()
            self.config.commands.append(command)
        return name

    def cmd(self, command: str, timeout: str | float | None = None,
            name: str | None = None) -> CommandResult:
        """Run ``command`` now (at the current simulated time; no earlier than 1 s of
        uptime) and return its result once it has exited: every guest and ns-3 advance
        meanwhile, exactly as in a run. ``timeout``: simulated seconds ("5s") after which it
        is killed and ``CommandTimeout`` raised. Boots the simulation if it has not run yet.
        A program the guest lacks gives returncode 127 and the shell's message."""
        return self._service().cmd(self, command, self._command_name(command, name), timeout)

    def start(self, command: str, name: str | None = None) -> "CommandHandle":
        """Start ``command`` now, in the background; returns a handle (``poll``, ``wait``,
        ``stdout``/``stderr`` so far, ``kill``). It runs as the simulation advances."""
        return self._service().start(self, command, self._command_name(command, name))

    def _service(self) -> GuestCommands:
        if self._context.commands is None:
            raise RuntimeError(f"{self.name} belongs to no simulation that runs commands")
        return self._context.commands

    def _command_name(self, cmd: str, name: str | None) -> str:
        taken = {c.name for c in self._commands()} | self._service().command_names(self)
        if name is None:
            name = default_command_name(cmd, taken)
        check_command_name(name)
        if name in taken:
            raise ValueError(f"{self.name} already has a command named {name!r}")
        return name

    def attach(self, device: Any, ip: str | None = None, ipv6: str | None = None,
               mtu: int | None = None) -> str:
        """Bridge a new guest interface to ``device``, an ns-3 NetDevice on this node's
        ``ns3_node``, with the given addresses ("10.1.0.1/24"). Returns the interface's name
        in the guest (eth0, eth1, ...)."""
        self._context.check_building()
        self._check_device(device)
        k = len(self.interfaces)
        socket = self._context.socket_path(f"{self.index}-{k}")
        port = bridge_interface(self.ns3_node, device, socket, self.client_id,
                                guest_mac(self.index, k), offloads=self.offloads,
                                rx_coalesce_ns=self.rx_coalesce_ns,
                                rx_coalesce_frames=self.rx_coalesce_frames)
        self.virtio_devices.append(port.GetVirtioNetDevice())
        self.interfaces.append(InterfaceConfig(socket, ipv4=ip, ipv6=ipv6, mtu=mtu))
        if ip is not None:
            self.addresses.append(ipaddress.IPv4Interface(ip))
        return interface_name(k)

    def add_vhost_user_device(self, socket: str | os.PathLike[str], device_id: int) -> None:
        """Give the guest a virtio device that another process serves over vhost-user at
        ``socket`` (an absolute path of at most 107 bytes: ``sim.socket_dir`` is short),
        of virtio id ``device_id``: e.g. ``VIRTIO_ID_MAC80211_HWSIM``
        (``ns3_uml.vhost_protocol``) for wmediumd's ``-u`` socket, or ``VIRTIO_ID_NET``.
        The guest probes it after its interfaces and its console, so they keep their
        names. Something must listen there when the guest boots (an external client of
        the simulation, or a process of your own): the first run checks."""
        self._context.check_building()
        self.config.vhost_user_devices.append(VhostUserDevice(Path(socket), device_id))

    def add_route(self, destination: str, via: str) -> None:
        """Route ``destination`` ("10.1.0.0/24" or "default") through the gateway ``via``."""
        self._network_of(via)
        self.routes.append(f"{destination} via {via}")

    def result(self, name: str) -> CommandResult:
        """What the command called ``name`` did: stdout, stderr, returncode, simulated start
        and end (seconds since boot)."""
        for r in self.results():
            if r.name == name:
                return r
        names = ", ".join(str(c.name) for c in self._commands()) or "none"
        raise KeyError(f"{self.name} has no command {name!r} (it has: {names})")

    def results(self) -> list[CommandResult]:
        """Every command's results, in the order given (empty before the run)."""
        results = self._service().results(self) if self._context.commands else None
        if results is not None:
            return results
        if self._process is None:
            return []
        return self._process.read_outputs()

    @property
    def console_log(self) -> Path:
        """The guest's console: kernel messages and init errors."""
        return self.workdir / "console.log"

    def boot(self, kernel: Path) -> int:
        """Boot the guest with ``kernel`` (``Simulation.run`` does); its pid."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} has been started already")
        self._process = GuestProcess(self.config, kernel=kernel)
        self._process.start()
        pid = self._process.pid
        assert pid is not None
        return pid

    def stop(self) -> None:
        """Kill the guest if it still runs (no-op before ``boot`` and once it has exited)."""
        if self._process is not None:
            self._process.kill()

    def _commands(self) -> list[Command]:
        return [c if isinstance(c, Command) else Command(c) for c in self.config.commands]


class NativeNode(Node):
    """An ns-3 node with ns-3's own Internet stack: install ns-3 applications on
    ``ns3_node`` (UdpEchoServer, Ping, BulkSend, ...) to talk to the guests."""

    def __init__(self, context: NodeContext, name: str) -> None:
        super().__init__(context, name)
        context.ns.InternetStackHelper().Install(self.ns3_node)
        self._ipv4 = self.ns3_node.GetObject[context.ns.Ipv4]()
        #: ns-3 interface index per entry of ``addresses``.
        self._ifindex: list[int] = []

    def attach(self, device: Any, ip: str | None = None, ipv6: str | None = None,
               mtu: int | None = None) -> str:
        """Add ``device`` (an ns-3 NetDevice on this node's ``ns3_node``) to ns-3's IPv4
        stack with address ``ip`` ("10.1.0.9/24"). Returns the device's name, "dev<N>"
        (its index on the node)."""
        self._context.check_building()
        self._check_device(device)
        if ipv6 is not None:
            raise ValueError(f"{self.name}: IPv6 addresses on native nodes are ns-3's to "
                             "give (Ipv6AddressHelper)")
        ns = self._context.ns
        index = self._ipv4.AddInterface(device)
        if ip is not None:
            iface = ipaddress.IPv4Interface(ip)
            self._ipv4.AddAddress(index, ns.Ipv4InterfaceAddress(
                ns.Ipv4Address(str(iface.ip)), ns.Ipv4Mask(str(iface.netmask))))
            self.addresses.append(iface)
            self._ifindex.append(index)
        if mtu is not None:
            device.SetMtu(mtu)
        self._ipv4.SetUp(index)
        return f"dev{device.GetIfIndex()}"

    def add_route(self, destination: str, via: str) -> None:
        """Route ``destination`` ("10.1.0.0/24" or "default") through the gateway ``via``
        (an ns-3 static route)."""
        ns = self._context.ns
        interface = self._ifindex[self._network_of(via)]
        routing = ns.Ipv4StaticRoutingHelper().GetStaticRouting(self._ipv4)
        gateway = ns.Ipv4Address(via)
        if destination == "default":
            routing.SetDefaultRoute(gateway, interface)
        else:
            net = ipaddress.IPv4Network(destination)
            routing.AddNetworkRouteTo(ns.Ipv4Address(str(net.network_address)),
                                      ns.Ipv4Mask(str(net.netmask)), gateway, interface)
