"""A real UML guest: boot, init, recorded results, power-off, clean-up; its
network set-up, commands at simulated times, and deterministic randomness."""

from __future__ import annotations

import array
import os
import socket
import struct
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ns3_uml.guest import (
    ADDR_NO_RANDOMIZE,
    GUEST_WORKDIR,
    Command,
    CommandResult,
    GuestConfig,
    GuestProcess,
    InterfaceConfig,
    build_init_script,
    guest_argv,
    guest_seed,
    process_group_members,
)

BOOT_TIMEOUT = 120  # wall seconds; a healthy boot-run-poweroff takes ~1 s


def _cfg(tmp_path: Path, commands: list[Any], name: str = "g1",
         **options: Any) -> GuestConfig:
    return GuestConfig(name=name, client_id=7, tt_socket=None, workdir=tmp_path / name,
                       commands=commands, time_travel="inf-cpu", **options)


def _run(cfg: GuestConfig, kernel: Path) -> tuple[list[CommandResult], GuestProcess]:
    """Boot ``cfg`` to its power-off; its results and the (reaped) guest."""
    with GuestProcess(cfg, kernel) as guest:
        rc = guest.wait(timeout=BOOT_TIMEOUT)
        console = guest.console_log.read_text(errors="replace")
        assert rc == 0 and guest.finished(), console
        assert "Kernel panic" not in console and "WARNING:" not in console, console
        return guest.read_outputs(), guest


def test_argv_default_and_override(tmp_path: Path) -> None:
    cfg = GuestConfig(name="a", client_id=0x1A, tt_socket=tmp_path / "tt.sock",
                      workdir=tmp_path / "a", extra_args=["loglevel=7"])
    argv = guest_argv("/k/linux", cfg)
    assert argv[0] == "/k/linux"
    assert "mem=64M" in argv
    assert f"time-travel=ext:26:{tmp_path / 'tt.sock'}" in argv
    assert f"init={tmp_path / 'a' / 'init.sh'}" in argv
    assert {"rootfstype=hostfs", "rootflags=/", "ro", "con0=null,fd:1"} <= set(argv)
    assert argv[-1] == "loglevel=7"
    assert "time-travel=inf-cpu" in guest_argv("/k/linux", cfg, time_travel="inf-cpu")
    with pytest.raises(ValueError):
        guest_argv("/k/linux", GuestConfig("b", 1, None, tmp_path / "b"))
    with pytest.raises(ValueError, match="whitespace"):
        guest_argv("/k/linux", GuestConfig("c", 1, tmp_path / "s", tmp_path / "with space"))


def test_init_script(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ["echo 'quoted' \"x\"", "exit 3"])
    text = build_init_script(cfg)
    path = tmp_path / "g1" / "init.sh"
    assert path.read_text() == text and os.access(path, os.X_OK)
    assert text.startswith("#!/bin/sh\n")
    assert f"mount -t hostfs -o {tmp_path / 'g1'} hostfs {GUEST_WORKDIR}" in text.replace(
        "mnt ", "mount ")
    # The script must be valid sh, and the quoting must survive.
    subprocess.run(["sh", "-n", str(path)], check=True)
    assert """run 0 'echo '"'"'quoted'"'"' "x"'\n""" in text
    assert "run 1 'exit 3'\n" in text


