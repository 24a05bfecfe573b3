"""The simulation a script builds: guests and native nodes, the links between them, one run."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from . import links
from .agent_protocol import AgentProtocolError
from .calendar import Calendar, CalendarError
from .commands import CommandHandle, CommandTimeout
from .console import console_device
from .cpu import CpuChoice, check_choice, claimed, on_cpu
from .external import ExternalClient, listening_problem
from .guest import COMMANDS_NOT_BEFORE, IPV6_OFF_SYSCTLS, Command, CommandResult, check_node_name
from .guest.agent import ensure_agent
from .kernel import ensure_kernel
from .limits import GuestNeeds, check_host_limits, parse_size
from .node import NativeNode, Node, NodeContext, UmlNode
from .run_loop import RunLoop
from .session import CommandState, GuestSession, wake_mask
from .units import parse_time

if TYPE_CHECKING:
    import pandas

#: Columns of ``Simulation.results()``, in order.
RESULT_COLUMNS = ("node", "name", "command", "returncode", "start", "end", "duration",
                  "background", "killed", "stdout", "stderr")


class GuestError(CalendarError):
    """A run stopped because of one guest; ``node`` is its name, ``console_log`` its log."""

    def __init__(self, kind: str, client_id: int | None, message: str, node: str | None,
                 console_log: Path | None) -> None:
        super().__init__(kind, client_id, message)
        #: The guest's name (None if the error names no guest).
        self.node = node
        #: Its console log, the first place to look.
        self.console_log = console_log


def _last_lines(path: Path, n: int) -> str:
    """The last ``n`` non-empty lines of a log, joined by " | " ("" if none)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join([line.strip() for line in lines if line.strip()][-n:])


class ExternalClientError(GuestError):
    """A run stopped because of an external client (``Simulation.add_client``): ``client``
    is its name, ``log`` its standard error (``node`` and ``console_log`` are None)."""

    def __init__(self, kind: str, client_id: int | None, message: str, client: str,
                 log: Path) -> None:
        super().__init__(kind, client_id, message, None, None)
        #: The external client's name.
        self.client = client
        #: Its standard error, the first place to look.
        self.log = log


class _GuestCommands:
    """The simulation as its guests (``GuestCommands``) and command handles
    (``CommandService``) see it."""

    def __init__(self, sim: "Simulation") -> None:
        self._sim = sim

    def started(self) -> bool:
        return self._sim._started()

    def command_names(self, node: UmlNode) -> set[str]:
        return self._sim._command_names(node)

    def schedule(self, node: UmlNode, command: Command) -> None:
        self._sim._schedule(node, command)

    def cmd(self, node: UmlNode, command: str, name: str,
            timeout: str | float | None) -> CommandResult:
        return self._sim._cmd(node, command, name, timeout)

    def start(self, node: UmlNode, command: str, name: str) -> CommandHandle:
        return self._sim._start(node, command, name)

    def results(self, node: UmlNode) -> list[CommandResult] | None:
        return self._sim._results(node)

    def wait(self, state: CommandState, node: str,
             timeout: str | float | None) -> CommandResult:
        return self._sim._wait(state, node, timeout)

    def signal(self, state: CommandState, node: str, signo: int) -> None:
        self._sim._signal(state, node, signo)


