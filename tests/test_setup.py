"""A guest's set-up from one list of steps: the shell init's lines and the agent's
``setup.conf``; the agent applying the file on the host (what it may do there) and in real
guests of a Simulation (addresses, routes, MTU, sysctls, IPv6)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
from leftovers import processes_mentioning

from ns3_uml import Simulation
from ns3_uml import agent_protocol as ap
from ns3_uml.agent_protocol import Type
from ns3_uml.guest import GuestConfig, InterfaceConfig, build_init_script, guest_argv
from ns3_uml.guest.agent import ensure_agent
from ns3_uml.guest.init import AGENT_INIT_ENV
from ns3_uml.guest.setup import SETUP_CONF, setup_conf, setup_steps, shell_lines


def _agent_cfg(tmp_path: Path, **options) -> GuestConfig:
    return GuestConfig(name="g1", client_id=3, tt_socket=tmp_path / "tt.sock",
                       workdir=tmp_path / "g1", console_socket=tmp_path / "con.sock",
                       agent=tmp_path / "agent", **options)


def _network(tmp_path: Path) -> dict:
    return dict(interfaces=[InterfaceConfig(tmp_path / "s0.sock", "10.0.0.1/24", "fd00::1/64",
                                            mtu=1400),
                            InterfaceConfig(tmp_path / "s1.sock", ipv6="fd01::1/64")],
                routes=["default via 10.0.0.254", "-6 default via fd00::fe"],
                sysctls={"net.ipv4.ip_forward": "1", "net.ipv4.tcp_rmem": "4096 87380 6291456"})


def test_setup_conf_is_the_shell_inits_steps(tmp_path: Path) -> None:
    cfg = _agent_cfg(tmp_path, **_network(tmp_path))
    text = build_init_script(cfg)
    assert (tmp_path / "g1" / SETUP_CONF).read_text() == text
    assert not (tmp_path / "g1" / "init.sh").exists()  # the agent is the init
    lines = text.splitlines()
    expected = [
        "env PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "umask 022",
        "mount proc proc /proc",
        "mount-once devtmpfs devtmpfs /dev",
        f"mount hostfs hostfs /mnt/ns3uml {tmp_path / 'g1'}",
        "mkdir /mnt/ns3uml/out",
        "hostname g1",
        "ip link set dev lo up",
        "sysctl /proc/sys/net/ipv6/conf/all/accept_dad net.ipv6.conf.all.accept_dad 0",
        "device eth0 /sys/devices/virtio-uml-cmdline/virtio-uml.0/virtio*/net/eth0 "
        f"eth0: no network device for vhost-user socket {tmp_path / 's0.sock'}",
        "?eth0 sysctl /proc/sys/net/ipv6/conf/eth0/accept_dad net.ipv6.conf.eth0.accept_dad 0",
        "sysctl /proc/sys/net/ipv4/ip_forward net.ipv4.ip_forward 1",
        "sysctl /proc/sys/net/ipv4/tcp_rmem net.ipv4.tcp_rmem 4096 87380 6291456",
        "?eth0 ip link set dev eth0 mtu 1400",
        "?eth0 ip addr add 10.0.0.1/24 dev eth0",
        "?eth0 ip -6 addr add fd00::1/64 dev eth0",
        "?eth0 ip link set dev eth0 up",
        "?eth1 ip -6 addr add fd01::1/64 dev eth1",
        "?eth0 wait-link eth0 10",
        "?eth1 wait-link eth1 10",
        "ip route add default via 10.0.0.254",
        "ip -6 route add default via fd00::fe",
        "wait-port org.ns3-uml.agent 10",
    ]
    positions = [lines.index(line) for line in expected]
    assert positions == sorted(positions)
    # One list, two renderings: the shell init runs the same steps (shell_lines has a
    # rendering for every step), and a guest without agent still gets its init.sh.
    steps = setup_steps(cfg)
    assert len([line for line in lines if not line.startswith(("#", "env ", "umask "))]) \
        == len([s for s in steps if s.op != "#"]) + 1  # + wait-port
    assert "try ip -6 route add default via fd00::fe" in shell_lines(steps)
    shell = build_init_script(GuestConfig(name="g2", client_id=4, tt_socket=None,
                                          workdir=tmp_path / "g2", time_travel="inf-cpu",
                                          **_network(tmp_path)))
    assert "\n".join(shell_lines(setup_steps(_agent_cfg(tmp_path, **_network(tmp_path))))
                      ).replace("g1", "g2") in shell


def test_the_agent_is_the_init_with_its_arguments_after_dashes(tmp_path: Path,
                                                               monkeypatch) -> None:
    cfg = _agent_cfg(tmp_path, extra_args=["loglevel=7"])
    argv = guest_argv("/k/linux", cfg)
    assert f"init={tmp_path / 'agent'}" in argv
    dashes = argv.index("--")
    assert argv[dashes - 1] == "loglevel=7"  # the kernel's arguments come first
    assert argv[dashes + 1:] == ["--setup", str(tmp_path / "g1" / SETUP_CONF),
                                 "--errors", "/mnt/ns3uml/out/setup.err",
                                 "--workdir", "/mnt/ns3uml", "--umount", "/mnt/ns3uml"]
    # The benchmark's older inits: a one-line init.sh, or the shell set-up.
    monkeypatch.setenv(AGENT_INIT_ENV, "exec")
    assert f"init={tmp_path / 'g1' / 'init.sh'}" in guest_argv("/k/linux", cfg)
    build_init_script(cfg)
    assert (tmp_path / "g1" / "init.sh").read_text().startswith(
        f"#!/bin/sh\nexec {tmp_path / 'agent'} --setup ")
    monkeypatch.setenv(AGENT_INIT_ENV, "shell")
    assert "--" not in guest_argv("/k/linux", cfg)
    assert '--port "$PORT"' in build_init_script(cfg)
    monkeypatch.setenv(AGENT_INIT_ENV, "fast")
    with pytest.raises(ValueError, match="NS3_UML_AGENT_INIT"):
        build_init_script(cfg)


def test_a_route_word_with_a_space_is_refused_for_the_agent(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not one word"):
        build_init_script(_agent_cfg(tmp_path, routes=["default via '10.0.0.1 x'"]))
    with pytest.raises(ValueError, match="spans lines"):
        build_init_script(_agent_cfg(tmp_path, sysctls={"net.x": "1\n2"}))


# -- the agent applies a set-up file on the host --------------------------------------


def _setup_on_host(tmp_path: Path, text: str | None) -> tuple[list[str], list[ap.Frame]]:
    """Run the agent with ``text`` as its set-up (None: ``setup.conf`` is there already)
    over a socketpair: the errors it recorded, and the frames up to the EXIT of a RUN."""
    conf, errors = tmp_path / "setup.conf", tmp_path / "setup.err"
    if text is not None:
        conf.write_text(text)
    ours, theirs = socket.socketpair()
    with open(tmp_path / "agent.log", "ab") as log:
        proc = subprocess.Popen([str(ensure_agent()), "--setup", str(conf), "--errors",
                                 str(errors), "--fd", str(theirs.fileno()),
                                 "--workdir", str(tmp_path)],
                                pass_fds=[theirs.fileno()], stderr=log)
    theirs.close()
    reader, frames = ap.FrameReader(), []
    try:
        ours.settimeout(30)
        ours.sendall(ap.run_frame(1, "echo $TERM $HOME; umask"))
        while not any(f.type == Type.EXIT for f in frames):
            data = ours.recv(1 << 16)
            assert data, "the agent went away"
            frames += reader.feed(data)
    finally:
        ours.close()
        assert proc.wait(timeout=30) == 0
    lines = errors.read_text().splitlines() if errors.exists() else []
    return lines, frames


def test_the_agent_applies_steps_and_records_what_fails(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("old\n")
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "virtio7").mkdir()
    errors, frames = _setup_on_host(tmp_path, "\n".join([
        "# a comment, and an empty line",
        "",
        "env TERM dumb and more",
        "env HOME /nowhere",
        "umask 027",
        f"mkdir {tmp_path}/x/y {tmp_path}/z",
        f"chmod 1777 {tmp_path}/z",
        f"symlink {tmp_path}/x {tmp_path}/link",
        f"sysctl {a} my.tcp_rmem 4096 87380 6291456",
        f"sysctl {tmp_path}/none/x net.x 1",
        f"device eth0 {tmp_path}/dev/virtio*/ eth0: no network device for s0",
        f"device eth1 {tmp_path}/dev/net*/ eth1: no network device for s1",
        f"?eth0 sysctl {b} guarded.found 1",
        f"?eth1 sysctl {a} guarded.missing 2",
        "wait-link nosuchdev 0",
        "ip link set dev nosuchdev0 up",
        "ip route add 10.99.0.0/16 bogus words",  # not the agent's: `ip` says why
        "frobnicate",
        "mkdir  two-spaces",
        "sysctl too few",
        "wait-link eth0 forever",
        "?",
    ]) + "\n")
    assert a.read_text() == "4096 87380 6291456\n"
    assert not b.exists()  # a sysctl is written, never created
    assert (tmp_path / "x" / "y").is_dir() and (tmp_path / "link").resolve() == tmp_path / "x"
    assert (tmp_path / "z").stat().st_mode & 0o7777 == 0o1777
    conf = tmp_path / "setup.conf"
    assert errors[:5] == [
        f"sysctl net.x=1: cannot write {tmp_path}/none/x",
        "eth1: no network device for s1",
        f"sysctl guarded.found=1: cannot write {b}",
        "nosuchdev did not come up",
        'ip link set dev nosuchdev0 up: Cannot find device "nosuchdev0"',
    ]
    assert errors[5].startswith("ip route add 10.99.0.0/16 bogus words: ")
    assert errors[6:] == [
        f"{conf} line 18: cannot do 'frobnicate' with 0 arguments",
        f"{conf} line 19: words are separated by one space, at most 16",
        f"{conf} line 20: cannot do 'sysctl' with 2 arguments",
        f"{conf} line 21: cannot do 'wait-link' with 2 arguments",
        f"{conf} line 22: a guard without a device or a step",
    ]
    # After all that, READY and the commands as ever, in the set-up's environment.
    assert frames[0].type == Type.READY
    out = b"".join(f.payload for f in frames if f.type == Type.STDOUT).decode()
    assert out == "dumb and more /nowhere\n0027\n"


def test_an_unreadable_setup_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "setup.conf").mkdir()  # read() fails on a directory
    errors, frames = _setup_on_host(tmp_path, None)
    assert errors == [f"cannot read the set-up file {tmp_path / 'setup.conf'}: "
                      "Is a directory"]
    assert frames[0].type == Type.READY


# -- real guests: the agent did the set-up ----------------------------------------------


def test_real_guests_get_addresses_routes_mtu_and_sysctls_from_the_agent(uml_kernel,
                                                                         tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a", sysctls={"net.ipv4.ip_forward": "1",
                                       "net.ipv4.tcp_rmem": "4096 87380 6291456",
                                       "net.nosuch.key": "1"})
        b = sim.add_node("b")
        sim.point_to_point(a, b, rate="100Mbps", delay="1ms")
        a_if, b_if = a.config.interfaces[0], b.config.interfaces[0]
        a_if.mtu, a_if.ipv6, b_if.ipv6 = 1400, "fd00::1/64", "fd00::2/64"
        a.add_route("10.9.0.0/24", via=b.ip)
        a.routes.extend(["-6 fd09::/64 via fd00::2 metric 7", "-6 default via fd00::2 dev eth0"])
        sim.run(until="2s")
        link = a.cmd("ip -o link show eth0; ip -br addr show eth0; ip route; ip -6 route; "
                     "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv4/tcp_rmem "
                     "/proc/sys/net/ipv6/conf/eth0/accept_dad /proc/sys/kernel/hostname")
        assert link.returncode == 0, link.stderr
        out = link.stdout
        assert " mtu 1400 " in out.splitlines()[0]
        addr = out.splitlines()[1].split()
        assert addr[:2] == ["eth0", "UP"] and addr[2].startswith(f"{a.ip}/")
        assert addr[3] == "fd00::1/64"
        assert f"10.9.0.0/24 via {b.ip} dev eth0" in out
        assert "fd09::/64 via fd00::2 dev eth0 metric 7" in out
        assert "default via fd00::2 dev eth0" in out
        assert out.splitlines()[-4:] == ["1", "4096\t87380\t6291456", "0", "a"]
        ping6 = a.cmd("ping -6 -c 1 fd00::2")
        assert ping6.returncode == 0, ping6.stdout + ping6.stderr
        errors = (tmp_path / "run" / "a" / "out" / "setup.err").read_text().splitlines()
        assert errors == ["sysctl net.nosuch.key=1: cannot write /proc/sys/net/nosuch/key"]
        assert not (tmp_path / "run" / "b" / "out" / "setup.err").exists()
    assert not processes_mentioning(tmp_path / "run")