def _wait_gone(pgid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := process_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# The first test to need the kernel may have to build it (~5 min on 2 cores).
@pytest.mark.timeout(3600)
def test_boot_run_poweroff(uml_kernel: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ["cat /proc/uptime", "sleep 2", "uname -r",
                          "echo hi >&2; exit 3"])
    with GuestProcess(cfg, uml_kernel) as guest:
        pid = guest.pid
        assert pid is not None
        rc = guest.wait(timeout=BOOT_TIMEOUT)
        console = guest.console_log.read_text(errors="replace")
        assert rc == 0, console
        assert guest.returncode == 0
        assert guest.finished(), console
        results = guest.read_outputs()
    assert not _wait_gone(pid), "processes of the guest left running"
    assert [r.returncode for r in results] == [0, 0, 0, 3], console
    up0 = float(results[0].stdout.split()[0])
    assert results[1].duration is not None and results[1].duration >= 2.0
    assert results[2].start is not None and results[2].start - up0 >= 2.0
    assert results[2].stdout.startswith("6.12"), results[2]
    assert results[3].stderr == "hi\n" and results[3].stdout == ""
    assert "Kernel panic" not in console
    # UML's run directory stays inside the workdir and is removed on power-off.
    assert not (cfg.workdir_path / "uml").exists()


def test_kill_running_guest(uml_kernel: Path, tmp_path: Path) -> None:
    # A busy loop never ends, even in inf-cpu mode: the guest must be killed.
    cfg = _cfg(tmp_path, ["echo started > started; while :; do :; done"], name="busy")
    guest = GuestProcess(cfg, uml_kernel)
    guest.start()
    try:
        pid = guest.pid
        assert pid is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not (cfg.workdir_path / "started").exists():
            assert time.monotonic() < deadline, guest.console_log.read_text()
            assert guest.poll() is None, guest.console_log.read_text()
            time.sleep(0.05)
        # Address-space randomisation is off for the guest (setarch -R).
        persona = int((Path(f"/proc/{pid}/personality").read_text()), 16)
        assert persona & ADDR_NO_RANDOMIZE
        # The parent's own personality is untouched.
        own = int(Path("/proc/self/personality").read_text(), 16)
        assert not own & ADDR_NO_RANDOMIZE
        members = process_group_members(pid)
        assert pid in members and len(members) >= 2  # UML forks helpers
        with pytest.raises(subprocess.TimeoutExpired):
            guest.wait(timeout=0.2)
    finally:
        guest.kill()
    assert guest.returncode == -9
    assert not _wait_gone(pid)
    guest.kill()  # idempotent


def test_context_exit_kills(uml_kernel: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ["while :; do :; done"], name="ctx")
    with pytest.raises(RuntimeError, match="boom"):
        with GuestProcess(cfg, uml_kernel) as guest:
            pid = guest.pid
            assert pid is not None
            time.sleep(0.5)
            raise RuntimeError("boom")
    assert guest.returncode is not None
    assert not _wait_gone(pid)


# -- command line, init script (no guest) ---------------------------------------


def test_argv_interfaces_seed_and_clock(tmp_path: Path) -> None:
    s0, s1 = tmp_path / "s0.sock", tmp_path / "s1.sock"
    cfg = GuestConfig(name="r", client_id=3, tt_socket=tmp_path / "tt.sock",
                      workdir=tmp_path / "r", seed=42, extra_args=["loglevel=7"],
                      interfaces=[InterfaceConfig(s0, "10.0.0.1/24"), InterfaceConfig(s1)])
    argv = guest_argv("/k/linux", cfg)
    # One device per interface, in order: they become eth0, eth1.
    assert [a for a in argv if a.startswith("virtio_uml.")] == [
        f"virtio_uml.device={s0}:1", f"virtio_uml.device={s1}:1"]
    assert "ns3uml.seed=42" in argv
    # In ext mode the wall clock is the calendar's (GET_TOD).
    assert not [a for a in argv if a.startswith("time-travel-start")]
    assert argv[-1] == "loglevel=7"  # the user's arguments come last
    # Without a calendar it starts at 1970, never at the host's clock.
    assert "time-travel-start=0" in guest_argv("/k/linux", cfg, time_travel="inf-cpu")
    epoch = GuestConfig("e", 1, tmp_path / "tt.sock", tmp_path / "e",
                        tod_epoch_ns=1_704_067_200_000_000_000)
    assert "time-travel-start=1704067200000000000" in guest_argv("/k/linux", epoch)


def test_seed_defaults_and_validation(tmp_path: Path) -> None:
    a = GuestConfig("a", 1, None, tmp_path / "a")
    assert a.seed == guest_seed(0, "a")
    # Stable across runs and Python versions (not hash()).
    assert guest_seed(0, "a") == 0xDDCE24DD574869BF
    assert GuestConfig("b", 1, None, tmp_path / "b").seed != a.seed
    assert guest_seed(1, "a") != guest_seed(0, "a")
    assert GuestConfig("a", 1, None, tmp_path / "a", seed=2**64 - 1).seed == 2**64 - 1
    for bad in (-1, 2**64):
        with pytest.raises(ValueError, match="64-bit"):
            GuestConfig("a", 1, None, tmp_path / "a", seed=bad)
    with pytest.raises(ValueError, match="':'"):
        InterfaceConfig(tmp_path / "a:b.sock")  # the driver splits at the first colon
    with pytest.raises(ValueError, match="whitespace"):
        InterfaceConfig(tmp_path / "a b.sock")
    with pytest.raises(ValueError):
        InterfaceConfig(tmp_path / "s", ipv4="10.0.0.300/24")
    with pytest.raises(ValueError):
        InterfaceConfig(tmp_path / "s", ipv6="10.0.0.1/24")
    with pytest.raises(ValueError, match="mtu"):
        InterfaceConfig(tmp_path / "s", mtu=10)


def test_init_script_network(tmp_path: Path) -> None:
    s0, s1 = tmp_path / "s0.sock", tmp_path / "s1.sock"
    cfg = _cfg(tmp_path, ["true"], interfaces=[
        InterfaceConfig(s0, "10.0.0.1/24", "fd00::1/64", mtu=1400),
        InterfaceConfig(s1, ipv6="fd01::1/64"),
    ], routes=["default via 10.0.0.254", "-6 default via fd00::fe", "10.1.0.0/24 via 10.0.0.2"],
        sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.conf.eth0/100.forwarding": 1})
    text = build_init_script(cfg)
    subprocess.run(["sh", "-n", str(tmp_path / "g1" / "init.sh")], check=True)
    lines = text.splitlines()
    # In this order: IPv6 defaults, per-interface defaults, the user's sysctls (which
    # may override them), MTU and addresses, link up, wait until up, then the routes.
    expected = [
        "sc /proc/sys/net/ipv6/conf/all/accept_dad 0 net.ipv6.conf.all.accept_dad",
        "sc /proc/sys/net/ipv6/conf/default/router_solicitations 0 "
        "net.ipv6.conf.default.router_solicitations",
        "if [ -e /sys/devices/virtio-uml-cmdline/virtio-uml.0/virtio*/net/eth0 ]; then",
        "  sc /proc/sys/net/ipv6/conf/eth0/accept_dad 0 net.ipv6.conf.eth0.accept_dad",
        f"  fail 'eth0: no network device for vhost-user socket {s0}'",
        "if [ -e /sys/devices/virtio-uml-cmdline/virtio-uml.1/virtio*/net/eth1 ]; then",
        "  sc /proc/sys/net/ipv6/conf/eth1/router_solicitations 0 "
        "net.ipv6.conf.eth1.router_solicitations",
        "sc /proc/sys/net/ipv4/ip_forward 1 net.ipv4.ip_forward",
        "sc /proc/sys/net/ipv4/conf/eth0.100/forwarding 1 net.ipv4.conf.eth0/100.forwarding",
        "  try ip link set dev eth0 mtu 1400",
        "  try ip addr add 10.0.0.1/24 dev eth0",
        "  try ip -6 addr add fd00::1/64 dev eth0",
        "  try ip link set dev eth0 up",
        "  try ip -6 addr add fd01::1/64 dev eth1",
        "  try ip link set dev eth1 up",
        '[ -n "$have_eth0" ] && { link_up eth0 || fail "eth0 did not come up"; }',
        '[ -n "$have_eth1" ] && { link_up eth1 || fail "eth1 did not come up"; }',
        "try ip route add default via 10.0.0.254",
        "try ip -6 route add default via fd00::fe",
        "try ip route add 10.1.0.0/24 via 10.0.0.2",
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions)
    assert "try ip link set dev eth1 mtu" not in text  # no MTU given: the device's
    assert positions[-1] < lines.index("# The commands, in a session of their own.")
    for key in ("net..x", "net.ipv4 x", "../x"):
        with pytest.raises(ValueError, match="sysctl"):
            build_init_script(_cfg(tmp_path, [], sysctls={key: "1"}))


def test_init_script_commands(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [Command("iperf3 -s", at=0.5, background=True, name="server"),
                          "echo 'x'", Command("ping -c 1 h", at=2.25)], stop_at=9)
    text = build_init_script(cfg)
    subprocess.run(["sh", "-n", str(tmp_path / "g1" / "init.sh")], check=True)
    assert "  wait_until 500000000\n  run server 'iperf3 -s' &\n" in text
    assert "  run 1 'echo '\"'\"'x'\"'\"''\n" in text
    assert "  wait_until 2250000000\n  run 2 'ping -c 1 h'\n" in text
    assert "if [ \"$1\" = --stop ]; then\n  wait_until 9000000000\n" in text
    assert "  for n in server 1 2; do\n" in text
    assert [c.name for c in cfg.command_list()] == ["server", "1", "2"]
    for commands in ([Command("a", name="x"), Command("b", name="x")],
                     ["a", Command("b", name="0")], [Command("a", name="a/b")],
                     [Command("a", name="-a")], [Command("a", at=-1)]):
        with pytest.raises(ValueError):
            build_init_script(_cfg(tmp_path, commands))
    # Without stop_at there is no timer.
    assert "--stop" not in build_init_script(_cfg(tmp_path, ["true"]))


# -- real guests ------------------------------------------------------------------


def test_commands_at_times_background_and_stop(uml_kernel: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, [
        Command("cat /proc/uptime", at=2.5, name="late"),
        Command("sleep 2", background=True, name="bg1"),
        Command("sleep 2", background=True, name="bg2"),
        Command("sleep 2; cat /proc/uptime", name="fg"),
        Command("echo started; sleep 100; echo never", background=True, name="long"),
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/tcp_congestion_control "
        "/proc/sys/net/ipv6/conf/all/accept_dad",
        Command("echo never", at=20, name="after-stop"),
    ], stop_at=10, sysctls={"net.ipv4.ip_forward": "1",
                            "net.ipv4.tcp_congestion_control": "bbr"})
    results, guest = _run(cfg, uml_kernel)
    r = {x.name: x for x in results}
    assert guest.setup_errors() == []
    # Starts at its simulated time, to the microsecond.
    late = r["late"]
    assert late.start is not None and 2.5 <= late.start < 2.5 + 1e-3
    assert late.stdout.startswith("2.50 ") and late.returncode == 0
    # Two background sleeps and a foreground one run side by side: 2 s for all three.
    for name in ("bg1", "bg2", "fg"):
        assert r[name].returncode == 0 and r[name].background == (name != "fg")
        assert r[name].start == pytest.approx(2.5, abs=1e-3)
        assert r[name].end == pytest.approx(4.5, abs=1e-3)
    assert r["fg"].stdout.startswith("4.50 ")
    # stop_at kills what still runs, and says so.
    long = r["long"]
    assert long.killed and long.returncode is None and long.stdout == "started\n"
    assert long.start == pytest.approx(4.5, abs=1e-3)
    assert long.end == pytest.approx(10.0, abs=1e-3)
    assert r["5"].stdout == "1\nbbr\n0\n" and not r["5"].killed
    # What was to start after the deadline never started.
    never = r["after-stop"]
    assert never.start is None and never.returncode is None and not never.killed
    assert not any(x.killed for x in results if x.name != "long")
    assert guest.result("late") == late
    console = guest.console_log.read_text()
    assert "[   10.0" in console and "reboot: Power down" in console


_PROBE = [
    "head -c 64 /dev/urandom | od -x",
    "cat /proc/sys/kernel/random/boot_id",
    "cat /proc/sys/kernel/random/uuid",
    # Userspace: getrandom(), the hash seed, a kernel-chosen port, TCP over loopback.
    "python3 -c '"
    "import os, socket; print(os.getrandom(16).hex(), hash(\"ns3-uml\")); "
    "s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); "
    "c = socket.create_connection(s.getsockname()); print(s.getsockname()[1], "
    "c.getsockname()[1])'",
    # Past the crng's 60 s reseed interval, with interrupts in between.
    "sleep 75; head -c 32 /dev/urandom | od -x",
]


def test_deterministic_randomness(uml_kernel: Path, tmp_path: Path) -> None:
    def boot(seed: int, where: str) -> list[str]:
        # Same name (hostname) for all; different host paths must not matter.
        cfg = GuestConfig(name="det", client_id=1, tt_socket=None,
                          workdir=tmp_path / where, time_travel="inf-cpu", seed=seed,
                          commands=[*_PROBE, "dmesg | grep 'random:'"])
        results, _ = _run(cfg, uml_kernel)
        assert all(r.returncode == 0 for r in results), results
        return [r.stdout for r in results]

    # Side by side, so that host timing differs between the runs.
    with ThreadPoolExecutor(3) as pool:
        first, second, other = pool.map(boot, [1, 1, 2], ["a", "b-somewhere-else", "c"])
    assert first == second
    assert all(x != y for x, y in zip(first[:-1], other[:-1])), (first, other)
    assert len(first[0].split()) == 4 * 9 + 1 and first[1] != first[2]
    # The crng is ready at boot: nothing ever waits for entropy.
    assert first[-1] == other[-1] == "[    0.000000] random: crng init done\n"


class StubVhostUserNet:
    """Just enough of a vhost-user virtio-net back-end for a guest to probe it."""

    GET_FEATURES, GET_VRING_BASE, GET_PROTOCOL_FEATURES, GET_QUEUE_NUM = 1, 11, 15, 17
    # VIRTIO_F_VERSION_1, VHOST_USER_F_PROTOCOL_FEATURES; no MAC, no config space.
    FEATURES = 1 << 32 | 1 << 30
    # SLAVE_REQ: without it virtio_uml (6.12) requests the vring irqs as irq 0,
    # which the timer holds, and the probe fails.
    PROTOCOL_FEATURES = 1 << 5

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.requests: list[int] = []
        self._fds: list[int] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _recv(self, conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            msg, anc, _, _ = conn.recvmsg(n - len(data), socket.CMSG_SPACE(8 * 4))
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    # Kept open: a closed call pipe reads as EOF, an endless interrupt.
                    self._fds += array.array("i", raw[: len(raw) - len(raw) % 4])
            if not msg:
                raise EOFError
            data += msg
        return data

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            try:
                while True:
                    req, _flags, size = struct.unpack("<III", self._recv(conn, 12))
                    payload = self._recv(conn, size) if size else b""
                    self.requests.append(req)
                    reply = {
                        self.GET_FEATURES: struct.pack("<Q", self.FEATURES),
                        self.GET_PROTOCOL_FEATURES: struct.pack("<Q", self.PROTOCOL_FEATURES),
                        self.GET_QUEUE_NUM: struct.pack("<Q", 1),
                        self.GET_VRING_BASE: payload[:4] + b"\0\0\0\0",
                    }.get(req)
                    if reply is not None:  # flags: REPLY | version 1
                        conn.sendall(struct.pack("<III", req, 0x5, len(reply)) + reply)
            except (EOFError, OSError):
                pass
            finally:
                for fd in self._fds:
                    os.close(fd)

    def close(self) -> None:
        self.server.close()
        self._thread.join(10)
        self.path.unlink(missing_ok=True)


def test_interfaces_on_vhost_user_devices(uml_kernel: Path, tmp_path: Path) -> None:
    s0, s1, missing = tmp_path / "s0.sock", tmp_path / "s1.sock", tmp_path / "none.sock"
    stubs = [StubVhostUserNet(s0), StubVhostUserNet(s1)]
    try:
        cfg = _cfg(tmp_path, [
            "readlink /sys/class/net/eth0 /sys/class/net/eth1",
            "ip -o link show eth0; ip -o link show eth1",
            "ip -br addr show eth0; ip -br addr show eth1",
            "ip route; ip -6 route show default",
            "cat /proc/sys/net/ipv6/conf/eth0/accept_dad "
            "/proc/sys/net/ipv6/conf/eth1/router_solicitations "
            "/sys/class/net/eth0/operstate /sys/class/net/eth1/operstate",
        ], interfaces=[
            InterfaceConfig(s0, "10.0.0.1/24", "fd00::1/64", mtu=1400),
            InterfaceConfig(s1, "10.1.0.1/16"),
            InterfaceConfig(missing, "10.9.0.1/24"),
        ], routes=["10.2.0.0/24 via 10.0.0.2", "default via 10.1.0.254",
                   "-6 default via fd00::fe"])
        results, guest = _run(cfg, uml_kernel)
    finally:
        for stub in stubs:
            stub.close()
    out = [r.stdout for r in results]
    assert all(r.returncode == 0 for r in results), results
    # Command-line order is probe order: device i is eth<i>.
    assert out[0].split() == [
        f"../../devices/virtio-uml-cmdline/virtio-uml.{i}/virtio{i}/net/eth{i}"
        for i in (0, 1)]
    assert " mtu 1400 " in out[1].splitlines()[0] and " mtu 1500 " in out[1].splitlines()[1]
    eth0, eth1 = (line.split() for line in out[2].splitlines())
    assert eth0[:4] == ["eth0", "UP", "10.0.0.1/24", "fd00::1/64"]
    assert eth1[:3] == ["eth1", "UP", "10.1.0.1/16"]
    assert "default via 10.1.0.254 dev eth1" in out[3]
    assert "10.2.0.0/24 via 10.0.0.2 dev eth0" in out[3]
    assert "default via fd00::fe dev eth0" in out[3]
    assert out[4].split() == ["0", "0", "up", "up"]
    # The interface without a device is reported, the others are not disturbed.
    assert guest.setup_errors() == [f"eth2: no network device for vhost-user socket {missing}"]
    assert all(stub.requests[:3] == [3, 1, 15] for stub in stubs)  # SET_OWNER, GET_*
