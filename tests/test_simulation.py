"""The Simulation API end to end with real guests, including guests that crash or hang."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pandas as pd
import pytest
from leftovers import processes_mentioning
from pcapfile import read_pcap

from ns3_uml.simulation import GuestError, Simulation
from ns3_uml.testing import HostileTTClient, TTPanic


def test_ping_over_point_to_point(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a", run=["ping -c 3 10.0.0.2"])
        sim.add_node("b", run=["sleep 4"])
        sim.point_to_point("a", "b", rate="100Mbps", delay="5ms")
        sim.run(until="10s")
        ping = a.result("ping")
        assert ping.returncode == 0, ping.stderr
        assert "3 received" in ping.stdout and "rtt min/avg/max/mdev = 10.01" in ping.stdout
        sockets = list(sim._sockdir.iterdir())
    assert sockets  # the guests' sockets existed during the run...
    assert not any(p.exists() for p in sockets)  # ...and are gone now
    assert sorted(p.name for p in (tmp_path / "run" / "pcap").iterdir()) == [
        "p2p0-a.pcap", "p2p0-b.pcap"]
    assert not processes_mentioning(tmp_path / "run")


@pytest.mark.parametrize("how", ["crash", "hang"])
def test_a_guest_that_crashes_or_hangs_is_named(uml_kernel, tmp_path, how):
    run = tmp_path / "run"
    with Simulation(workdir=run, seed=1, yield_timeout=3.0) as sim:
        # Enough traffic to keep the run busy for far longer than the strike takes.
        a = sim.add_node("a", run=["sleep 1", "iperf3 -c 10.0.0.2 -t 100"])
        b = sim.add_node("b", run=["iperf3 -s -1"])
        sim.point_to_point(a, b, rate="100Mbps", delay="1ms")

        def strike() -> None:
            # Once b's guest is busy answering pings, kill it (a crash) or freeze it.
            os.kill(b.process.pid, signal.SIGKILL if how == "crash" else signal.SIGSTOP)

        timer = threading.Timer(3.0, strike)
        timer.start()
        try:
            with pytest.raises(GuestError) as err:
                sim.run(until="150s")
        finally:
            timer.cancel()
        sockets = list(sim._sockdir.iterdir())
    e = err.value
    assert e.node == "b" and e.client_id == b.client_id
    assert e.kind == how
    assert "guest 'b'" in str(e) and str(b.console_log) in str(e)
    assert f"client {b.client_id} (pid " in str(e)  # the id as on its command line
    if how == "crash":
        assert "killed by signal 9" in str(e)
    # The others were shut down, what was written stays, nothing is left behind.
    assert a.process.poll() is not None and b.process.poll() is not None
    assert a.console_log.exists() and (run / "pcap" / "p2p0-a.pcap").stat().st_size > 24
    assert not processes_mentioning(run)
    assert not any(p.exists() for p in sockets)


def test_probes_of_the_calendar_socket_change_nothing(uml_kernel, tmp_path):
    # A readiness probe (connect, close) waits before the guests do, and more come while
    # they boot and run: each is forgotten, the guests are admitted and run as ever.
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a", run=["sleep 1"])
        path = str(sim.calendar.socket_path)
        HostileTTClient.probe(path)
        done = threading.Event()

        def probe() -> None:
            while not done.wait(0.05):
                try:
                    HostileTTClient.probe(path)
                except TTPanic:  # the run is over and the socket gone
                    return

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            summary = sim.run(until="5s")
        finally:
            done.set()
            prober.join()
    assert a.result("sleep").returncode == 0
    assert [c["id"] for c in summary["clients"]] == [a.client_id]
    assert not processes_mentioning(tmp_path / "run")


def test_a_native_ns3_node_built_with_raw_ns3_talks_to_a_guest(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        ns = sim.ns
        a = sim.add_node("a", run=["ping -c 3 10.0.0.9"])
        native = ns.CreateObject["ns3::Node"]()
        nodes = ns.NodeContainer()
        nodes.Add(a.ns3_node)
        nodes.Add(native)
        csma = ns.CsmaHelper()
        csma.SetChannelAttribute("DataRate", ns.StringValue("100Mbps"))
        csma.SetChannelAttribute("Delay", ns.StringValue("1ms"))
        devices = csma.Install(nodes)
        assert a.attach(devices.Get(0), ip="10.0.0.1/24") == "eth0"
        ns.InternetStackHelper().Install(native)
        addresses = ns.Ipv4AddressHelper()
        addresses.SetBase(ns.Ipv4Address("10.0.0.0"), ns.Ipv4Mask("255.255.255.0"),
                          ns.Ipv4Address("0.0.0.9"))
        addresses.Assign(ns.NetDeviceContainer(devices.Get(1)))
        sim.run(until="8s")
        ping = a.result("ping")
    # ns-3's stack answers the guest's pings (with checksums a Linux stack accepts).
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert "3 received" in ping.stdout


def test_results_table_pcaps_and_a_command_missing_in_the_guest(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a")
        b = sim.add_node("b", run=["sleep 3"])
        # Held past the run, as scripts do: the captures must be complete on close anyway.
        devices = sim.csma([a, b], rate="100Mbps", delay="1ms")
        assert (a.ip, b.ip) == ("10.0.0.1", "10.0.0.2")
        assert a.run(f"ping -c 2 {b.ip}") == "ping"
        assert a.run("no-such-program --flag") == "no-such-program"
        assert a.run("echo still here", at="2.5s") == "echo"
        sim.run(until="10s", progress=True)
        table = sim.results()
        pcaps = sim.pcaps()
    assert list(table["node"]) == ["a", "a", "a", "b"]
    assert list(table["name"]) == ["ping", "no-such-program", "echo", "sleep"]
    rows = table.set_index(["node", "name"])
    # A command the guest does not have fails with the shell's verdict; the rest go on.
    missing = rows.loc[("a", "no-such-program")]
    assert missing["returncode"] == 127 and "not found" in missing["stderr"], missing
    assert rows.loc[("a", "ping"), "returncode"] == 0
    echo = rows.loc[("a", "echo")]
    assert echo["stdout"] == "still here\n" and echo["start"] == pytest.approx(2.5, abs=1e-3)
    sleep = rows.loc[("b", "sleep")]
    assert sleep["duration"] == pytest.approx(3.0, abs=1e-3)
    assert str(table["returncode"].dtype) == "Int64"
    assert list(pcaps["interface"]) == ["eth0", "eth0"]
    assert devices.GetN() == 2
    for path in pcaps["path"]:
        # Each guest's capture has both ways: 2 echo requests, 2 replies, an ARP exchange.
        frames = _pcap_frames(path)
        # (84 bytes of IPv4, 14 of Ethernet header, 4 of FCS each).
        assert sum(len(f) == 84 + 14 + 4 for f in frames) == 4, (path, [len(f) for f in frames])


def _pcap_frames(path: Path) -> list[bytes]:
    """The frames of a pcap file (classic format, as ns-3 writes it)."""
    return [frame for frame, _ in read_pcap(path)[1]]


def test_mistaken_scripts_get_clear_errors(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a", run=["true"])
        b = sim.add_node("b")
        with pytest.raises(KeyError, match=r"no node named 'c' \(nodes: a, b\)"):
            sim.point_to_point(a, "c")
        with pytest.raises(ValueError, match="already a node or client named 'a'"):
            sim.add_node("a")
        with pytest.raises(ValueError, match="node name 'a b'"):
            sim.add_node("a b")
        with pytest.raises(RuntimeError, match="already open in this process"):
            Simulation(workdir=tmp_path / "second")
        devices = sim.csma([a, b])
        with pytest.raises(ValueError, match="a: the device is on another ns-3 node"):
            a.attach(devices.Get(1))
        with pytest.raises(ValueError, match="gateway 10.9.0.1 is on none of its subnets"):
            a.add_route("default", via="10.9.0.1")
        with pytest.raises(ValueError, match="on the csma channel twice"):
            sim.csma([a, a])
        with pytest.raises(ValueError, match="not a time"):
            sim.run(until="soon")
        with pytest.raises(KeyError, match=r"a has no command 'ping' \(it has: true\)"):
            a.result("ping")
        sim.run(until="3s")
        assert a.result("true").returncode == 0
        # Runs go on (tests/test_interactive.py), forward only; building ends at the first.
        with pytest.raises(ValueError, match="until must be later"):
            sim.run(until="2s")
        with pytest.raises(RuntimeError, match="before the first run"):
            sim.add_node("late")
    # Closed, a Simulation makes way for the next, which refuses the old one's nodes.
    with Simulation(workdir=tmp_path / "next", seed=1) as sim2:
        c = sim2.add_node("c")
        with pytest.raises(ValueError, match="is not a node of this Simulation"):
            sim2.point_to_point(c, a)


def test_a_bad_command_name_is_refused_where_it_is_given(tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a")
        with pytest.raises(ValueError, match="command name 'a b'"):
            a.run("true", name="a b")
        with pytest.raises(ValueError, match="command name '-x'"):
            a.run("true", name="-x")
        assert a.run("_tool --flag") == "tool"  # a default name is always a valid one
        with pytest.raises(ValueError, match="kernel argument 'a b'"):
            sim.add_node("b", kernel_args=["a b"])
        assert [c.name for c in a.config.command_list()] == ["tool"]


def test_stop_at_clock_and_kernel_arguments_reach_the_guest(uml_kernel, tmp_path):
    epoch_s = 1_900_000_000  # 2030-03-17
    with Simulation(workdir=tmp_path / "run", seed=1, tod_epoch_ns=epoch_s * 10**9) as sim:
        a = sim.add_node("a", stop_at="4s", kernel_args=["ns3uml.test=42"],
                         run=["cat /proc/cmdline", "date +%s", "sleep 100", "echo never"])
        assert a.stop_at == 4.0 and a.kernel_args == ["ns3uml.test=42"]
        sim.run(until="30s")
        table = sim.results().set_index("name")
    assert "ns3uml.test=42" in table.loc["cat", "stdout"].split()
    # The guest's wall clock starts at the epoch; the command runs at 1 s of uptime.
    assert epoch_s <= int(table.loc["date", "stdout"]) <= epoch_s + 2
    sleep = table.loc["sleep"]
    assert bool(sleep["killed"]) and pd.isna(sleep["returncode"])
    assert sleep["end"] == pytest.approx(4.0, abs=0.01)
    never = table.loc["echo"]
    assert not bool(never["killed"]) and pd.isna(never["start"])
    assert not processes_mentioning(tmp_path / "run")


_INTERRUPTED_SCRIPT = """
import sys
from ns3_uml import Simulation
with Simulation(workdir=sys.argv[1], seed=1) as sim:
    sim.add_node("a", run=["sleep 1", "iperf3 -c 10.0.0.2 -t 100"])
    sim.add_node("b", run=["iperf3 -s -1"])
    sim.point_to_point("a", "b", rate="100Mbps", delay="1ms")
    print(sim._sockdir, flush=True)
    sim.run(until="200s", progress=True)
"""


def test_ctrl_c_stops_a_run_cleanly(uml_kernel, tmp_path):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    import time  # noqa: PLC0415

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_SCRIPT, str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        sockdir = Path(proc.stdout.readline().strip())
        # Once iperf3 is under way (its server's output file exists), press Ctrl-C.
        deadline = time.monotonic() + 120
        while not (run / "b" / "out").is_dir() or not list((run / "b" / "out").iterdir()):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "KeyboardInterrupt: interrupted by SIGINT" in err, err[-2000:]
    assert "simulating:" in err  # the progress bar was shown
    assert not processes_mentioning(run)
    assert not sockdir.exists()
    assert (run / "a" / "console.log").exists()  # what the guests wrote stays
