"""One CPU per simulation: claims that other processes see, pinning that the guests inherit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ns3_uml.cpu import lock_path, pinned
from ns3_uml.procs import descendants
from ns3_uml.simulation import Simulation
from ns3_uml.sweeps import sweep

ALLOWED = os.sched_getaffinity(0)
needs_two_cpus = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs two CPUs to choose from")

# A process that claims a CPU, says which, and holds it until its stdin closes.
_HOLDER = """
import sys
from ns3_uml.cpu import pinned
with pinned() as cpu:
    print(cpu, flush=True)
    sys.stdin.read()
"""


def parse_cpu_list(text: str) -> set[int]:
    """``Cpus_allowed_list`` ("0-2,5") as a set of CPUs."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def allowed_cpus(pid: int, tid: int | None = None) -> set[int] | None:
    """The CPUs process ``pid`` (thread ``tid`` of it) may run on; None once it has gone."""
    path = f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("Cpus_allowed_list:"):
                    return parse_cpu_list(line.split(":", 1)[1])
    except OSError:
        return None
    return None


@pytest.fixture
def own_locks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Claims of this test only (children inherit the environment): no other simulation
    running on the host takes part."""
    monkeypatch.setenv("NS3_UML_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class Holder:
    """Another process holding a claim."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", _HOLDER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line, "the holder died before claiming"
        self.cpu = None if line.strip() == "None" else int(line)

    def leave(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc.stdin.close()


def lock_is_free(cpu: int) -> bool:
    return subprocess.run(["flock", "-n", str(lock_path(cpu)), "true"]).returncode == 0


@needs_two_cpus
def test_two_holders_take_different_cpus_and_let_go_when_done(own_locks: Path) -> None:
    holder = Holder()
    try:
        assert holder.cpu in ALLOWED
        with pinned() as mine:
            assert mine is not None and mine != holder.cpu
            assert os.sched_getaffinity(0) == {mine}
            assert not lock_is_free(mine)
        assert os.sched_getaffinity(0) == ALLOWED
        assert lock_is_free(mine)
    finally:
        holder.leave()
    assert lock_is_free(holder.cpu)  # released when its block ended


@needs_two_cpus
def test_a_dead_holders_cpu_is_free_again(own_locks: Path) -> None:
    holder = Holder()
    holder.kill()  # no cleanup of its own: the kernel drops the lock
    with pinned() as mine:
        assert mine == holder.cpu == min(ALLOWED)


@needs_two_cpus
def test_with_every_cpu_claimed_nothing_is_pinned(own_locks: Path) -> None:
    holders = [Holder() for _ in ALLOWED]
    try:
        assert sorted(h.cpu for h in holders) == sorted(ALLOWED)
        with pinned() as mine:
            assert mine is None and os.sched_getaffinity(0) == ALLOWED
        # A CPU asked for by number is pinned to all the same.
        with pinned(max(ALLOWED)) as mine:
            assert mine == max(ALLOWED) and os.sched_getaffinity(0) == {mine}
        assert os.sched_getaffinity(0) == ALLOWED
    finally:
        for h in holders:
            h.leave()


@needs_two_cpus
@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_the_mask_comes_back_when_the_block_fails(own_locks: Path, error: type) -> None:
    with pytest.raises(error):
        with pinned() as mine:
            assert os.sched_getaffinity(0) == {mine}
            raise error("boom")
    assert os.sched_getaffinity(0) == ALLOWED
    assert lock_is_free(mine)


def test_none_and_false_leave_placement_alone(own_locks: Path) -> None:
    for choice in (None, False):
        with pinned(choice) as mine:
            assert mine is None and os.sched_getaffinity(0) == ALLOWED
    assert not (own_locks / "cpus").exists()  # nothing was claimed


@pytest.mark.parametrize("bad", [max(ALLOWED) + 1, -1, True, "0", 1.0])
def test_a_cpu_that_cannot_be_had_is_refused_at_construction(tmp_path: Path,
                                                             bad: Any) -> None:
    with pytest.raises(ValueError, match="cpu|CPU"):
        Simulation(workdir=tmp_path / "run", cpu=bad)
    with Simulation(workdir=tmp_path / "run"):  # nothing was left open by the refusal
        pass


def test_one_allowed_cpu_pins_nothing_and_runs(uml_kernel: Path, tmp_path: Path) -> None:
    script = f"""
import json, os
from ns3_uml.simulation import Simulation
os.sched_setaffinity(0, {{{min(ALLOWED)}}})
with Simulation(workdir={str(tmp_path / 'run')!r}) as sim:
    a = sim.add_node("a", run=["echo hello"])
    sim.run(until="5s")
    print(json.dumps({{"pinned": sim.pinned_cpu, "out": a.result("echo").stdout,
                      "mask": sorted(os.sched_getaffinity(0))}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.splitlines()[-1])
    assert got == {"pinned": None, "out": "hello\n", "mask": [min(ALLOWED)]}


class AffinityWatch:
    """A thread (started unpinned) that records, while a Simulation runs, the CPUs its
    guests' processes (the UML kernel and everything it forks) and the calling thread may
    run on."""

    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self._caller = threading.get_native_id()
        self.guests: dict[int, set[frozenset[int]]] = {}
        self.caller: set[frozenset[int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "AffinityWatch":
        # The calling thread is on the CPU while the simulation advances (guests outlive
        # a run, so their presence says nothing): sample it only inside _advance.
        self._advancing = threading.Event()
        advance = self._sim._advance

        def watched(*args: object, **kwargs: object) -> None:
            self._advancing.set()
            try:
                advance(*args, **kwargs)
            finally:
                self._advancing.clear()

        self._sim._advance = watched  # type: ignore[method-assign]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        del self._sim._advance

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            roots = [g.process.pid for g in self._sim.guests if g.process is not None]
            if not roots:
                continue
            for pid in roots + [p for r in roots for p in descendants(r)]:
                cpus = allowed_cpus(pid)
                if cpus is not None:
                    self.guests.setdefault(pid, set()).add(frozenset(cpus))
            if not self._advancing.is_set():
                continue
            cpus = allowed_cpus(os.getpid(), self._caller)
            # Kept only if still advancing afterwards: the sample may straddle the end.
            if cpus is not None and self._advancing.is_set():
                self.caller.add(frozenset(cpus))


def _two_guests(sim: Simulation) -> None:
    # Some wall time in the guests' userspace, so that their processes are seen.
    spin = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo $i"
    sim.add_node("a", run=[spin, "ping -c 2 10.0.0.2"])
    sim.add_node("b", run=[spin, "sleep 2"])
    sim.point_to_point("a", "b")


@needs_two_cpus
def test_the_calendar_and_every_guest_process_run_on_the_claimed_cpu(
        uml_kernel: Path, tmp_path: Path) -> None:
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        _two_guests(sim)
        with AffinityWatch(sim) as watch:
            sim.run(until="10s")
        cpu = sim.pinned_cpu
        assert cpu in ALLOWED  # nothing else claims a CPU while the tests run
        assert sim.results()["returncode"].tolist() == [0, 0, 0, 0]
    assert os.sched_getaffinity(0) == ALLOWED  # the caller's mask is back
    assert watch.caller == {frozenset({cpu})}
    roots = {g.process.pid for g in sim.guests}
    assert roots <= set(watch.guests)  # each UML kernel process was seen...
    assert len(watch.guests) > len(roots)  # ...and processes it forked
    assert all(seen == {frozenset({cpu})} for seen in watch.guests.values()), watch.guests
    assert lock_is_free(cpu)


@needs_two_cpus
def test_cpu_none_leaves_the_guests_where_the_os_puts_them(uml_kernel: Path,
                                                           tmp_path: Path) -> None:
    with Simulation(workdir=tmp_path / "run", seed=1, cpu=None) as sim:
        _two_guests(sim)
        with AffinityWatch(sim) as watch:
            sim.run(until="10s")
        assert sim.pinned_cpu is None
    assert watch.guests and watch.caller == {frozenset(ALLOWED)}
    assert all(seen == {frozenset(ALLOWED)} for seen in watch.guests.values())


@needs_two_cpus
def test_a_failed_run_gives_the_mask_and_the_claim_back(uml_kernel: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    during: list[set[int]] = []

    def interrupted(*args: Any, **kwargs: Any) -> dict[str, Any]:
        during.append(os.sched_getaffinity(0))
        raise KeyboardInterrupt

    with Simulation(workdir=tmp_path / "run", seed=1, cpu=max(ALLOWED)) as sim:
        monkeypatch.setattr(sim.calendar, "advance", interrupted)
        with pytest.raises(KeyboardInterrupt):
            sim.run(until="1s")
    assert during == [{max(ALLOWED)}] and sim.pinned_cpu == max(ALLOWED)
    assert os.sched_getaffinity(0) == ALLOWED
    assert lock_is_free(max(ALLOWED))


def cpu_experiment(seed: int, workdir: str) -> dict[str, Any]:
    """A sweep point: the CPU its Simulation got, and when it ran (wall clock)."""
    with Simulation(workdir=workdir, seed=seed) as sim:
        # Long enough in wall time for two points started together to overlap.
        sim.add_node("a", run=["i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
        start = time.time()
        sim.run(until="30s")
        end = time.time()
        assert sim.results()["returncode"].tolist() == [0]
    return {"cpu": -1 if sim.pinned_cpu is None else sim.pinned_cpu, "start": start,
            "end": end}


@needs_two_cpus
def test_a_sweeps_points_running_at_once_take_different_cpus(uml_kernel: Path,
                                                             tmp_path: Path) -> None:
    df = sweep(cpu_experiment, points=[{}], repeats=2, workers=2, workdir=tmp_path,
               progress=False)
    assert df["status"].tolist() == ["ok", "ok"], df["error"].tolist()
    first, second = df.to_dict("records")
    assert max(first["start"], second["start"]) < min(first["end"], second["end"])
    assert {first["cpu"], second["cpu"]} <= ALLOWED
    assert first["cpu"] != second["cpu"]
