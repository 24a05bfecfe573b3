"""Interactive simulations with real guests: runs that go on, commands now, callbacks at a
simulated time, guests that stay up, and the agent's channel that costs nothing unused."""

from __future__ import annotations

import re
import signal

import pytest
from leftovers import processes_mentioning

from ns3_uml import Simulation
from ns3_uml.commands import CommandTimeout


def _rtts(ping_stdout: str) -> list[float]:
    return [float(t) for t in re.findall(r"time=([0-9.]+) ms", ping_stdout)]


def test_the_issue_example_boot_look_change_go_on(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "lab", seed=1) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")  # b has no commands: it stays up
        devices = sim.point_to_point(a, b, rate="100Mbps", delay="5ms")
        sim.run(until="2s")
        assert sim.now == pytest.approx(2.0)
        r = a.cmd(f"ping -c 3 -i 1 {b.ip}")
        assert r.returncode == 0, r.stderr
        assert r.start == pytest.approx(2.0, abs=1e-3)
        assert 4.0 < r.end < 4.1
        # 5 ms each way plus the 84-byte frames' transmission at 100 Mbit/s.
        assert _rtts(r.stdout) == pytest.approx([10.0] * 3, abs=0.02)
        seen = []

        def widen() -> None:
            seen.append(sim.now)
            channel = devices.Get(0).GetChannel()
            channel.SetAttribute("Delay", sim.ns.TimeValue(sim.ns.MilliSeconds(50)))

        sim.at("5s", widen)
        sim.run(until="10s")
        assert seen == [pytest.approx(5.0)]
        assert sim.now == pytest.approx(10.0)
        r = a.cmd(f"ping -c 2 {b.ip}")
        assert _rtts(r.stdout) == pytest.approx([100.0] * 2, abs=0.05)
        link = b.cmd("ip -s link show eth0")
        assert link.returncode == 0 and "RX:" in link.stdout
        assert sim.now > 11.0
        names = list(sim.results()["name"])
        assert names == ["ping", "ping-2", "ip"]
    assert not processes_mentioning(tmp_path / "lab")


