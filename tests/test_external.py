"""External time-travel clients and devices served by other processes, with real guests:
the reference client (``ns3_uml.testing.tt_client``) joins a Simulation as a process of its
own, as wmediumd would; ``ns3_uml.testing.external_device`` serves a guest's device from
another process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from leftovers import processes_mentioning

from ns3_uml.external import listening_problem
from ns3_uml.guest import GuestConfig, InterfaceConfig, VhostUserDevice, guest_argv
from ns3_uml.simulation import ExternalClientError, GuestError, Simulation
from ns3_uml.vhost_protocol import VIRTIO_ID_MAC80211_HWSIM, VIRTIO_ID_NET

TICK_NS = 250_000_000
TICKS = 10
CLIENT_ID = 1000
PING = "ping -c 3 -i 0.5 10.0.0.2"


def _tt_client(sim: Simulation, out: Path, steps: list[dict[str, Any]],
               client_id: int | None = CLIENT_ID) -> list[str]:
    """The reference client's command line: it joins ``sim``'s calendar and runs ``steps``."""
    argv = [sys.executable, "-m", "ns3_uml.testing.tt_client", "--socket",
            str(sim.calendar_socket), "--script", json.dumps(steps), "--out", str(out),
            "--timeout", "60"]
    return argv + (["--id", str(client_id)] if client_id is not None else [])


def _pinging_pair(sim: Simulation) -> Any:
    a = sim.add_node("a", run=[PING])
    sim.add_node("b")
    sim.point_to_point("a", "b", rate="100Mbps", delay="5ms")
    return a


def _run_pair(run: Path, with_client: bool) -> dict[str, Any]:
    """Two guests ping over 5 ms, with or without a client waking every 250 ms."""
    out = run / "ticker.json"
    with Simulation(workdir=run, seed=1) as sim:
        a = _pinging_pair(sim)
        if with_client:
            client = sim.add_client(
                _tt_client(sim, out, [{"op": "repeat", "count": TICKS,
                                       "steps": [{"op": "sleep", "ns": TICK_NS}]}]),
                name="ticker", client_id=CLIENT_ID)
        summary = sim.run(until="3s")
        ping = a.result("ping")
        sockets = list(sim.socket_dir.iterdir())
    result: dict[str, Any] = {"ping": ping, "sockets": sockets, "summary": summary,
                              "pcaps": {p.name: p.read_bytes() for p in (run / "pcap").iterdir()}}
    if with_client:
        assert client.returncode is not None  # reaped
        result["client"] = client
        result["ticker"] = json.loads(out.read_text())
    assert not processes_mentioning(run)
    assert not any(p.exists() for p in sockets)
    return result


def test_an_external_client_keeps_its_times_and_changes_nothing(uml_kernel, tmp_path):
    alone = _run_pair(tmp_path / "alone", with_client=False)
    first = _run_pair(tmp_path / "first", with_client=True)
    second = _run_pair(tmp_path / "second", with_client=True)

    # It joined with its id, and woke exactly when it asked, whether by a RUN or running
    # freely up to an event of the guests'.
    assert first["client"].client_id == CLIENT_ID
    ids = [c["id"] for c in first["summary"]["clients"]]
    assert ids == [1, 2, CLIENT_ID]
    ticker = first["ticker"]
    woke = [e["calendar"] for e in ticker["log"] if e["event"] == "timer"]
    assert woke == [TICK_NS * k for k in range(1, TICKS + 1)]
    assert ticker["offset"] == 0  # admitted at time 0, before the guests
    # It ran its script to the end and then left, as a guest that powers off: no error.
    assert ticker["status"] == "ok"
    assert first["client"].stdout_log.exists() and first["client"].stderr_log.exists()

    # The guests did not notice: the same RTTs, the same frames at the same times.
    ping = first["ping"]
    assert ping.returncode == 0, ping.stderr
    assert "3 received" in ping.stdout and "rtt min/avg/max/mdev = 10.01" in ping.stdout
    assert first["pcaps"] == alone["pcaps"]
    # And a run with it repeats bit for bit, its times too.
    assert first["pcaps"] == second["pcaps"]
    assert woke == [e["calendar"] for e in second["ticker"]["log"] if e["event"] == "timer"]
    assert ticker["runs"] == second["ticker"]["runs"]


def test_an_external_client_killed_mid_run_is_named(uml_kernel, tmp_path):
    run = tmp_path / "run"
    with Simulation(workdir=run, seed=1) as sim:
        a = _pinging_pair(sim)
        # Without an id it sends UML's default, -1, as wmediumd does.
        client = sim.add_client(
            _tt_client(sim, run / "ticker.json",
                       [{"op": "repeat", "count": 1000, "steps": [{"op": "sleep", "ns": 10**8}]}],
                       client_id=None), name="ticker")
        sim.at("1.5s", lambda: os.kill(client.pid, signal.SIGKILL))
        with pytest.raises(ExternalClientError) as err:
            sim.run(until="10s")
        sockets = list(sim.socket_dir.iterdir())
    e = err.value
    assert isinstance(e, GuestError) and e.kind == "crash"
    assert e.client == "ticker" and e.client_id == client.client_id == -1
    assert "external client 'ticker'" in str(e) and "killed by signal 9" in str(e)
    assert str(client.stderr_log) in str(e) and e.log == client.stderr_log
    # The guests were stopped, what was written stays, nothing is left behind.
    assert a.process.poll() is not None and client.returncode == -signal.SIGKILL
    assert (run / "pcap" / "p2p0-a.pcap").stat().st_size > 24
    assert not processes_mentioning(run)
    assert not any(p.exists() for p in sockets)


def _boot_error(run: Path, argv: Callable[[Simulation], list[str]],
                **options: Any) -> ExternalClientError:
    """The error of a Simulation whose external client (``argv(sim)``) fails before the
    guests boot."""
    with Simulation(workdir=run, seed=1) as sim:
        a = sim.add_node("a", run=["true"])
        client = sim.add_client(argv(sim), name="dev", **options)
        started = time.monotonic()
        with pytest.raises(ExternalClientError) as err:
            sim.run(until="1s")
        took = time.monotonic() - started
    assert a.process is None  # no guest booted
    assert client.returncode is not None and not processes_mentioning(run)
    assert err.value.client == "dev" and "external client 'dev'" in str(err.value)
    assert took < 20, f"the error took {took:.1f} s"
    return err.value


def test_an_external_client_that_exits_early_or_never_joins_is_named(uml_kernel, tmp_path):
    # Exits at once (a bad option): its message is in the error, without waiting.
    exits = _boot_error(tmp_path / "exits", lambda sim: [
        sys.executable, "-c", "import sys; sys.exit('dev: unknown option -q')"])
    assert exits.kind == "crash" and "exited with status 1 before it joined" in str(exits)
    assert "dev: unknown option -q" in str(exits)
    # Runs but never connects.
    never = _boot_error(tmp_path / "never", lambda sim: [
        sys.executable, "-c", "import time; time.sleep(100)", str(tmp_path / "never")],
        connect_timeout=1.0)
    assert never.kind == "timeout" and "within 1" in str(never)


def test_an_external_client_must_send_the_id_it_was_given(uml_kernel, tmp_path):
    run = tmp_path / "run"
    sleep = [{"op": "sleep", "ns": 10**9}]
    err = _boot_error(run, lambda sim: _tt_client(sim, run / "out.json", sleep, client_id=7),
                      client_id=CLIENT_ID)
    assert err.kind == "setup" and "sent START id 7, not the client_id 1000" in str(err)


def test_client_ids_and_names_are_checked_where_given(tmp_path):
    with Simulation(workdir=tmp_path / "run") as sim:
        sim.add_node("a")
        with pytest.raises(ValueError, match="client id 1 is guest 'a'"):
            sim.add_client(["true"], name="dev", client_id=1)
        sim.add_client(["true"], name="dev", client_id=2)
        with pytest.raises(ValueError, match="client id 2 is external client 'dev'"):
            sim.add_node("b")
        with pytest.raises(ValueError, match="already a node or client named 'dev'"):
            sim.add_node("dev")
        with pytest.raises(ValueError, match="already a node or client named 'a'"):
            sim.add_client(["true"], name="a")
        assert sim.calendar_socket.exists() and len(os.fsencode(sim.socket_dir)) < 40


# ---------------------------------------------------------------- devices of other processes

def test_external_devices_come_last_on_the_command_line(tmp_path):
    cfg = GuestConfig(name="a", client_id=1, tt_socket=tmp_path / "cal.sock",
                      workdir=tmp_path / "a", interfaces=[InterfaceConfig(tmp_path / "n.sock")],
                      console_socket=tmp_path / "con.sock", agent=tmp_path / "agent",
                      vhost_user_devices=[VhostUserDevice(tmp_path / "hwsim.sock",
                                                          VIRTIO_ID_MAC80211_HWSIM)])
    devices = [w for w in guest_argv("linux", cfg) if w.startswith("virtio_uml.device=")]
    assert devices == [f"virtio_uml.device={tmp_path}/n.sock:1",
                       f"virtio_uml.device={tmp_path}/con.sock:3",
                       f"virtio_uml.device={tmp_path}/hwsim.sock:29"]
    with pytest.raises(ValueError, match="at most 107 bytes"):
        VhostUserDevice(Path("/" + "x" * 120), VIRTIO_ID_NET)
    with pytest.raises(ValueError, match="virtio device id"):
        VhostUserDevice(tmp_path / "x.sock", 0)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path, for unix sockets."""
    path = Path(tempfile.mkdtemp(prefix="ns3-uml-test-"))
    yield path
    for p in path.iterdir():
        p.unlink()
    path.rmdir()


