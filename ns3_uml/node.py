"""The nodes of a Simulation: real Linux guests, and native nodes running ns-3's own stack."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .bridge import bridge_interface, guest_mac
from .guest import Command, CommandResult, GuestConfig, GuestProcess, InterfaceConfig, guest_seed
from .units import parse_time

if TYPE_CHECKING:
    from .simulation import Simulation


class Node:
    """What guests and native nodes share: a name, an ns-3 node, addressed interfaces."""

    def __init__(self, sim: "Simulation", name: str) -> None:
        self.sim = sim
        #: The node's name (a guest's hostname).
        self.name = name
        #: The ``ns3::Node`` behind it, for raw ns-3 (devices, applications, mobility).
        self.ns3_node = sim.ns.CreateObject["ns3::Node"]()
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
    did. ``sysctls`` and ``routes`` are applied at boot, before the first command.
    """

    def __init__(self, sim: "Simulation", name: str, index: int, memory: str) -> None:
        super().__init__(sim, name)
        #: The guest's position among the simulation's guests (its MACs derive from it).
        self.index = index
        #: Its time-travel client id.
        self.client_id = index + 1
        #: Guest memory, e.g. "64M".
        self.memory = memory
        #: The guest's own directory on the host (console log, command outputs).
        self.workdir = sim.workdir / name
        self.interfaces: list[InterfaceConfig] = []
        #: Routes given to ``ip route add`` at boot, e.g. "default via 10.0.0.1".
        self.routes: list[str] = []
        #: Sysctls set at boot, e.g. {"net.ipv4.ip_forward": "1"}.
        self.sysctls: dict[str, str] = {}
        self._commands: list[Command] = []
        #: The running guest (None before ``Simulation.run``).
        self.process: GuestProcess | None = None

    def run(self, cmd: str, at: float | str | None = None, background: bool = False,
            name: str | None = None) -> str:
        """Run a shell command in the guest, after the previous ones, and not before ``at``
        (simulated time since boot: seconds or "2.5s"); ``background`` commands are not
        waited for. Returns the name its results are found under (default: the program's
        name, numbered if it repeats: "ping", "ping-2")."""
        self.sim._check_building()
        start = None if at is None else parse_time(at) / 1e9
        name = name or self._default_name(cmd)
        if any(c.name == name for c in self._commands):
            raise ValueError(f"{self.name} already has a command named {name!r}")
        self._commands.append(Command(cmd, start, background, name))
        return name

    def attach(self, device: Any, ip: str | None = None, ipv6: str | None = None,
               mtu: int | None = None) -> str:
        """Bridge a new guest interface to ``device``, an ns-3 NetDevice on this node's
        ``ns3_node``, with the given addresses ("10.1.0.1/24"). Returns the interface's name
        in the guest (eth0, eth1, ...)."""
        self.sim._check_building()
        self._check_device(device)
        k = len(self.interfaces)
        socket = self.sim._socket_path(f"{self.index}-{k}")
        bridge_interface(self.ns3_node, device, socket, self.client_id, guest_mac(self.index, k))
        self.interfaces.append(InterfaceConfig(socket, ipv4=ip, ipv6=ipv6, mtu=mtu))
        if ip is not None:
            self.addresses.append(ipaddress.IPv4Interface(ip))
        return f"eth{k}"

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
        names = ", ".join(c.name for c in self._commands) or "none"
        raise KeyError(f"{self.name} has no command {name!r} (it has: {names})")

    def results(self) -> list[CommandResult]:
        """Every command's results, in the order given (empty before the run)."""
        if self.process is None:
            return []
        return self.process.read_outputs()

    @property
    def console_log(self) -> Path:
        """The guest's console: kernel messages and init errors."""
        return self.workdir / "console.log"

    def _default_name(self, cmd: str) -> str:
        words = cmd.split()
        base = os.path.basename(words[0]) if words else "cmd"
        base = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in base) or "cmd"
        taken = {c.name for c in self._commands}
        name, n = base, 2
        while name in taken:
            name, n = f"{base}-{n}", n + 1
        return name

    def _config(self) -> GuestConfig:
        return GuestConfig(
            name=self.name, client_id=self.client_id, tt_socket=self.sim.calendar.socket_path,
            workdir=self.workdir, memory=self.memory, commands=list(self._commands),
            interfaces=list(self.interfaces), routes=list(self.routes),
            sysctls=dict(self.sysctls), seed=guest_seed(self.sim.seed, self.name),
        )


class NativeNode(Node):
    """An ns-3 node with ns-3's own Internet stack: install ns-3 applications on
    ``ns3_node`` (UdpEchoServer, Ping, BulkSend, ...) to talk to the guests."""

    def __init__(self, sim: "Simulation", name: str) -> None:
        super().__init__(sim, name)
        sim.ns.InternetStackHelper().Install(self.ns3_node)
        self._ipv4 = self.ns3_node.GetObject[sim.ns.Ipv4]()
        #: ns-3 interface index per entry of ``addresses``.
        self._ifindex: list[int] = []

    def attach(self, device: Any, ip: str | None = None, ipv6: str | None = None,
               mtu: int | None = None) -> str:
        """Add ``device`` (an ns-3 NetDevice on this node's ``ns3_node``) to ns-3's IPv4
        stack with address ``ip`` ("10.1.0.9/24"). Returns the device's name, "dev<N>"
        (its index on the node)."""
        self.sim._check_building()
        self._check_device(device)
        if ipv6 is not None:
            raise ValueError(f"{self.name}: IPv6 addresses on native nodes are ns-3's to "
                             "give (Ipv6AddressHelper)")
        ns = self.sim.ns
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
        ns = self.sim.ns
        interface = self._ifindex[self._network_of(via)]
        routing = ns.Ipv4StaticRoutingHelper().GetStaticRouting(self._ipv4)
        gateway = ns.Ipv4Address(via)
        if destination == "default":
            routing.SetDefaultRoute(gateway, interface)
        else:
            net = ipaddress.IPv4Network(destination)
            routing.AddNetworkRouteTo(ns.Ipv4Address(str(net.network_address)),
                                      ns.Ipv4Mask(str(net.netmask)), gateway, interface)
