"""The Simulation API end to end with real guests, including guests that crash or hang."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from ns3_uml.simulation import GuestError, Simulation


def _uml_processes(workdir: Path) -> list[int]:
    """Host processes whose command line mentions the run's directory (guests, helpers)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if str(workdir).encode() in cmdline:
            found.append(int(pid))
    return found


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
    assert not _uml_processes(tmp_path / "run")


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
    if how == "crash":
        assert "killed by signal 9" in str(e)
    # The others were shut down, what was written stays, nothing is left behind.
    assert a.process.poll() is not None and b.process.poll() is not None
    assert a.console_log.exists() and (run / "pcap" / "p2p0-a.pcap").stat().st_size > 24
    assert not _uml_processes(run)
    assert not any(p.exists() for p in sockets)


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
