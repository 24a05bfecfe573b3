"""The host's limits are checked before any guest boots: a limit too low is a clear error
naming it, and nothing is left behind; a soft limit below the hard one is raised."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from leftovers import processes_mentioning

from ns3_uml.limits import GuestNeeds, HostLimitError, check_host_limits, parse_size


def _run(tmp_path, prelude: str, guests: int) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(f"""
        import resource, sys
        {prelude}
        from ns3_uml import Simulation, HostLimitError
        with Simulation(workdir={str(tmp_path / "run")!r}, seed=1) as sim:
            for i in range({guests}):
                sim.add_node(f"g{{i}}", run=["true"])
            try:
                sim.run()
            except HostLimitError as exc:
                print("LIMIT:", exc)
                sys.exit(3)
        """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)


def test_too_few_descriptors_is_a_clear_error_before_any_guest_boots(uml_kernel, tmp_path):
    r = _run(tmp_path, "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))", 20)
    assert r.returncode == 3, r.stderr
    assert "open files" in r.stdout and "limit is 300" in r.stdout and "ulimit -Hn" in r.stdout
    assert not (tmp_path / "run" / "g0" / "console.log").exists()
    assert not processes_mentioning(tmp_path / "run")


def test_a_low_soft_limit_is_raised_to_what_the_guests_need(uml_kernel, tmp_path):
    # 20 guests need more than 300 descriptors; the hard limit allows them.
    r = _run(tmp_path, "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 4096))", 20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not processes_mentioning(tmp_path / "run")


def test_memory_that_cannot_fit_is_named(tmp_path, monkeypatch):
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(small)], check=True)
    try:
        monkeypatch.setenv("TMPDIR", str(small))
        with pytest.raises(HostLimitError, match=r"free space in .*small.*UML's memory files"):
            check_host_limits(GuestNeeds(interfaces=0, memory_bytes=(64 << 20,) * 4))
        check_host_limits(GuestNeeds(interfaces=0, memory_bytes=(1 << 20,) * 4))  # fits
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_memory_sizes_read_as_the_kernel_reads_mem():
    assert parse_size("64M") == 64 << 20
    assert parse_size("1g") == 1 << 30
    assert parse_size("65536K") == 64 << 20
    assert parse_size("4096") == 4096
    with pytest.raises(ValueError, match="not a size"):
        parse_size("lots")
