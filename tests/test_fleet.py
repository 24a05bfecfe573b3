"""A hundred guests in one simulation: they boot, talk and power off, and nothing is left."""

from __future__ import annotations

from leftovers import processes_mentioning

from ns3_uml import Simulation


def test_a_hundred_guests_boot_talk_and_power_off(uml_kernel, tmp_path):
    workdir = tmp_path / "fleet"
    with Simulation(workdir=workdir, seed=1, ipv6=False) as sim:
        clients = []
        for p in range(50):
            c, s = sim.add_node(f"c{p}"), sim.add_node(f"s{p}")
            sim.point_to_point(c, s, rate="100Mbps", delay="1ms")
            c.run(f"ping -c 2 -i 0.2 {s.ip}")
            clients.append(c)
        summary = sim.run(until="3s")
        assert summary["groups"] == 50
        assert len(summary["clients"]) == 100
        for c in clients:
            r = c.result("ping")
            assert r.returncode == 0 and "2 received" in r.stdout, (c.name, r.stdout, r.stderr)
    assert not processes_mentioning(workdir)