class Simulation:
    """One ns-3 simulation with real Linux guests; one per process at a time.

    Creating it installs the calendar as ns-3's simulator implementation, so raw ns-3
    (``sim.ns``, the ``ns`` namespace of the ns3 package) works alongside: nodes, devices,
    applications, tracing. ``workdir`` receives every guest's directory and the pcaps;
    ``seed`` fixes ns-3's random streams and every guest's entropy, so a run repeats bit
    for bit. ``shared_memory`` uses shared-memory scheduling with the guests (faster;
    same results); ``memory`` is each guest's default RAM; ``ipv6=False`` turns IPv6 off in
    the guests (by default Linux speaks it, and its multicast reports and router
    solicitations share the links with what you measure); ``yield_timeout`` is how long
    (wall seconds) a guest may run without yielding before it counts as hung;
    ``tod_epoch_ns`` is the guests' wall clock (time of day) at simulated 0, in ns since
    1970 (default: the calendar's fixed epoch). ``offloads`` lets the guests' interfaces
    skip checksums and hand over TCP/UDP frames of up to 64 KiB (TSO/USO, as on a NIC):
    they enter ns-3 as MTU-sized wire frames with valid checksums, so links, pcaps and
    native nodes see ordinary frames; fewer crossings for bulk senders. ``offloads=False``
    offers none (every frame crosses as the guest's stack built it). ``cpu`` is where
    ``run()`` puts the calendar and every guest, all on one CPU (they take turns anyway):
    "auto" claims one no other simulation holds (simulations running at once, as a
    sweep's points, take different CPUs; with none free, or only one allowed, nothing is
    pinned), a CPU number pins there, None or False leaves placement to the OS. Faster
    (no wake-ups across CPUs); the same results wherever it runs. ``independent_groups``:
    guests whose nodes no chain of links joins do not stop for each other's events (fewer
    hand-offs; what reaches them from Python at a stop that another group caused happens at
    their own time if that is later, by at most 1 ms); False makes every guest stop for
    every event. ``parallel``: how many guests of independent groups may run at once, each
    on a CPU (default: one per CPU that ``cpu="auto"`` could claim); the results are the
    same for any number.

    Use it as a context manager (or call ``close()``) so that its guests, sockets and ns-3
    state are gone when you are done.
    """

    _open: "Simulation | None" = None

    def __init__(self, workdir: str | os.PathLike[str] = "runs/sim", seed: int = 1, *,
                 shared_memory: bool = True, memory: str = "64M", ipv6: bool = True,
                 yield_timeout: float = 120.0, tod_epoch_ns: int | None = None,
                 offloads: bool = True, cpu: CpuChoice = "auto",
                 independent_groups: bool = True, parallel: int | None = None) -> None:
        if Simulation._open is not None:
            raise RuntimeError(
                f"a Simulation is already open in this process (workdir "
                f"{Simulation._open.workdir}); ns-3 runs one simulation per process: close it "
                "first (sim.close(), or leave its with-block)")
        if not isinstance(seed, int) or seed < 1:
            raise ValueError("seed must be a positive integer (ns-3 seeds start at 1)")
        #: Where ``run()`` runs (see the class docstring): "auto", a CPU number or None.
        self.cpu = check_choice(cpu)
        #: The CPU the run was pinned to (None: not pinned, or not run yet).
        self.pinned_cpu: int | None = None
        #: Every CPU the run claimed: pinned_cpu, and more when guests of independent
        #: groups can run at once (one guest per CPU).
        self.cpus: tuple[int, ...] = ()
        if parallel is not None and (isinstance(parallel, bool) or not isinstance(parallel, int)
                                     or parallel < 1):
            raise ValueError(f"parallel must be a positive number of guests, not {parallel!r}")
        #: How many guests of independent groups may run at once (None: one per CPU).
        self.parallel = parallel
        #: What the run used (1 until the first run, or with one group).
        self.parallel_runs = 1
        self.workdir = Path(workdir).absolute()
        self.workdir.mkdir(parents=True, exist_ok=True)
        #: ns-3's run number stays 1; the seed alone tells runs apart.
        self.seed = seed
        self.memory = memory
        self.ipv6 = ipv6
        #: Whether guests' interfaces offer offloads unless ``add_node`` says otherwise.
        self.offloads = offloads
        # Unix socket paths are limited to 107 bytes: keep them in a short private dir.
        self._sockdir = Path(tempfile.mkdtemp(prefix="ns3-uml-"))
        try:
            self.calendar = Calendar(self._sockdir / "calendar.sock",
                                     shared_memory=shared_memory, yield_timeout=yield_timeout,
                                     tod_epoch_ns=tod_epoch_ns,
                                     independent_groups=independent_groups)
        except BaseException:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            raise
        #: The ``ns`` namespace of the ns3 package, for raw ns-3.
        self.ns = self.calendar.ns
        self.ns.RngSeedManager.SetSeed(seed)
        # ns-3's own stacks send zero IP/ICMP/TCP checksums unless told otherwise, and a
        # guest's Linux drops such packets: native nodes must checksum to talk to guests.
        self.ns.GlobalValue.Bind("ChecksumEnabled", self.ns.BooleanValue(True))
        # Address helpers remember addresses process-wide; a script run twice reuses them.
        self.ns.Ipv4AddressGenerator.Reset()
        #: Every node by name, guests and native nodes, in the order added.
        self.nodes: dict[str, Node] = {}
        self._guests: list[UmlNode] = []
        self._clients: list[ExternalClient] = []
        self._subnets = 0
        self._links: dict[str, int] = {}
        self._pcap_files: list[Any] = []
        self._booted = False
        self._kernel: Path | None = None
        self._agent: Path | None = None
        self._commands = _GuestCommands(self)
        self._loop: RunLoop | None = None
        self._failed: BaseException | None = None
        # The CPU claim (cpu.claimed), held from the first run to close(): the guests keep
        # the CPU they were started on; the calling thread is on it only during runs.
        self._pin = contextlib.ExitStack()
        self._closed = False
        # All that nodes see of the simulation.
        self._node_context = NodeContext(self.ns, self.workdir, seed, self.calendar.socket_path,
                                         self._check_building, self._socket_path, offloads,
                                         self._commands)
        Simulation._open = self

    def __repr__(self) -> str:
        return f"Simulation({str(self.workdir)!r}, seed={self.seed}, nodes={list(self.nodes)})"

    # ------------------------------------------------------------------ building
    def add_node(self, name: str, run: Iterable[str] | None = None,
                 memory: str | None = None, sysctls: dict[str, str] | None = None,
                 ipv6: bool | None = None, *, stop_at: str | float | None = None,
                 kernel_args: Sequence[str] = (), offloads: bool | None = None,
                 rx_coalesce: str | float | None = None,
                 rx_coalesce_frames: int = 0) -> UmlNode:
        """A new guest named ``name`` (also its hostname) that runs the shell commands
        ``run`` one after the other from 1 s of simulated uptime. More commands, with start
        times or in the background: ``node.run(...)``. ``memory``: its RAM (default: the
        simulation's). ``sysctls``: set at boot (e.g. {"net.ipv4.ip_forward": "1"}).
        ``ipv6``: whether it speaks IPv6 (default: the simulation's ``ipv6``).
        ``stop_at``: a deadline in simulated time since boot ("30s"): whatever still runs
        then is killed (``killed`` in ``results()``) and commands not started never start.
        ``kernel_args``: extra words for the guest kernel's command line ("loglevel=7").
        ``rx_coalesce``: receive coalescing on its interfaces, as ethtool's rx-usecs ("50us";
        default off): frames for the guest wait up to that long and arrive together, one
        interrupt for all, which saves wall time on bulk traffic but adds up to that much
        to every received frame's latency (a ping between two coalescing guests: up to
        twice). ``rx_coalesce_frames``: with it, the window also ends once that many frames
        wait (rx-frames).
        ``offloads``: whether its interfaces offer checksum offload and TSO/USO (default:
        the simulation's ``offloads``)."""
        self._check_name(name)
        self._check_id_free(len(self._guests) + 1, f"guest {name!r}")
        node = UmlNode(self._node_context, name, len(self._guests), memory or self.memory,
                       stop_at=stop_at, kernel_args=kernel_args, offloads=offloads,
                       rx_coalesce=rx_coalesce, rx_coalesce_frames=rx_coalesce_frames)
        if not (self.ipv6 if ipv6 is None else ipv6):
            node.sysctls.update(IPV6_OFF_SYSCTLS)
        node.sysctls.update(sysctls or {})
        for cmd in run or []:
            node.run(cmd)
        self.nodes[name] = node
        self._guests.append(node)
        return node

    def add_native_node(self, name: str) -> NativeNode:
        """A new ns-3 node with ns-3's own Internet stack (no guest): links address it like a
        guest; install ns-3 applications on its ``ns3_node``."""
        self._check_name(name)
        node = NativeNode(self._node_context, name)
        self.nodes[name] = node
        return node

    def add_client(self, argv: Sequence[str | os.PathLike[str]], *, name: str,
                   client_id: int | None = None, env: dict[str, str] | None = None,
                   connect_timeout: float = 30.0) -> ExternalClient:
        """A program that joins the calendar as a time-travel client, as a device simulator
        does (wmediumd's ``-t`` socket, any usfstl or UML client): ``argv`` is its command
        line, which gives it ``sim.calendar_socket`` and, if it takes one, ``client_id``.
        Short paths for sockets it serves to guests (``node.add_vhost_user_device``):
        ``sim.socket_dir``.

        It is started at the first ``run()``, before the guests boot, and admitted on its
        own (it has ``connect_timeout`` wall seconds to connect and yield once), clients in
        the order added; its output goes to ``<workdir>/<name>/stdout.log`` and
        ``stderr.log``. ``close()`` ends it (it sees the calendar go; then SIGTERM, then
        SIGKILL). ``client_id``: the START id it sends; None: whatever it sends (a UML or
        wmediumd without one sends -1), known once it has joined. Guests have the ids 1,
        2, ... in the order added: give another. ``env``: more environment variables.

        It joins no node's independent group: it stops for every event and every guest
        stops for its events. Runs repeat only if it behaves the same given the same
        times. If it exits before it has joined, never joins, or crashes later (a signal, a
        non-zero exit), the run stops with an ExternalClientError naming it; an exit with
        status 0 once joined is a departure, as a guest's power-off."""
        self._check_name(name)
        if client_id is not None:
            if isinstance(client_id, bool) or not isinstance(client_id, int) \
                    or not 0 <= client_id < 1 << 64:
                raise ValueError(f"client_id {client_id!r}: a START id is an unsigned 64-bit "
                                 "number")
            self._check_id_free(client_id, f"external client {name!r}")
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, not {connect_timeout!r}")
        client = ExternalClient(name, argv, self.workdir, client_id, env, connect_timeout)
        self._clients.append(client)
        return client

    def _check_id_free(self, client_id: int, who: str, clients: bool = True) -> None:
        """ValueError if a guest (or, with ``clients``, an external client) has
        ``client_id`` already."""
        owner = next((f"guest {n.name!r}" for n in self._guests if n.client_id == client_id),
                     None) or next((f"external client {c.name!r}" for c in self._clients
                                    if clients and c.client_id == client_id), None)
        if owner is not None:
            raise ValueError(f"{who}: client id {client_id} is {owner}'s (guests have 1, 2, "
                             "... in the order added): give the external client another")

    @property
    def clients(self) -> list[ExternalClient]:
        """The external time-travel clients, in the order added."""
        return list(self._clients)

    @property
    def calendar_socket(self) -> Path:
        """Where time-travel clients connect (``time-travel=ext:ID:PATH``, wmediumd's
        ``-t PATH``); it exists from the Simulation's creation to ``close()``."""
        return self.calendar.socket_path

    @property
    def socket_dir(self) -> Path:
        """A short private directory for unix sockets (their paths may have at most 107
        bytes), removed at ``close()``: where an external client can serve its devices."""
        return self._sockdir

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(self.nodes) or "none"
            raise KeyError(f"no node named {name!r} (nodes: {known})") from None

    @property
    def guests(self) -> list[UmlNode]:
        """The guests, in the order added."""
        return list(self._guests)

    def point_to_point(self, a: Node | str, b: Node | str, rate: str = "100Mbps",
                       delay: str = "1ms", subnet: str | None = None) -> Any:
        """Link two nodes over ns-3's point-to-point model (``DataRate`` ``rate``, channel
        ``Delay`` ``delay``). They get .1 and .2 of ``subnet`` (default: the next free /24,
        10.0.0.0/24 for the first link). Returns the ns-3 devices (a NetDeviceContainer)."""
        members = [self._as_node(a), self._as_node(b)]
        if members[0] is members[1]:
            raise ValueError(f"a point-to-point link needs two nodes, got {members[0].name} "
                             "twice")
        devices, helper = links.point_to_point(self.ns, self._ns3_nodes(members), rate, delay)
        return self._connect("p2p", members, devices, helper, subnet)

    def csma(self, nodes: Sequence[Node | str], rate: str = "100Mbps", delay: str = "0.1ms",
             subnet: str | None = None) -> Any:
        """Put nodes on one ns-3 CSMA (Ethernet-like) channel, addressed .1, .2, ... of
        ``subnet`` (default: the next free /24). Returns the ns-3 devices."""
        members = self._members(nodes, "csma")
        devices, helper = links.csma(self.ns, self._ns3_nodes(members), rate, delay)
        return self._connect("csma", members, devices, helper, subnet)

    def wifi(self, stations: Sequence[Node | str], ap: Node | str | None = None, *,
             ssid: str = "ns3-uml", standard: str = "802.11a", data_mode: str | None = None,
             distance: float = 5.0, subnet: str | None = None) -> Any:
        """Put nodes on one ns-3 Wi-Fi channel (Yans): ``stations`` associated with the
        access point ``ap``, or ad hoc among themselves if there is none. The AP stands at
        the origin and the stations ``distance`` metres apart on a line; ``standard`` is
        "802.11a", "802.11g", "802.11n", ...; ``data_mode`` fixes the rate (e.g.
        "OfdmRate24Mbps"). Addresses: the AP .1, then the stations in order. Returns the
        ns-3 devices (the AP's first). A station needs a few hundred ms of simulated time
        to associate before it can send."""
        members = self._members(([ap] if ap is not None else []) + list(stations), "wifi")
        devices, phy = links.wifi(self.ns, self._ns3_nodes(members), ap is not None, ssid,
                                  standard, data_mode, distance)
        return self._connect("wifi", members, devices, phy, subnet)

    def _check_name(self, name: str) -> None:
        self._check_building()
        if name in self.nodes or any(c.name == name for c in self._clients):
            raise ValueError(f"there is already a node or client named {name!r}")
        check_node_name(name)

    def _check_building(self) -> None:
        if self._closed:
            raise RuntimeError("this Simulation is closed")
        if self._booted:
            raise RuntimeError("this Simulation's guests have booted: nodes and links must "
                               "be added before the first run(); build a new Simulation")

    def _as_node(self, n: Node | str) -> Node:
        if isinstance(n, str):
            return self.node(n)
        if not isinstance(n, Node) or self.nodes.get(n.name) is not n:
            raise ValueError(f"{n!r} is not a node of this Simulation")
        return n

    def _members(self, nodes: Sequence[Node | str], kind: str) -> list[Node]:
        members = [self._as_node(n) for n in nodes]
        if len(members) < 2:
            raise ValueError(f"a {kind} channel needs at least two nodes")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ValueError(f"a node is on the {kind} channel twice: {names}")
        return members

    @staticmethod
    def _ns3_nodes(members: list[Node]) -> list[Any]:
        return [m.ns3_node for m in members]

    def _connect(self, kind: str, members: list[Node], devices: Any, helper: Any,
                 subnet: str | None) -> Any:
        """Address and attach every member's device and write a pcap per device."""
        self._check_building()
        net = self._next_subnet(subnet, len(members))
        link = f"{kind}{self._links.get(kind, 0)}"
        self._links[kind] = self._links.get(kind, 0) + 1
        pcap_dir = self.workdir / "pcap"
        pcap_dir.mkdir(exist_ok=True)
        hosts = net.hosts()
        for i, m in enumerate(members):
            device = devices.Get(i)
            interface = m.attach(device, ip=f"{next(hosts)}/{net.prefixlen}")
            path = pcap_dir / f"{link}-{m.name}.pcap"
            # A guest keeps its own MAC behind a bridging device, which therefore sees the
            # guest's frames as addressed to others: capture promiscuously, or lose them.
            promiscuous = isinstance(m, UmlNode)
            file = links.capture(self.ns, kind, device, str(path), promiscuous, helper)
            if file is not None:
                self._pcap_files.append(file)
            m.pcaps[interface] = path
        return devices

    def _next_subnet(self, subnet: str | None, hosts: int) -> ipaddress.IPv4Network:
        if subnet is None:
            k = self._subnets
            self._subnets += 1
            net = ipaddress.IPv4Network(f"10.{k // 256}.{k % 256}.0/24")
        else:
            net = ipaddress.IPv4Network(subnet)
        if net.num_addresses - 2 < hosts:
            raise ValueError(f"subnet {net} has no room for {hosts} nodes")
        return net

    def _socket_path(self, tag: str) -> Path:
        return self._sockdir / f"net{tag}.sock"

    # ------------------------------------------------------------------ running
    @property
    def now(self) -> float:
        """The simulated time, in seconds (0 before the first run)."""
        return self.calendar.now_ns() / 1e9

    def run(self, until: str | float | None = None, progress: bool = False) -> dict[str, Any]:
        """Run until ``until`` (simulated: "10s", or seconds), or, without it, until every
        guest's commands (``node.run``) have ended. The first call boots the guests; later
        calls go on with the same simulation (``until`` must then be later than ``now``).
        Guests without commands left stay up and answer until ``close()``. ``progress``
        shows a bar of simulated time. Returns the calendar's summary (clients, messages,
        times).

        A guest that crashes or hangs stops the simulation with a GuestError naming it;
        Ctrl-C stops it with KeyboardInterrupt. Either way the guests are shut down, every
        file written so far stays, and the simulation cannot go on."""
        self._check_can_run("run()")
        until_ns = None if until is None else parse_time(until)
        if until_ns is not None and self._loop is not None and until_ns <= self.calendar.now_ns():
            raise ValueError(f"run(until={until!r}): the simulation is at {self.now:g} s "
                             "already; until must be later (time only goes forward)")
        bar: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if progress:
            from .progress import SimTimeProgress  # noqa: PLC0415

            bar = SimTimeProgress(self._progress_ns,
                                  None if until_ns is None else until_ns / 1e9)
        self._claim()
        with on_cpu(self.cpus):  # the whole run, boot included
            self._boot()
            with bar:
                self._advance(until_ns, lambda: until_ns is None and self._scheduled_done())
        return self.calendar.summary()

    def at(self, time: str | float, fn: Callable[[], Any]) -> None:
        """Call ``fn()`` at simulated time ``time`` ("5s", or seconds) during a run, with the
        simulation paused there: it may change ns-3 attributes through ``sim.ns``, start
        commands (``node.start``) or schedule more; blocking calls (``cmd``, ``wait``,
        ``run``) are refused in it."""
        self._check_can_run("at()", blocking=False)
        time_ns = parse_time(time)
        if time_ns < self.calendar.now_ns():
            raise ValueError(f"at({time!r}): the simulation is at {self.now:g} s already")
        if not callable(fn):
            raise TypeError(f"at(): {fn!r} is not callable")
        self._run_loop().at(time_ns, fn)

    def _run_loop(self) -> RunLoop:
        if self._loop is None:
            self._loop = RunLoop(self.calendar)
        return self._loop

    def _scheduled_done(self) -> bool:
        sessions = self._run_loop().sessions.values()
        return all((s.ready and s.scheduled_done()) or s.gone for s in sessions)

    def _check_can_run(self, what: str, blocking: bool = True) -> None:
        if self._closed:
            raise RuntimeError(f"{what}: this Simulation is closed")
        if self._failed is not None:
            raise RuntimeError(f"{what}: this Simulation stopped with an error and cannot go "
                               f"on ({self._failed})")
        if blocking and self._loop is not None and self._loop.in_callback:
            raise RuntimeError(f"{what} cannot be called from an at() callback: the "
                               "simulation is paused there (use node.start())")

    def _claim(self) -> None:
        """Before the first boot: the kernel and the agent built, a CPU claimed."""
        if self._kernel is not None:
            return
        kernel = ensure_kernel(progress=True)  # a build uses every CPU: before the claim
        self._agent = ensure_agent()
        self.pinned_cpu = self._pin.enter_context(claimed(self.cpu))
        self.cpus = () if self.pinned_cpu is None else (self.pinned_cpu,)
        # Guests of different groups may run at once (docs/DESIGN.md rule 1): a CPU for
        # each, of those no other simulation holds.
        groups = int(self.calendar.impl.ComputeGroups())
        allowed = len(os.sched_getaffinity(0))
        runs = 1 if groups <= 1 else min(groups, self.parallel or allowed)
        if self.cpu == "auto" and self.pinned_cpu is not None:
            while len(self.cpus) < min(runs, allowed):
                extra = self._pin.enter_context(claimed("auto"))
                if extra is None:
                    break
                self.cpus += (extra,)
        if self.parallel is None:
            # As many as there are CPUs to run them: those held (none held, as when other
            # simulations hold every CPU, or one chosen: one), or with cpu=None all allowed.
            runs = min(runs, allowed if self.cpu is None else max(1, len(self.cpus)))
        self.parallel_runs = runs
        self.calendar.impl.SetAttribute("ParallelRuns", self.ns.UintegerValue(runs))
        self._kernel = kernel

    def _boot(self) -> None:
        """Boot every guest (once): each guest's console and process, on the claimed CPU."""
        if self._booted:
            return
        check_host_limits(GuestNeeds(
            interfaces=sum(len(n.config.interfaces) for n in self._guests),
            memory_bytes=tuple(parse_size(n.config.memory) for n in self._guests)))
        self._claim()
        kernel, agent = self._kernel, self._agent
        self._booted = True
        loop = self._run_loop()
        try:
            self.calendar.impl.ExpectClients(len(self._guests) + len(self._clients))
            for node in self._guests:
                cfg = node.config
                cfg.console_socket = self._sockdir / f"con{node.index}.sock"
                cfg.agent = agent
                if not cfg.vhost_user_devices:
                    # Another process's device couples its guests outside ns-3's channels,
                    # so such a guest joins no independent group (it is global).
                    self.calendar.set_client_node(node.client_id, node.ns3_node.GetId())
                device = console_device(cfg.console_socket, node.client_id,
                                        node.ns3_node.GetId(), self.calendar,
                                        stop_types=wake_mask())
                session = GuestSession(
                    node.name, device, cfg.output_dir, not_before_ns=parse_time(COMMANDS_NOT_BEFORE),
                    stop_at_ns=None if cfg.stop_at is None else parse_time(cfg.stop_at))
                for c in cfg.command_list():
                    session.add(c.name or "", c.cmd, background=c.background,
                                at_ns=None if c.at is None else parse_time(c.at),
                                scheduled=True)
                loop.sessions[node.name] = session
            with on_cpu(self.cpus):  # the clients and guests inherit the thread's CPU
                # The external clients first, one at a time (docs/DESIGN.md rule 7): the
                # order is the script's, and the devices they serve are there for the guests.
                for client in self._clients:
                    self._admit(client)
                self._check_vhost_user_devices()
                for node in self._guests:
                    self.calendar.register_process(node.client_id, node.boot(kernel))
        except BaseException as exc:
            self._fail(exc)
            raise

    def _admit(self, client: ExternalClient) -> None:
        """Start ``client`` and serve the calendar until it has joined."""
        pid = client.start()
        try:
            client_id = self.calendar.admit_process(pid, client.connect_timeout)
        except CalendarError as exc:
            if exc.kind == "interrupted":
                raise KeyboardInterrupt(str(exc)) from None
            raise self._client_error(client, exc) from None
        if client.client_id is not None and client_id != client.client_id:
            raise self._client_error(client, CalendarError(
                "setup", client_id, f"sent START id {client_id}, not the client_id "
                f"{client.client_id} it was given (does its command line give it?)"))
        try:
            # Clients among themselves: the calendar's to judge (it refuses two live
            # clients with one id; those without one, -1, it orders by connection).
            self._check_id_free(client_id, f"external client {client.name!r}", clients=False)
        except ValueError as exc:
            raise self._client_error(client, CalendarError("setup", client_id, str(exc)))
        client.client_id = client_id

    def _check_vhost_user_devices(self) -> None:
        """A guest's devices that other processes serve must be listening before it boots:
        UML gives up on a device it cannot connect to and boots without it."""
        for node in self._guests:
            for dev in node.config.vhost_user_devices:
                problem = listening_problem(dev.socket)
                if problem is not None:
                    raise self._guest_error(CalendarError(
                        "setup", node.client_id, f"its vhost-user device {dev.device_id} at "
                        f"{dev.socket}: {problem}"))

    def _advance(self, until_ns: int | None, done: Callable[[], bool]) -> None:
        """Run the loop; on any error the guests go and the simulation cannot go on."""
        try:
            with on_cpu(self.cpus):
                self._run_loop().advance(until_ns, done)
        except CalendarError as exc:
            self._fail(exc)
            if exc.kind == "interrupted":
                raise KeyboardInterrupt(str(exc)) from None
            raise self._guest_error(exc) from None
        except AgentProtocolError as exc:
            # What a guest's agent said breaks the protocol: that guest's error.
            self._fail(exc)
            node = self.nodes[exc.node] if exc.node else None
            client = node.client_id if isinstance(node, UmlNode) else None
            raise self._guest_error(CalendarError("protocol", client, str(exc))) from None
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            # The captures are whole on disk whenever a run returns, however it ends.
            for file in self._pcap_files:
                file.Flush()

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        self._kill_guests()

    def _progress_ns(self) -> int:
        return int(self.calendar.impl.GetProgressNs())

    def _guest_error(self, exc: CalendarError) -> GuestError:
        client = next((c for c in self._clients
                       if c.client_id is not None and c.client_id == exc.client_id), None)
        if client is not None:
            return self._client_error(client, exc)
        node = next((n for n in self._guests if n.client_id == exc.client_id), None)
        where = f"guest {node.name!r}: " if node else ""
        log = node.console_log if node else None
        hint = f" (console log: {log})" if log else ""
        return GuestError(exc.kind, exc.client_id, f"{where}{exc}{hint}",
                          node.name if node else None, log)

    @staticmethod
    def _client_error(client: ExternalClient, exc: CalendarError) -> ExternalClientError:
        tail = _last_lines(client.stderr_log, 3)
        said = f"; it said: {tail}" if tail else ""
        return ExternalClientError(
            exc.kind, exc.client_id if exc.client_id is not None else client.client_id,
            f"external client {client.name!r}: {exc}{said} (stderr: {client.stderr_log})",
            client.name, client.stderr_log)

    def _kill_guests(self) -> None:
        for node in self._guests:
            node.stop()  # a no-op for a guest that has already exited
        for client in self._clients:
            client.kill()

    # ------------------------------------------------------------------ guest commands
    # What _GuestCommands hands on: UmlNode's GuestCommands and the handles' CommandService.
    def _started(self) -> bool:
        return self._booted

    def _command_names(self, node: UmlNode) -> set[str]:
        session = self._session(node, "") if self._booted else None
        return {c.name for c in session.commands} if session else set()

    def _schedule(self, node: UmlNode, command: Command) -> None:
        self._check_can_run(f"{node.name}.run()", blocking=False)
        self._session(node, "run()").add(
            command.name or "", command.cmd, background=command.background,
            at_ns=None if command.at is None else parse_time(command.at), scheduled=True)
        node.config.commands.append(command)

    def _cmd(self, node: UmlNode, command: str, name: str,
            timeout: str | float | None) -> CommandResult:
        self._check_can_run(f"{node.name}.cmd()")
        state = self._submit(node, command, name)
        return self._wait(state, node.name, timeout)

    def _start(self, node: UmlNode, command: str, name: str) -> CommandHandle:
        self._check_can_run(f"{node.name}.start()", blocking=False)
        return CommandHandle(node.name, self._submit(node, command, name), self._commands)

    def _results(self, node: UmlNode) -> list[CommandResult] | None:
        if not self._booted or node.name not in self._run_loop().sessions:
            return None
        return [c.result() for c in self._run_loop().sessions[node.name].commands]

    def _wait(self, state: CommandState, node: str,
             timeout: str | float | None) -> CommandResult:
        self._check_can_run("wait()")
        session = self._run_loop().sessions[node]
        deadline = None if timeout is None else self.calendar.now_ns() + parse_time(timeout)
        self._advance(deadline, lambda: state.done or session.gone)
        if not state.done and not session.gone:
            # The timeout: kill it and let its end (and its output) arrive.
            session.send_signal(state, signal.SIGKILL)
            self._advance(None, lambda: state.done or session.gone)
            raise CommandTimeout(f"{node}: {state.command!r} did not end within {timeout} "
                                 "(simulated); it was killed", state.result())
        if not state.done:
            raise RuntimeError(self._gone_message(node, state))
        return state.result()

    def _signal(self, state: CommandState, node: str, signo: int) -> None:
        self._check_can_run("kill()", blocking=False)
        session = self._run_loop().sessions[node]
        if session.gone:
            raise RuntimeError(self._gone_message(node, state))
        if not state.done:
            session.send_signal(state, signo)

    def _submit(self, node: UmlNode, command: str, name: str) -> CommandState:
        self._boot()
        session = self._session(node, "cmd()")
        if session.gone:
            raise RuntimeError(self._gone_message(node.name, None))
        if session.stopped:
            raise RuntimeError(f"{node.name}: its stop_at ({node.stop_at:g} s) has passed; "
                               "it starts no more commands")
        state = session.add(name, command)
        self._run_loop().dispatch()  # sent now if the agent is ready
        return state

    def _session(self, node: UmlNode, what: str) -> GuestSession:
        try:
            return self._run_loop().sessions[node.name]
        except KeyError:
            raise RuntimeError(f"{node.name}.{what}: not a guest of this running "
                               "simulation") from None

    def _gone_message(self, node: str, state: CommandState | None) -> str:
        guest = self.nodes[node]
        what = f" before {state.command!r} ended" if state is not None else ""
        return (f"guest {node!r} has gone{what} (it powered off or its agent stopped at "
                f"{self.now:g} s of simulated time; console log: {guest.console_log})")

    # ------------------------------------------------------------------ results
    def results(self) -> "pandas.DataFrame":
        """Every guest command's results, one row each: node, name, command, returncode
        (None: did not finish), start and end (simulated seconds since boot), duration,
        background, killed (by a ``stop_at``), stdout, stderr."""
        import pandas as pd  # noqa: PLC0415  (only results need it; import stays quick)

        rows = [
            {"node": node.name, "name": r.name, "command": r.command,
             "returncode": r.returncode, "start": r.start, "end": r.end,
             "duration": r.duration, "background": r.background, "killed": r.killed,
             "stdout": r.stdout, "stderr": r.stderr}
            for node in self._guests for r in node.results()
        ]
        frame = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
        return frame.astype({"returncode": "Int64"})

    def pcaps(self) -> "pandas.DataFrame":
        """The capture files of the devices the Simulation built: node, interface, path."""
        import pandas as pd  # noqa: PLC0415

        rows = [{"node": n.name, "interface": iface, "path": path}
                for n in self.nodes.values() for iface, path in n.pcaps.items()]
        return pd.DataFrame(rows, columns=["node", "interface", "path"])

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        """Stop every guest and external client, destroy the ns-3 simulation and remove the
        sockets. Results and files in ``workdir`` stay readable."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._booted and self._failed is None:
                self._power_off()
            for node in self._guests:
                node.stop()
            self.calendar.close()
            for client in self._clients:
                client.stop()  # it has seen the calendar go: give it time to end itself
            for file in self._pcap_files:
                file.Close()  # complete on disk now, even if a script holds the devices
        finally:
            for client in self._clients:
                client.kill()  # whatever happened above: nothing is left running
            self._pin.close()
            shutil.rmtree(self._sockdir, ignore_errors=True)
            if Simulation._open is self:
                Simulation._open = None

    def _power_off(self) -> None:
        """Let every agent flush its guest's files and power it off, in simulated time."""
        try:
            with on_cpu(self.cpus):
                self._run_loop().power_off()
        except (CalendarError, KeyboardInterrupt):
            pass  # the guests are killed next; their files so far stay
        for file in self._pcap_files:
            file.Flush()

    def __enter__(self) -> "Simulation":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
