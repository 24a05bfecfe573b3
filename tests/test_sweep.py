"""Batch parameter sweeps: real guests per point, any executor, resume after a kill."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from leftovers import processes_mentioning, wait_gone

import ns3_uml.sweeps as sweep_mod
from ns3_uml.sweeps import (
    FunctionRef,
    default_workers,
    parse_grid_option,
    plan_points,
    read_record,
    sweep,
    write_table,
)

# The small sweep with real guests: 4 points of 2 guests each.
GRID = {"delay": ["1ms", "5ms"], "loss": [0, 0.2]}
PARAMS = ["delay", "loss"]
MEASURED = ["sent", "received", "rtt_min_ms", "received_seqs", "pcap_sha256"]
# A marker no other program on the host uses: an orphan the points leave behind.
ORPHAN_SECONDS = "7777"


def ping_experiment(delay: str, loss: float, seed: int, workdir: str) -> dict[str, Any]:
    """Two guests on a lossy point-to-point link; a pings b. Writes what the point used
    (sockets, directories, guest processes) to ids.json for the collision checks."""
    out = _ping_run(delay, loss, seed, workdir)
    # ns-3 writes the pcaps out once the objects holding the devices are gone (above).
    pcaps = sorted(Path(workdir, "pcap").iterdir())
    stats = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    rtt = re.search(r"rtt min/avg/max/mdev = ([\d.]+)/", out)
    return {
        "sent": int(stats.group(1)),
        "received": int(stats.group(2)),
        "rtt_min_ms": float(rtt.group(1)) if rtt else None,
        "received_seqs": ",".join(re.findall(r"icmp_seq=(\d+)", out)),
        "pcap_sha256": hashlib.sha256(b"".join(p.read_bytes() for p in pcaps)).hexdigest(),
    }


def _ping_run(delay: str, loss: float, seed: int, workdir: str) -> str:
    from ns3_uml import Simulation  # noqa: PLC0415

    started = time.time()
    with Simulation(workdir=workdir, seed=seed) as sim:
        ns = sim.ns
        a = sim.add_node("a", run=["ping -c 10 -i 0.2 -W 1 10.0.0.2"])
        b = sim.add_node("b", run=["sleep 4"])
        devices = sim.point_to_point(a, b, rate="10Mbps", delay=delay)
        for i in range(2):
            # Packet losses drawn from ns-3's generator: the simulation's seed decides them.
            em = ns.CreateObject["ns3::RateErrorModel"]()
            em.SetAttribute("ErrorRate", ns.DoubleValue(float(loss)))
            em.SetAttribute("ErrorUnit", ns.StringValue("ERROR_UNIT_PACKET"))
            em.AssignStreams(10 + i)
            devices.Get(i).SetAttribute("ReceiveErrorModel", ns.PointerValue(em))
        sim.run(until="8s")
        ids = {
            "sockets": sorted(str(p) for p in sim._sockdir.iterdir()),
            "guest_pids": [n.process.pid for n in sim.guests],
            "node_dirs": [str(n.workdir) for n in sim.guests],
            "tmp": tempfile.gettempdir(),
            "start": started,
        }
        out = a.result("ping").stdout
    ids["end"] = time.time()
    Path(workdir, "ids.json").write_text(json.dumps(ids))
    return out


def flaky_experiment(mode: str, seed: int, workdir: str) -> Any:
    """No guests: every way a point can go wrong, next to points that work."""
    if mode == "ok":
        return {"value": 10 * seed, "where": os.getcwd() == workdir,
                "tmp": tempfile.gettempdir()}
    if mode == "raise":
        raise RuntimeError("this point is broken on purpose")
    if mode == "exit":
        # An orphan in a session of its own (as a guest is) must not outlive the point.
        subprocess.Popen(["sleep", ORPHAN_SECONDS], start_new_session=True)
        os._exit(3)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "hang":
        subprocess.Popen(["sleep", ORPHAN_SECONDS], start_new_session=True)
        time.sleep(600)
    if mode == "list":
        return ["not", "a", "dict"]
    if mode == "nested":
        return sweep(flaky_experiment, grid={"mode": ["ok"]}, workdir=workdir)
    raise AssertionError(mode)


# ------------------------------------------------------------------------------ helpers

def _table(df: pd.DataFrame) -> pd.DataFrame:
    """What must be identical between two sweeps: all but the wall times and paths."""
    cols = [*PARAMS, "repeat", "seed", *MEASURED, "status"]
    return df[cols].sort_values(PARAMS).reset_index(drop=True)


def _check_points(df: pd.DataFrame) -> None:
    assert list(df["status"]) == ["ok"] * 4, df["error"].tolist()
    for _, row in df.iterrows():
        delay_ms = float(row["delay"][:-2])
        assert row["sent"] == 10
        # RTT: twice the delay plus the serialisation of 86-byte frames at 10 Mbit/s.
        assert row["rtt_min_ms"] == pytest.approx(2 * delay_ms + 2 * 86 * 8 / 1e4, abs=0.01)
        if row["loss"] == 0:
            assert row["received"] == 10
    lossy = df[df["loss"] > 0]
    assert (lossy["received"] < 10).all(), "a 20% loss each way lost nothing"


def _check_no_collisions(df: pd.DataFrame) -> list[dict[str, Any]]:
    ids = [json.loads(Path(w, "ids.json").read_text()) for w in df["workdir"]]
    sockets = [s for i in ids for s in i["sockets"]]
    # The calendar, 2 links and 2 guests' consoles per point.
    assert len(sockets) == 4 * 5 and len(set(sockets)) == len(sockets)
    assert len({str(Path(s).parent) for s in sockets}) == 4  # a socket directory per point
    node_dirs = [d for i in ids for d in i["node_dirs"]]
    assert len(set(node_dirs)) == 8
    for w, i in zip(df["workdir"], ids):
        assert all(Path(d).parent == Path(w) for d in i["node_dirs"])
    assert len(set(df["workdir"])) == 4
    assert not any(Path(s).exists() for s in sockets)
    # The sockets were in the point's own temporary directory, removed when it ended.
    assert all(Path(s).is_relative_to(i["tmp"]) for i in ids for s in i["sockets"])
    assert len({i["tmp"] for i in ids}) == 4
    assert not any(Path(i["tmp"]).exists() for i in ids)
    # Real captures (not empty), one of its own per point.
    assert len(set(df["pcap_sha256"])) == 4
    assert hashlib.sha256(b"").hexdigest() not in set(df["pcap_sha256"])
    return ids


# ------------------------------------------------------------------------------ units

def test_plan_grid_points_repeats_and_seeds():
    planned = plan_points(grid={"a": [1, 2], "b": ["x", "y"]}, repeats=2, seed=5)
    assert [(dict(p.params), p.repeat, p.seed) for p in planned][:4] == [
        ({"a": 1, "b": "x"}, 0, 5), ({"a": 1, "b": "x"}, 1, 6),
        ({"a": 1, "b": "y"}, 0, 5), ({"a": 1, "b": "y"}, 1, 6)]
    assert len(planned) == 8 and len({p.key for p in planned}) == 8
    assert all(re.fullmatch(r"[A-Za-z0-9.+_-]+", p.name) for p in planned)
    # points x grid; a point's own seed is its base seed.
    both = plan_points(grid={"b": ["x"]}, points=[{"a": 1}, {"a": 2, "seed": 9}])
    assert [(dict(p.params), p.seed) for p in both] == [({"a": 1, "b": "x"}, 1),
                                                         ({"a": 2, "b": "x"}, 9)]
    # A point's key does not depend on the order its parameters were given in.
    assert plan_points(points=[{"a": 1, "b": 2}])[0].key == \
        plan_points(points=[{"b": 2, "a": 1}])[0].key
    for bad in ({"grid": {"a": [1, 1]}}, {"grid": {"status": [1]}},
                {"grid": {"workdir": ["x"]}}, {"grid": {"a": []}}, {},
                {"points": [{"a": [1, 2]}]}):
        with pytest.raises((ValueError, TypeError)):
            plan_points(**bad)


def test_grid_option_parsing():
    assert parse_grid_option("delay=1ms,5ms, 10ms") == ("delay", ["1ms", "5ms", "10ms"])
    assert parse_grid_option("loss=0,0.01,1e-3") == ("loss", [0, 0.01, 0.001])
    assert parse_grid_option("n=2,-3") == ("n", [2, -3])
    assert parse_grid_option("cc=cubic") == ("cc", ["cubic"])
    for bad in ("delay", "=1", "delay="):
        with pytest.raises(ValueError):
            parse_grid_option(bad)


def test_default_workers_by_cores_and_memory(monkeypatch):
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(sweep_mod, "available_memory", lambda: 64 * 2**30)
    assert default_workers() == cores
    monkeypatch.setattr(sweep_mod, "available_memory", lambda: 2 * 2**30)
    assert default_workers("1G") == min(cores, 2)
    assert default_workers(3 * 2**30) == 1  # never fewer than one
    assert default_workers() == min(cores, 2 * 2**30 // sweep_mod.DEFAULT_MEMORY_PER_POINT)


def test_write_table_formats(tmp_path):
    df = pd.DataFrame({"delay": ["1ms", "5ms"], "loss": [0.0, 0.1], "bps": [1.5e6, 2e6],
                       "status": ["ok", "failed"], "error": [None, "boom"]})
    assert pd.read_parquet(write_table(df, tmp_path / "t.parquet")).equals(df)
    assert pd.read_csv(write_table(df, tmp_path / "t.csv"))["bps"].tolist() == [1.5e6, 2e6]
    assert pd.read_json(write_table(df, tmp_path / "t.jsonl"), lines=True)["error"][1] == "boom"
    with pytest.raises(ValueError):
        write_table(df, tmp_path / "t.xlsx")


def test_function_references(tmp_path):
    ref = FunctionRef.of(ping_experiment)
    assert ref.qualname == "ping_experiment" and ref.file == str(Path(__file__).resolve())
    assert ref.load() is not None
    script = tmp_path / "exp.py"
    script.write_text("def experiment(x):\n    return {'y': x}\n")
    assert FunctionRef.of(f"{script}:experiment").load()(x=2) == {"y": 2}
    with pytest.raises(ValueError):
        FunctionRef.of(lambda x: x)
    with pytest.raises(FileNotFoundError):
        FunctionRef.of(f"{tmp_path}/missing.py:experiment")


# ------------------------------------------------------------------------------ failures

def test_failed_points_are_rows_and_the_others_complete(tmp_path):
    modes = ["ok", "raise", "exit", "kill", "hang", "list", "nested"]
    df = sweep(flaky_experiment, grid={"mode": modes}, repeats=2, workers=2,
               workdir=tmp_path, timeout=4, progress=False)
    assert list(df.columns) == ["mode", "repeat", "seed", "value", "where", "tmp", "status",
                                "error", "wall_s", "workdir"]
    assert list(df["mode"]) == [m for m in modes for _ in range(2)]
    ok = df[df["mode"] == "ok"]
    assert list(ok["status"]) == ["ok", "ok"] and list(ok["value"]) == [10, 20]
    assert ok["where"].all() and ok["error"].isna().all()
    # Each point had a temporary directory of its own, removed when it ended.
    assert ok["tmp"].nunique() == 2 and not any(Path(t).exists() for t in ok["tmp"])
    errors = dict(zip(df["mode"], df["error"]))
    assert (df[df["mode"] != "ok"]["status"] == "failed").all()
    assert "RuntimeError: this point is broken on purpose" in errors["raise"]
    assert 'test_sweep.py", line' in errors["raise"]  # the traceback, from the user's frame
    assert "exit code 3" in errors["exit"]
    assert "killed by SIGKILL" in errors["kill"]
    assert "timed out after 4 s" in errors["hang"]
    assert "returned list" in errors["list"]
    assert "inside a sweep's point" in errors["nested"]
    assert df.loc[df["mode"] == "hang", "wall_s"].between(4, 30).all()
    assert not wait_gone(f"sleep {ORPHAN_SECONDS}"), "an orphan of a point survived it"

    # The record: one line per point, readable by pandas as it is.
    record = Path(df.attrs["record"])
    assert len(pd.read_json(record, lines=True)) == len(df) == 14
    marks = {w: Path(w, "point.json").stat().st_mtime_ns for w in df["workdir"]}
    # A re-run skips the points that worked and retries the failed ones...
    again = sweep(flaky_experiment, grid={"mode": modes}, repeats=2, workdir=tmp_path,
                  timeout=4, progress=False)
    for w, status in zip(again["workdir"], again["status"]):
        reran = Path(w, "point.json").stat().st_mtime_ns != marks[w]
        assert reran == (status != "ok")
    assert len(read_record(record)) == 14 + 12
    pd.testing.assert_frame_equal(again.drop(columns=["wall_s", "error", "tmp"]),
                                  df.drop(columns=["wall_s", "error", "tmp"]))
    # ...unless told not to.
    sweep(flaky_experiment, grid={"mode": modes}, repeats=2, workdir=tmp_path,
          retry_failed=False, progress=False)
    assert len(read_record(record)) == 26


def test_code_and_parameter_changes_start_new_records(tmp_path):
    script = tmp_path / "exp.py"
    script.write_text("def experiment(x, y=0):\n    return {'z': x + y}\n")
    fn = f"{script}:experiment"
    runs = tmp_path / "runs"
    first = sweep(fn, grid={"x": [1, 2]}, workdir=runs, progress=False)
    assert list(first["z"]) == [1, 2]
    other = sweep(fn, grid={"x": [1], "y": [10]}, workdir=runs, progress=False)
    assert other["z"].tolist() == [11]
    same = sweep(fn, grid={"x": [1, 2, 3]}, workdir=runs, progress=False)
    assert same.attrs["record"] == first.attrs["record"]
    assert len(read_record(same.attrs["record"])) == 3  # only x=3 ran
    script.write_text("def experiment(x, y=0):\n    return {'z': x * 100 + y}\n")
    edited = sweep(fn, grid={"x": [1, 2]}, workdir=runs, progress=False)
    assert edited.attrs["record"] != first.attrs["record"]
    assert list(edited["z"]) == [100, 200]
    assert len({d.attrs["record"] for d in (first, other, edited)}) == 3
    # A torn last line (a kill during the write) is cut, never glued to the next one.
    record = Path(edited.attrs["record"])
    record.write_bytes(record.read_bytes() + b'{"key": "torn')
    again = sweep(fn, grid={"x": [1, 2, 4]}, workdir=runs, progress=False)
    assert list(again["z"]) == [100, 200, 400]
    assert len(pd.read_json(record, lines=True)) == 3


# ------------------------------------------------------------------------------ real guests

@pytest.fixture(scope="module")
def reference(uml_kernel, tmp_path_factory) -> pd.DataFrame:
    """The small sweep with real guests on the default executor (local processes)."""
    return sweep(ping_experiment, grid=GRID, workdir=tmp_path_factory.mktemp("default"),
                 workers=2, progress=False)


def test_sweep_of_real_guests_on_local_processes(reference):
    df = reference
    assert list(df.columns) == [*PARAMS, "repeat", "seed", *MEASURED, "status", "error",
                                "wall_s", "workdir"]
    assert [tuple(r) for r in df[PARAMS].itertuples(index=False)] == [
        ("1ms", 0), ("1ms", 0.2), ("5ms", 0), ("5ms", 0.2)]
    _check_points(df)
    ids = _check_no_collisions(df)
    # Two workers: points ran side by side, each with its own guests.
    spans = sorted((i["start"], i["end"]) for i in ids)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans
    pids = [p for i in ids for p in i["guest_pids"]]
    assert len(set(pids)) == len(pids)
    assert not wait_gone(str(Path(df["workdir"][0]).parent))


def test_dask_cluster_gives_the_same_table(reference, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, local_directory=str(tmp_path / "dask"),
                      silence_logs=True) as cluster, Client(cluster) as client:
        # Another order of execution: the points in reverse.
        points = [{"delay": d, "loss": lo} for d in reversed(GRID["delay"])
                  for lo in reversed(GRID["loss"])]
        df = sweep(ping_experiment, points=points, executor=client,
                   workdir=tmp_path / "runs", progress=False)
    _check_points(df)
    _check_no_collisions(df)
    pd.testing.assert_frame_equal(_table(df), _table(reference))
    assert not wait_gone(str(tmp_path / "runs"))


def test_a_killed_sweep_resumes_with_the_missing_points(reference, tmp_path):
    runs = tmp_path / "runs"
    out = tmp_path / "results.parquet"
    argv = [sys.executable, "-m", "ns3_uml", "sweep", __file__, "--function",
            "ping_experiment", "--grid", "delay=1ms,5ms", "--grid", "loss=0,0.2",
            "--workers", "1", "--workdir", str(runs), "--quiet"]
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        record, running = None, None
        # Kill it while a later point's guests run (one point at a time: plan order).
        while time.monotonic() < deadline and proc.poll() is None and running is None:
            records = list(runs.glob("*/results.jsonl"))
            if records and len(read_record(records[0])) >= 1:
                record = records[0]
                guest = next((c for c in processes_mentioning(runs).values()
                              if "time-travel=ext" in c
                              and re.search(r"uml_dir=\S+/a ", c)), None)
                if guest:
                    # Guest a's directory (its uml_dir) is in the point's workdir.
                    running = re.search(r"uml_dir=(\S+)/a ", guest).group(1)
                    # The socket directory is in the point's own temporary directory.
                    tmp = Path(re.search(r"virtio_uml\.device=(\S+):1", guest).group(1))
                    point_tmp = tmp.parent.parent
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert record is not None and running is not None, "no point finished in time"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    # The parent's death stops the point that was running, guests and all, at once (left
    # alone, it would have finished: "ok").
    assert not wait_gone(str(runs), timeout=20), "a point or its guests outlived the sweep"
    stopped = json.loads(Path(running, "result.json").read_text())
    assert stopped["status"] == "failed", stopped
    assert point_tmp.name.startswith("ns3-uml-point-") and not point_tmp.exists()
    before = read_record(record)
    assert 1 <= len(before) < 4
    done = {row["workdir"]: Path(row["workdir"], "point.json").stat().st_mtime_ns
            for row in before}

    rerun = subprocess.run([*argv, "--out", str(out)], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = read_record(record)
    assert after[:len(before)] == before
    assert len(after) == 4, "the re-run ran other points than the missing ones"
    for w, mtime in done.items():
        assert Path(w, "point.json").stat().st_mtime_ns == mtime, f"{w} ran again"
    df = pd.read_parquet(out)
    _check_points(df)
    # One worker instead of two, two runs instead of one: the same measurements.
    pd.testing.assert_frame_equal(_table(df), _table(reference))
