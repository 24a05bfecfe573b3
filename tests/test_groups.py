"""Independent groups with real guests: nodes that no chain of links joins do not stop for
each other's events, a pair's run does not depend on the pairs beside it, and what Python
sends a group that ran ahead reaches it at its own time (docs/DESIGN.md rule 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from leftovers import processes_mentioning

from ns3_uml import Simulation


def _idle_guests(workdir: Path, groups: bool) -> tuple[dict, list[tuple[float, float]]]:
    with Simulation(workdir=workdir, seed=1, independent_groups=groups) as sim:
        for i in range(3):
            sim.add_node(f"g{i}", run=["sleep 2"])
        summary = sim.run(until="5s")
        times = []
        for node in sim.guests:
            r = node.result("sleep")
            assert r.returncode == 0, r.stderr
            times.append((r.start, r.end))
    return summary, times


def test_unlinked_guests_do_not_stop_for_each_other(uml_kernel, tmp_path):
    grouped, grouped_times = _idle_guests(tmp_path / "grouped", True)
    serial, serial_times = _idle_guests(tmp_path / "serial", False)
    assert grouped["groups"] == 3 and serial["groups"] == 0
    # Apart, each guest stops only for its own events and Python's; together, for everyone's.
    assert grouped["handoffs"] * 5 < serial["handoffs"], (grouped["handoffs"],
                                                         serial["handoffs"])
    assert grouped_times == serial_times


def _pairs(workdir: Path, n: int) -> tuple[bytes, str, list[int]]:
    """Pair 0's capture, ping output and guests' runs, with n-1 other pairs beside it."""
    with Simulation(workdir=workdir, seed=1, ipv6=False) as sim:
        for p in range(n):
            c, s = sim.add_node(f"c{p}"), sim.add_node(f"s{p}")
            sim.point_to_point(c, s, rate="10Mbps", delay=f"{p + 1}ms")
            c.run(f"ping -c 3 -i 0.3 {s.ip}")
        summary = sim.run(until="3s")  # the same stops for pair 0 in both runs
        ping = sim.nodes["c0"].result("ping")
        assert ping.returncode == 0, ping.stderr
        pcap = Path(sim.pcaps().set_index("node").loc["c0", "path"])
        runs = {c["id"]: c["runs"] for c in summary["clients"]}
        ids = [sim.nodes["c0"].client_id, sim.nodes["s0"].client_id]
    assert summary["groups"] == n
    return pcap.read_bytes(), ping.stdout, [runs[i] for i in ids]


def test_a_pair_runs_the_same_with_other_pairs_beside_it(uml_kernel, tmp_path):
    alone = _pairs(tmp_path / "alone", 1)
    beside = _pairs(tmp_path / "beside", 3)
    assert alone[0] == beside[0]  # the capture, byte for byte
    assert alone[1] == beside[1]
    # The other pairs' traffic costs pair 0 almost no hand-off (a few, not one per frame).
    for guest in range(2):
        assert beside[2][guest] <= alone[2][guest] * 1.05, (alone[2], beside[2])


def test_commands_at_another_groups_stops_start_at_their_own_time(uml_kernel, tmp_path):
    # b pings itself in the background, so it runs ahead of the stops that a's commands
    # make; what Python sends b there must not be in b's past (a guest would panic:
    # "time goes backwards").
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        a, b = sim.add_node("a"), sim.add_node("b")
        sim.run(until="1s")
        pinger = b.start("ping -i 0.05 -c 200 127.0.0.1")
        starts = []
        for _ in range(5):
            ra = a.cmd("true")
            rb = b.cmd("true")
            assert ra.returncode == 0 and rb.returncode == 0, (ra.stderr, rb.stderr)
            assert rb.start >= ra.end - 1e-3  # sent at a's stop, or later at b's own time
            starts.append(rb.start)
        assert starts == sorted(starts)
        pinger.kill()
    assert not processes_mentioning(tmp_path / "run")
