"""The simulation a script builds: guests as ns-3 nodes, links between them, one run."""

from __future__ import annotations

import ipaddress
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

from .bridge import bridge_interface, guest_mac
from .calendar import Calendar, CalendarError
from .guest import (
    Command,
    CommandResult,
    GuestConfig,
    GuestProcess,
    InterfaceConfig,
    guest_seed,
)
from .kernel import ensure_kernel


class GuestError(CalendarError):
    """A run stopped because of one guest; ``node`` is its name, ``console_log`` its log."""

    def __init__(self, kind: str, client_id: int | None, message: str, node: str | None,
                 console_log: Path | None) -> None:
        super().__init__(kind, client_id, message)
        self.node = node
        self.console_log = console_log


class UmlNode:
    """A real Linux guest that is also an ns-3 node (``ns3_node``)."""

    def __init__(self, sim: "Simulation", name: str, index: int, memory: str) -> None:
        self.sim = sim
        self.name = name
        self.index = index
        self.client_id = index + 1
        self.memory = memory
        self.ns3_node = sim.ns.CreateObject["ns3::Node"]()
        self.workdir = sim.workdir / name
        self.interfaces: list[InterfaceConfig] = []
        self.routes: list[str] = []
        self.sysctls: dict[str, str] = {}
        self._commands: list[Command] = []
        self.process: GuestProcess | None = None

    def __repr__(self) -> str:
        return f"UmlNode({self.name!r})"

    def run(self, cmd: str, at: float | str | None = None, background: bool = False,
            name: str | None = None) -> None:
        """Run a shell command in the guest, after the previous ones, or not before ``at``
        (simulated seconds since boot). Its results are found under ``name`` (default:
        the program's name, numbered if it repeats)."""
        from .units import parse_time  # noqa: PLC0415

        start = None if at is None else parse_time(at) / 1e9
        self._commands.append(Command(cmd, start, background, name or self._default_name(cmd)))

    def attach(self, device: Any, ip: str | None = None, ipv6: str | None = None,
               mtu: int | None = None) -> str:
        """Bridge a new guest interface to ``device``, an ns-3 NetDevice on this node.
        Returns the interface's name in the guest (eth0, eth1, ...)."""
        if device.GetNode() != self.ns3_node:
            raise ValueError(f"{self.name}: the device is on another ns-3 node; build it on "
                             f"{self.name}.ns3_node")
        k = len(self.interfaces)
        socket = self.sim._socket_path(f"{self.index}-{k}")
        bridge_interface(self.ns3_node, device, socket, self.client_id, guest_mac(self.index, k))
        self.interfaces.append(InterfaceConfig(socket, ipv4=ip, ipv6=ipv6, mtu=mtu))
        return f"eth{k}"

    def result(self, name: str) -> CommandResult:
        """What the command called ``name`` did (stdout, stderr, exit code, times)."""
        for r in self.results():
            if r.name == name:
                return r
        names = ", ".join(r.name for r in self.results()) or "none"
        raise KeyError(f"{self.name} has no command {name!r} (it has: {names})")

    def results(self) -> list[CommandResult]:
        """Every command's results, in the order given."""
        if self.process is None:
            return []
        return self.process.read_outputs()

    @property
    def console_log(self) -> Path:
        return self.workdir / "console.log"

    def _default_name(self, cmd: str) -> str:
        base = os.path.basename(cmd.split()[0]) if cmd.split() else "cmd"
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