def test_a_device_nobody_serves_is_refused_before_boot(uml_kernel, tmp_path, short_dir):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(short_dir / "stale.sock"))  # bound, never listening
    stale.close()
    for path, problem in [
            (short_dir / "none.sock", "there is no socket there"),
            (short_dir / "stale.sock", "a socket file, but no process listens on it")]:
        with Simulation(workdir=tmp_path / path.stem, seed=1) as sim:
            a = sim.add_node("a", run=["true"])
            a.add_vhost_user_device(path, VIRTIO_ID_MAC80211_HWSIM)
            with pytest.raises(GuestError) as err:
                sim.run(until="1s")
        assert err.value.kind == "setup" and err.value.node == "a"
        assert f"its vhost-user device 29 at {path}: " in str(err.value)
        assert problem in str(err.value)
        assert a.process is None


def test_a_guest_probes_a_device_another_process_serves(uml_kernel, tmp_path, short_dir):
    path, mac = short_dir / "net.sock", "02:ee:00:00:00:01"
    device = subprocess.Popen(
        [sys.executable, "-m", "ns3_uml.testing.external_device", "--socket", str(path),
         "--mac", mac, "--client-id", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        deadline = time.monotonic() + 60
        while listening_problem(path) is not None:
            assert device.poll() is None, device.communicate()
            assert time.monotonic() < deadline, "the device did not listen within 60 s"
            time.sleep(0.05)
        with Simulation(workdir=tmp_path / "run", seed=1) as sim:
            a = sim.add_node("a", run=["ip -o link show"])
            b = sim.add_node("b")
            sim.point_to_point(a, b)
            a.add_vhost_user_device(path, VIRTIO_ID_NET)
            sim.run()
            links = a.result("ip").stdout
    finally:
        device.send_signal(signal.SIGTERM)
        out, err = device.communicate(timeout=30)
    assert device.returncode == 0, err
    # The guest negotiated with the other process and read its config space: its MAC.
    by_name = {line.split(":")[1].strip(): line for line in links.splitlines()}
    assert "eth0" in by_name and f"link/ether {mac} " in by_name["eth1"], links
    summary = json.loads(out)
    assert summary["features"] & (1 << 32)  # VIRTIO_F_VERSION_1 was accepted
    assert summary["calls"] == 0  # it never interrupts the guest (its events never run)
    assert not summary["connected"]  # the guest left at power-off
    assert not path.exists()
    assert not processes_mentioning(tmp_path / "run")


def test_guests_get_simulated_radios_only_when_they_ask(uml_kernel, tmp_path):
    """The kernel has mac80211_hwsim (for wmediumd's virtio radios), and makes none by
    default: a guest has no wlan unless its command line asks for radios."""
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        plain = sim.add_node("plain")
        radio = sim.add_node("radio", kernel_args=["mac80211_hwsim.radios=2"])
        sim.point_to_point(plain, radio)
        sim.run(until="1s")
        ask = "ls /sys/class/ieee80211; ip -o link show | cut -d: -f2"
        none, two = plain.cmd(ask), radio.cmd(ask)
    assert none.returncode == 0 and two.returncode == 0, (none.stderr, two.stderr)
    # hwsim0 (the monitor of hwsim's in-kernel medium) is in every guest, down.
    assert none.stdout.split() == ["lo", "eth0", "hwsim0"], none.stdout
    assert sorted(two.stdout.split()) == ["eth0", "hwsim0", "lo", "phy0", "phy1", "wlan0",
                                          "wlan1"], two.stdout