def test_a_guest_without_commands_answers(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")
        sim.point_to_point(a, b, rate="100Mbps", delay="1ms")
        a.run(f"ping -c 6 {b.ip}")
        sim.run()  # until a's commands are done; b was never told anything
        ping = a.result("ping")
        assert ping.returncode == 0 and "6 received" in ping.stdout, ping.stdout
        assert ping.end == pytest.approx(6.0, abs=0.1)
        assert sim.now == pytest.approx(ping.end, abs=1e-3)


def test_runs_only_go_forward_and_building_ends_at_the_first(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a")
        sim.run(until="1s")
        sim.run(until="1.5s")
        assert sim.now == pytest.approx(1.5)
        with pytest.raises(ValueError, match="until must be later"):
            sim.run(until="1s")
        with pytest.raises(RuntimeError, match="before the first run"):
            sim.add_node("c")
        with pytest.raises(RuntimeError, match="before the first run"):
            sim.point_to_point(a, sim.add_native_node("n"))
        # Commands may still be scheduled: at 1 s uptime, already past, means now.
        a.run("echo later", at="1s")
        sim.run()
        later = a.result("echo")
        assert later.stdout == "later\n" and later.start == pytest.approx(1.5, abs=1e-3)


def test_commands_now_start_wait_kill_timeout(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a")
        missing = a.cmd("no-such-program --help")
        assert missing.returncode == 127 and "not found" in missing.stderr
        t0 = sim.now
        assert t0 == pytest.approx(1.0, abs=0.01)  # no command before 1 s of uptime
        h = a.start("sleep 2; echo done; echo err >&2; exit 3")
        assert h.poll() is None and not h.done
        sim.run(until=t0 + 1)
        assert h.poll() is None and h.stdout == ""
        r = h.wait()
        assert (r.returncode, r.stdout, r.stderr) == (3, "done\n", "err\n")
        assert r.duration == pytest.approx(2.0, abs=0.01)
        assert sim.now == pytest.approx(r.end, abs=1e-3)
        sleeper = a.start("sleep 100", name="sleeper")
        sleeper.kill(signal.SIGTERM)
        assert sleeper.wait().returncode == -signal.SIGTERM
        before = sim.now
        with pytest.raises(CommandTimeout) as err:
            a.cmd("echo partial; sleep 10", timeout=1)
        assert err.value.result.stdout == "partial\n"
        assert err.value.result.returncode == -signal.SIGKILL
        assert sim.now == pytest.approx(before + 1, abs=0.01)
        # Output keeps its order and size across many console buffers.
        big = a.cmd("seq 1 100000")
        assert big.stdout == "".join(f"{i}\n" for i in range(1, 100001))


def test_at_callbacks_run_at_their_time_and_may_not_block(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a")
        calls: list[tuple[str, float]] = []
        handles = []
        sim.at(3, lambda: calls.append(("three", sim.now)))
        sim.at("2s", lambda: handles.append(a.start("echo from-callback")))

        def blocking() -> None:
            with pytest.raises(RuntimeError, match="at\\(\\) callback"):
                a.cmd("true")
            calls.append(("refused", sim.now))

        sim.at(2.5, blocking)
        sim.run(until="4s")
        assert calls == [("refused", pytest.approx(2.5)), ("three", pytest.approx(3.0))]
        assert handles[0].done and handles[0].stdout == "from-callback\n"
        assert handles[0].result().start == pytest.approx(2.0, abs=1e-3)
        with pytest.raises(ValueError, match="already"):
            sim.at(1, lambda: None)


def test_an_unused_channel_adds_no_events(uml_kernel, tmp_path):
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a = sim.add_node("a")
        a.cmd("true")
        device = sim._run_loop().sessions["a"].device
        kicks, calls = int(device.GetKickCount()), int(device.GetCallCount())
        sim.run(until=sim.now + 30)
        assert (int(device.GetKickCount()), int(device.GetCallCount())) == (kicks, calls)


def test_closed_simulations_and_gone_guests_say_why(uml_kernel, tmp_path):
    sim = Simulation(workdir=tmp_path / "run", seed=1)
    try:
        a, b = sim.add_node("a"), sim.add_node("b")
        a.cmd("echo kept > /mnt/ns3uml/kept.txt")
        b.start("echo o > /proc/sysrq-trigger")  # b powers off by itself
        sim.run(until="3s")
        with pytest.raises(RuntimeError, match="guest 'b' has gone"):
            b.cmd("true")
    finally:
        sim.close()
    # close() powered a off cleanly: what it wrote reached the host.
    assert (tmp_path / "run" / "a" / "kept.txt").read_text() == "kept\n"
    with pytest.raises(RuntimeError, match="closed"):
        a.cmd("true")
    with pytest.raises(RuntimeError, match="closed"):
        sim.run(until="5s")


def test_stepped_runs_repeat_bit_for_bit(uml_kernel, tmp_path):
    def scenario(workdir):
        with Simulation(workdir=workdir, seed=7) as sim:
            a, b = sim.add_node("a"), sim.add_node("b")
            sim.point_to_point(a, b, rate="10Mbps", delay="2ms")
            sim.run(until="1.2s")
            server = b.start("iperf3 -s -1")
            sim.run(until="1.5s")
            client = a.cmd(f"iperf3 -c {b.ip} -n 200K")
            server.wait()
            outputs = [(r.name, r.stdout, r.start, r.end) for r in a.results() + b.results()]
            assert client.returncode == 0, client.stderr
        pcaps = {p.name: p.read_bytes() for p in (workdir / "pcap").iterdir()}
        return outputs, pcaps

    assert scenario(tmp_path / "one") == scenario(tmp_path / "two")
