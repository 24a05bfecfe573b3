"""Guests of independent groups running at once: the same results, byte for byte, whether
one or several run at a time, also with the other core loaded (docs/DESIGN.md rule 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from leftovers import processes_mentioning

from ns3_uml import Simulation


def _pairs(workdir: Path, parallel: int) -> tuple[list[str], list[bytes], dict[str, Any]]:
    """Four pairs on their own links, pinging and sending TCP: outputs, pcaps, summary."""
    with Simulation(workdir=workdir, seed=1, ipv6=False, parallel=parallel) as sim:
        for p in range(4):
            c, s = sim.add_node(f"c{p}"), sim.add_node(f"s{p}")
            sim.point_to_point(c, s, rate="10Mbps", delay=f"{p + 1}ms")
            s.run("iperf3 -s -1", background=True)
            c.run(f"ping -c 3 -i 0.2 {s.ip}")
            c.run(f"iperf3 -c {s.ip} -n 200K")
        summary = sim.run(until="6s")
        outputs = [f"{r.name} {r.returncode} {r.start} {r.end}\n{r.stdout}"
                   for node in sim.guests for r in node.results()]
        assert sim.parallel_runs == parallel
    pcaps = [Path(p).read_bytes() for p in sorted((workdir / "pcap").iterdir())]
    assert not processes_mentioning(workdir)
    return outputs, pcaps, summary


def test_parallel_runs_give_the_same_results_byte_for_byte(uml_kernel, tmp_path):
    serial = _pairs(tmp_path / "serial", 1)
    parallel = _pairs(tmp_path / "parallel", 2)
    assert serial[2]["groups"] == parallel[2]["groups"] == 4
    assert serial[2]["runs_ahead"] == 0
    assert parallel[2]["runs_ahead"] > 0  # guests did run beside each other
    assert serial[0] == parallel[0]
    assert serial[1] == parallel[1]
    assert serial[2]["handoffs"] == parallel[2]["handoffs"]
    assert all(" 0 " in out.splitlines()[0] for out in serial[0]), serial[0]


def test_parallel_runs_are_the_same_with_the_other_core_loaded(uml_kernel, tmp_path):
    quiet = _pairs(tmp_path / "quiet", 2)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = _pairs(tmp_path / "loaded", 2)
    finally:
        hog.kill()
        hog.wait()
    assert quiet[0] == loaded[0]
    assert quiet[1] == loaded[1]


def test_parallel_is_a_positive_number(tmp_path):
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="parallel"):
            Simulation(workdir=tmp_path / "run", parallel=bad)


def test_by_default_one_guest_at_a_time_per_cpu_held(uml_kernel, tmp_path):
    def runs(**options: Any) -> tuple[int, tuple[int, ...]]:
        with Simulation(workdir=tmp_path / f"run{len(options)}", seed=1, **options) as sim:
            sim.add_node("a"), sim.add_node("b")  # two groups
            sim.run(until="1s")
            return sim.parallel_runs, sim.cpus
    parallel, cpus = runs()
    assert parallel == len(cpus) >= 1  # two on this 2-core machine when both are free
    one = min(os.sched_getaffinity(0))
    assert runs(cpu=one) == (1, (one,))