class Simulation:
    """One ns-3 simulation with real guests; one per process at a time.

    Creating it installs the calendar as ns-3's simulator implementation, so raw ns-3
    (``sim.ns``) can be used alongside: nodes, devices, applications, tracing.
    """

    def __init__(self, workdir: str | os.PathLike[str] = "runs/sim", seed: int = 1, *,
                 shared_memory: bool = True, memory: str = "64M",
                 yield_timeout: float = 120.0) -> None:
        if seed < 1:
            raise ValueError("seed must be a positive integer (ns-3 seeds start at 1)")
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.memory = memory
        # Unix socket paths are limited to 107 bytes: keep them in a short private dir.
        self._sockdir = Path(tempfile.mkdtemp(prefix="ns3-uml-"))
        try:
            self.calendar = Calendar(self._sockdir / "calendar.sock",
                                     shared_memory=shared_memory, yield_timeout=yield_timeout)
        except BaseException:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            raise
        self.ns = self.calendar.ns
        self.ns.RngSeedManager.SetSeed(seed)
        # ns-3's own stacks send zero IP/ICMP/TCP checksums unless told otherwise, and a
        # guest's Linux drops such packets: native nodes must checksum to talk to guests.
        self.ns.GlobalValue.Bind("ChecksumEnabled", self.ns.BooleanValue(True))
        self.nodes: dict[str, UmlNode] = {}
        self._subnets = 0
        self._closed = False

    # ------------------------------------------------------------------ building
    def add_node(self, name: str, run: Iterable[str] | None = None,
                 memory: str | None = None) -> UmlNode:
        """A new guest named ``name`` (its hostname) running ``run`` in order."""
        if name in self.nodes:
            raise ValueError(f"there is already a node named {name!r}")
        node = UmlNode(self, name, len(self.nodes), memory or self.memory)
        for cmd in run or []:
            node.run(cmd)
        self.nodes[name] = node
        return node

    def node(self, name: str) -> UmlNode:
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(self.nodes) or "none"
            raise KeyError(f"no node named {name!r} (nodes: {known})") from None

    def point_to_point(self, a: UmlNode | str, b: UmlNode | str, rate: str = "100Mbps",
                       delay: str = "1ms") -> Any:
        """Link two guests over ns-3's point-to-point model; they get the next /24
        (10.0.0.1 and .2 for the first link). Returns the ns-3 devices."""
        return self._link([self._as_node(a), self._as_node(b)], "p2p", rate, delay)

    def csma(self, nodes: Sequence[UmlNode | str], rate: str = "100Mbps",
             delay: str = "0.1ms") -> Any:
        """Put guests on one ns-3 CSMA (Ethernet-like) channel, addressed .1, .2, ... of
        the next /24. Returns the ns-3 devices."""
        return self._link([self._as_node(n) for n in nodes], "csma", rate, delay)

    def _as_node(self, n: UmlNode | str) -> UmlNode:
        return self.node(n) if isinstance(n, str) else n

    def _link(self, members: list[UmlNode], kind: str, rate: str, delay: str) -> Any:
        ns = self.ns
        container = ns.NodeContainer()
        for m in members:
            container.Add(m.ns3_node)
        if kind == "p2p":
            helper = ns.PointToPointHelper()
            helper.SetDeviceAttribute("DataRate", ns.StringValue(rate))
        else:
            helper = ns.CsmaHelper()
            helper.SetChannelAttribute("DataRate", ns.StringValue(rate))
        helper.SetChannelAttribute("Delay", ns.StringValue(delay))
        devices = helper.Install(container)
        subnet = ipaddress.IPv4Network(f"10.{self._subnets // 256}.{self._subnets % 256}.0/24")
        self._subnets += 1
        hosts = subnet.hosts()
        for i, m in enumerate(members):
            m.attach(devices.Get(i), ip=f"{next(hosts)}/{subnet.prefixlen}")
        pcap_dir = self.workdir / "pcap"
        pcap_dir.mkdir(exist_ok=True)
        helper.EnablePcap(str(pcap_dir / f"{kind}{self._subnets - 1}"), devices)
        return devices

    def _socket_path(self, tag: str) -> Path:
        return self._sockdir / f"net{tag}.sock"

    # ------------------------------------------------------------------ running
    def run(self, until: str | float | None = None) -> dict[str, Any]:
        """Boot every guest, run until ``until`` (simulated) or until all are done, and
        collect their results. A guest that crashes or hangs stops the run with a
        GuestError naming it; the others are shut down and every file stays on disk."""
        kernel = ensure_kernel(progress=True)
        self.calendar.impl.ExpectClients(len(self.nodes))
        try:
            for node in self.nodes.values():
                node.process = GuestProcess(node._config(), kernel=kernel)
                node.process.start()
                self.calendar.register_process(node.client_id, node.process.pid)
            summary = self.calendar.run(until=until)
        except CalendarError as exc:
            self._kill_guests()
            node = next((n for n in self.nodes.values() if n.client_id == exc.client_id), None)
            where = f"guest {node.name!r}: " if node else ""
            log = node.console_log if node else None
            hint = f" (console log: {log})" if log else ""
            raise GuestError(exc.kind, exc.client_id, f"{where}{exc}{hint}",
                             node.name if node else None, log) from None
        except BaseException:
            self._kill_guests()
            raise
        # Guests that reached the end powered off by themselves; at `until` the rest stop.
        self._kill_guests()
        return summary

    def _kill_guests(self) -> None:
        # GuestProcess.kill is a no-op for a guest that has already exited.
        for node in self.nodes.values():
            if node.process is not None:
                node.process.kill()

    def close(self) -> None:
        """Stop every guest, destroy the ns-3 simulation and remove the sockets."""
        if self._closed:
            return
        self._closed = True
        self._kill_guests()
        self.calendar.close()
        shutil.rmtree(self._sockdir, ignore_errors=True)

    def __enter__(self) -> "Simulation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
