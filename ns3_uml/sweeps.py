"""Batch parameter sweeps: one experiment function, many points, one pandas DataFrame.

A researcher writes a module-level function that builds and runs one experiment from a
few keyword parameters and returns a dict of measurements; :func:`sweep` runs it over a
grid (or a list of points), each point in a fresh process of its own (ns-3 runs one
simulation per process), on local cores or on any ``concurrent.futures.Executor`` (a Dask
``distributed.Client`` too), and returns one table::

    def experiment(delay, loss, seed, workdir):
        with ns3_uml.Simulation(workdir=workdir, seed=seed) as sim:
            ...
            return {"throughput_bps": ...}

    df = sweep(experiment, grid={"delay": ["1ms", "5ms"], "loss": [0, 0.01]}, repeats=2)

Layout of ``workdir`` (default ``runs/sweep``)::

    <name>-<sweep key>/         one record per function, code version and parameter names
        sweep.json              what the key stands for
        results.jsonl           one JSON line per finished point (pandas.read_json(lines=True))
        points/<point name>/    the point's work directory: the function's ``workdir``
            point.json          what ran (written when the point starts)
            result.json         what it returned, or its error
            worker.log          its standard output and error

The sweep key hashes the function's qualified name, the source of its module's file and
the parameter names: editing the script or sweeping other parameters starts a new record;
a re-run of the same sweep skips the points its record holds (``resume``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import inspect
import itertools
import json
import os
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from .limits import available_memory, parse_size
from .lock import exclusive
from .progress import bar as progress_bar
from .sweep_worker import ENV_FLAG, RESERVED_COLUMNS, load_function

__all__ = [
    "DEFAULT_MEMORY_PER_POINT",
    "GUEST_MEMORY",
    "PROCESS_MEMORY",
    "RECORD",
    "TABLE_SUFFIXES",
    "FunctionRef",
    "Point",
    "PointTask",
    "default_workers",
    "parse_grid_option",
    "plan_points",
    "read_record",
    "run_point",
    "sweep",
    "write_table",
]

#: Host memory of a point's Python process once ns-3 and cppyy are loaded (peak RSS
#: measured: ~400 MB with the ns-3 header cache, ~650 MB without it).
PROCESS_MEMORY = 450 * 2**20
#: Host memory one guest needs.
GUEST_MEMORY = 75 * 2**20
#: The default estimate of one point's memory: its process and two guests.
DEFAULT_MEMORY_PER_POINT = PROCESS_MEMORY + 2 * GUEST_MEMORY
#: The record of finished points, in a sweep's directory.
RECORD = "results.jsonl"
#: Where the points' work directories go, in a sweep's directory.
POINTS_DIR = "points"
#: The table formats ``write_table`` writes, by file suffix.
TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")

# Seconds a point gets to stop cleanly after SIGTERM before it is killed.
_STOP_GRACE_S = 15.0
# Lines of a dead point's log quoted in its error.
_LOG_TAIL_LINES = 20
# Characters a point directory's readable part may have (the hash keeps it unique).
_NAME_MAX = 80
_UNSAFE = re.compile(r"[^A-Za-z0-9.+-]+")
_NUMBER_INT = re.compile(r"^[+-]?\d+$")


# ---------------------------------------------------------------------------- the function

@dataclass(frozen=True)
class FunctionRef:
    """Where an experiment function lives, so that a fresh process can import it.

    ``module``: its module's name (``__main__`` for a script run directly); ``file``: the
    module's source file; ``qualname``: its qualified name there.
    """

    module: str | None
    file: str | None
    qualname: str

    @classmethod
    def of(cls, fn: Callable[..., Any] | str) -> "FunctionRef":
        """The reference of a module-level function, or of ``"path/script.py:name"`` or
        ``"package.module:name"``."""
        if isinstance(fn, str):
            where, sep, name = fn.rpartition(":")
            if not sep or not where or not name:
                raise ValueError(f"{fn!r}: write 'path/script.py:function' or "
                                 "'package.module:function'")
            if where.endswith(".py") or os.sep in where:
                path = Path(where).expanduser().resolve()
                if not path.is_file():
                    raise FileNotFoundError(f"no script {where}")
                return cls(None, str(path), name)
            return cls(where, None, name)
        qualname = getattr(fn, "__qualname__", None)
        module = getattr(fn, "__module__", None)
        if not inspect.isfunction(fn) or not qualname or "<" in qualname:
            raise ValueError(f"{fn!r} is not a module-level function: a point's fresh "
                             "process imports the function by name from its file")
        try:
            file = inspect.getsourcefile(fn)
        except TypeError:
            file = None
        if not file or not Path(file).is_file():
            raise ValueError(f"{qualname} is not defined in a file (a notebook cell?): put "
                             "the experiment function in a .py file and import it")
        return cls(module, str(Path(file).resolve()), qualname)

    def load(self) -> Callable[..., Any]:
        """Import the function (as a point's process will)."""
        return load_function(self.module, self.file, self.qualname)

    def source_file(self) -> Path:
        """The file whose source is the function's code version."""
        if self.file:
            return Path(self.file)
        fn = self.load()
        return Path(inspect.getsourcefile(fn) or "")

    def code_hash(self) -> str:
        """SHA-256 of the module file's source: any edit gives a new code version."""
        return hashlib.sha256(self.source_file().read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- the points

@dataclass(frozen=True)
class Point:
    """One run of the experiment: its parameters, repeat number and seed."""

    params: Mapping[str, Any]
    repeat: int
    seed: int
    #: Hash of the parameters and the seed: the point's identity in the record.
    key: str
    #: Its work directory's name (readable parameters and a part of the key).
    name: str


def _check_value(name: str, value: Any) -> None:
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        raise TypeError(f"parameter {name}={value!r}: values are numbers, strings, booleans "
                        "or None (they become table columns and the point's identity)")


def _point_name(params: Mapping[str, Any], seed: int, key: str) -> str:
    parts = [f"{_UNSAFE.sub('_', str(k))}-{_UNSAFE.sub('_', str(v))}"
             for k, v in params.items()]
    readable = "_".join(parts + [f"seed-{seed}"])[:_NAME_MAX]
    # Only characters a guest's kernel command line and hostfs mount options accept.
    return f"{readable}_{key[:8]}"


def plan_points(grid: Mapping[str, Iterable[Any]] | None = None,
                points: Iterable[Mapping[str, Any]] | None = None,
                repeats: int = 1, seed: int = 1) -> list[Point]:
    """Every run of a sweep, in order.

    ``grid`` maps parameter names to their values; its points are the Cartesian product
    (the first name varies slowest). ``points`` is a list of parameter dicts. Given both,
    every point is combined with every grid combination. Each point runs ``repeats`` times;
    repeat ``k`` gets seed ``base + k``, where ``base`` is the point's ``seed`` parameter if
    it has one, else ``seed``. Raises ValueError for repeated points or reserved names.
    """
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    if seed < 1:
        raise ValueError("seed must be a positive integer (ns-3 seeds start at 1)")
    base_points = [dict(p) for p in points] if points is not None else [{}]
    if points is not None and not base_points:
        raise ValueError("points is empty")
    combos: list[dict[str, Any]] = [{}]
    if grid:
        names = list(grid)
        values = []
        for name in names:
            vals = list(grid[name])
            if not vals:
                raise ValueError(f"grid parameter {name!r} has no values")
            values.append(vals)
        combos = [dict(zip(names, combo)) for combo in itertools.product(*values)]
    elif points is None:
        raise ValueError("give a grid, points, or both")
    planned: list[Point] = []
    seen: dict[str, dict[str, Any]] = {}
    for base in base_points:
        for combo in combos:
            params = {**base, **combo}
            for name, value in params.items():
                if not isinstance(name, str) or not name.isidentifier():
                    raise ValueError(f"parameter name {name!r} is not a Python identifier")
                if (name in RESERVED_COLUMNS and name != "seed") or name == "workdir":
                    raise ValueError(f"{name!r} cannot be a parameter: the sweep sets it")
                _check_value(name, value)
            first = params.pop("seed", seed)
            if isinstance(first, bool) or not isinstance(first, int) or first < 1:
                raise ValueError(f"seed {first!r} is not a positive integer")
            for k in range(repeats):
                s = first + k
                ident = json.dumps({"params": params, "seed": s}, sort_keys=True)
                key = hashlib.sha256(ident.encode()).hexdigest()[:16]
                if key in seen:
                    raise ValueError(f"the point {params} with seed {s} comes twice")
                seen[key] = params
                planned.append(Point(dict(params), k, s, key, _point_name(params, s, key)))
    return planned


def _param_names(planned: Sequence[Point]) -> list[str]:
    return list(dict.fromkeys(name for p in planned for name in p.params))


def parse_grid_option(text: str) -> tuple[str, list[Any]]:
    """``"delay=1ms,5ms"`` as ``("delay", ["1ms", "5ms"])``; values that read as integers
    or floats become numbers (``"loss=0,0.01"`` gives ``[0, 0.01]``), the rest stay strings."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise ValueError(f"--grid {text!r}: write NAME=VALUE[,VALUE...]")
    out: list[Any] = []
    for raw in values.split(","):
        v = raw.strip()
        if _NUMBER_INT.match(v):
            out.append(int(v))
            continue
        try:
            out.append(float(v))
        except ValueError:
            out.append(v)
    return name, out


# ---------------------------------------------------------------------------- resources

def default_workers(memory_per_point: int | str | None = None) -> int:
    """Points to run at once on this machine: one per usable core, fewer if the available
    memory does not hold that many points (``memory_per_point``, bytes or "900M"; default
    ``DEFAULT_MEMORY_PER_POINT``: a process with ns-3 and two guests). At least 1."""
    per = parse_size(memory_per_point) if memory_per_point is not None \
        else DEFAULT_MEMORY_PER_POINT
    cores = len(os.sched_getaffinity(0))
    available = available_memory()
    by_memory = available // per if available else cores
    return max(1, min(cores, by_memory))


# ---------------------------------------------------------------------------- one point

@dataclass(frozen=True)
class PointTask:
    """What an executor runs for one point (picklable): ``run_point(task)``."""

    #: The worker's spec (see ``ns3_uml.sweep_worker``), without the result path.
    spec: dict[str, Any]
    #: The point's work directory (cleared when the point starts).
    workdir: str
    #: Wall-clock seconds before the point is stopped; None: no limit.
    timeout: float | None = None


# Point processes this process runs, so that an interrupted sweep can stop them.
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env[ENV_FLAG] = "1"
    # The point must import this very ns3_uml, also from a source checkout.
    here = str(Path(__file__).resolve().parent.parent)
    installed = {str(Path(p).resolve()) for p in site.getsitepackages()}
    if here not in installed:
        path = env.get("PYTHONPATH", "")
        if here not in path.split(os.pathsep):
            env["PYTHONPATH"] = here + (os.pathsep + path if path else "")
    return env


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the point's supervisor (it stops the experiment and its guests), then
    SIGKILL it if it does not end."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _log_tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(lines[-_LOG_TAIL_LINES:])


def _died(rc: int) -> str:
    if rc > 128 and rc - 128 < signal.NSIG:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(rc - 128).name}"
    return f"exit code {rc}"


def run_point(task: PointTask) -> dict[str, Any]:
    """Run one point in a fresh process and wait for it; what an executor calls.

    Returns ``{"status", "measurements", "error", "wall_s", "started", "host"}``; a point
    that raises, dies or times out gives status "failed" and the error's text."""
    pointdir = Path(task.workdir)
    if pointdir.exists():
        shutil.rmtree(pointdir)  # a fresh start: nothing of an earlier attempt passes for ours
    pointdir.mkdir(parents=True)
    result = pointdir / "result.json"
    spec_path = pointdir / "point.json"
    spec_path.write_text(json.dumps({**task.spec, "result": str(result)}, indent=1))
    log = pointdir / "worker.log"
    started = time.time()
    t0 = time.monotonic()
    with open(log, "wb") as out:
        # A session of its own: a terminal's Ctrl-C or a kill of the sweep's process group
        # reaches the point through the sweep (or its death), which stops it cleanly.
        proc = subprocess.Popen(
            [sys.executable, "-m", "ns3_uml.sweep_worker", str(spec_path), str(os.getpid())],
            cwd=pointdir, env=_child_env(), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    with _running_lock:
        _running.add(proc)
    timed_out = False
    try:
        try:
            rc = proc.wait(timeout=task.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
            rc = proc.returncode
    finally:
        with _running_lock:
            _running.discard(proc)
    wall = time.monotonic() - t0
    outcome: dict[str, Any] = {"status": "failed", "measurements": {}, "error": None,
                               "wall_s": wall, "started": started, "host": socket.gethostname()}
    try:
        reported = json.loads(result.read_text())
    except (OSError, ValueError):
        reported = None
    if timed_out:
        outcome["error"] = f"timed out after {task.timeout:g} s (wall clock)"
    elif reported is None:
        tail = _log_tail(log)
        outcome["error"] = (f"the point's process died ({_died(rc)}) without a result"
                            + (f"; last lines of {log}:\n{tail}" if tail else ""))
    elif reported.get("status") == "ok":
        outcome.update(status="ok", measurements=reported.get("measurements") or {})
    else:
        outcome["error"] = reported.get("error") or f"failed ({_died(rc)})"
    return outcome


def _stop_running() -> None:
    with _running_lock:
        procs = list(_running)
    threads = [threading.Thread(target=_stop, args=(p,)) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---------------------------------------------------------------------------- the record

def read_record(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a record file, oldest first; a line cut short by a kill is left out."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break  # the last line, cut short
                with contextlib.suppress(ValueError):
                    rows.append(json.loads(line))
    except FileNotFoundError:
        pass
    return rows


def _repair(path: Path) -> None:
    """Cut a last line that a kill left without its end, so appends start a line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _append(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _busy_record(record_dir: Path) -> Callable[[], None]:
    def refuse() -> None:
        raise RuntimeError(f"another sweep is running on this record ({record_dir})")
    return refuse


def _sweep_key(ref: FunctionRef, code: str, names: Sequence[str]) -> str:
    ident = json.dumps({"function": ref.qualname, "code": code, "parameters": sorted(names)})
    return hashlib.sha256(ident.encode()).hexdigest()[:12]


def _call_extras(fn: Callable[..., Any], names: Sequence[str]) -> tuple[bool, bool]:
    """Whether ``fn`` takes ``seed`` and ``workdir``; TypeError if it cannot take the
    parameters."""
    sig = inspect.signature(fn)
    takes_any = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    takes = {n: takes_any or n in sig.parameters for n in ("seed", "workdir")}
    probe = {n: None for n in names}
    probe.update({n: None for n, ok in takes.items() if ok})
    try:
        sig.bind(**probe)
    except TypeError as exc:
        raise TypeError(f"the experiment function cannot be called with the sweep's "
                        f"parameters {list(names)}: {exc}") from None
    return takes["seed"], takes["workdir"]


# ---------------------------------------------------------------------------- the sweep

@dataclass
class _Run:
    point: Point
    pointdir: Path
    task: PointTask
    row: dict[str, Any] | None = field(default=None)


def _row(run: _Run, outcome: Mapping[str, Any]) -> dict[str, Any]:
    p = run.point
    return {**p.params, "repeat": p.repeat, "seed": p.seed, **outcome["measurements"],
            "status": outcome["status"], "error": outcome["error"],
            "wall_s": outcome["wall_s"], "workdir": str(run.pointdir), "key": p.key,
            "started": outcome.get("started"), "host": outcome.get("host")}


def _executor(executor: Any) -> cf.Executor:
    if isinstance(executor, cf.Executor):
        return executor
    if hasattr(executor, "get_executor"):  # a dask.distributed Client
        # pure=False: every submission is a run of its own, never a cached result.
        return executor.get_executor(pure=False)
    raise TypeError(f"{executor!r} is not a concurrent.futures.Executor or a Dask Client")


def sweep(fn: Callable[..., Any] | str,
          grid: Mapping[str, Iterable[Any]] | None = None,
          points: Iterable[Mapping[str, Any]] | None = None, *,
          repeats: int = 1, seed: int = 1, executor: Any = None,
          workers: int | None = None, workdir: str | os.PathLike[str] = "runs/sweep",
          resume: bool = True, retry_failed: bool = True, progress: bool = True,
          timeout: float | None = None,
          memory_per_point: int | str | None = None) -> Any:
    """Run ``fn`` once per point (and repeat) of ``grid``/``points``; one DataFrame back.

    ``fn``: a module-level function (or ``"script.py:name"``, ``"package.module:name"``)
    called as ``fn(**params, seed=seed, workdir=workdir)`` (``seed`` and ``workdir`` only
    if it takes them) in a fresh process whose current directory is the point's own
    work directory; it returns a dict of measurements (numbers, strings). Points:
    see :func:`plan_points` (``repeats``, ``seed``: repeat ``k`` gets seed ``base + k``).

    ``executor``: None runs ``workers`` points at once on local cores (default:
    :func:`default_workers` with ``memory_per_point``); any ``concurrent.futures.Executor``
    or a Dask ``distributed.Client`` dispatches the points instead (each still runs in a
    fresh process on the worker; its workers need ns3-uml and the function's file at the
    same path). ``timeout``: wall seconds per point. ``resume``: skip the points the
    record under ``workdir`` holds (retrying failed ones if ``retry_failed``); False
    starts the record afresh. ``progress``: a progress bar on stderr.

    Returns a DataFrame, one row per point in plan order: the parameters, ``repeat``,
    ``seed``, the measurements, ``status`` ("ok"/"failed"), ``error`` (the failure's text),
    ``wall_s`` and ``workdir``. ``df.attrs["record"]`` is the record file. A point that
    fails never stops the others.
    """
    import pandas as pd  # noqa: PLC0415 (slow import, needed only here)

    if os.environ.get(ENV_FLAG):
        raise RuntimeError("sweep() was called inside a sweep's point: put the sweep() call "
                           "of a script under `if __name__ == '__main__':`")
    if executor is not None and workers is not None:
        raise ValueError("workers applies to the default executor; size your own executor")
    ref = FunctionRef.of(fn)
    func = fn if callable(fn) else ref.load()
    planned = plan_points(grid, points, repeats, seed)
    names = _param_names(planned)
    takes_seed, takes_workdir = _call_extras(func, names)
    if not takes_seed and (repeats > 1 or any(p.seed != seed for p in planned)):
        raise TypeError("the experiment function takes no seed: repeats and seeds would "
                        "all give the same run")
    code = ref.code_hash()
    base = Path(workdir).absolute()
    sweep_dir = base / f"{_UNSAFE.sub('_', ref.qualname)}-{_sweep_key(ref, code, names)}"
    sweep_dir.mkdir(parents=True, exist_ok=True)
    record = sweep_dir / RECORD
    with exclusive(sweep_dir / ".lock", _busy_record(sweep_dir)):
        info = sweep_dir / "sweep.json"
        if not info.exists():
            info.write_text(json.dumps({
                "function": ref.qualname, "module": ref.module, "file": str(ref.source_file()),
                "code_sha256": code, "parameters": names,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")
        if not resume:
            record.unlink(missing_ok=True)
        _repair(record)
        done = {row.get("key"): row for row in read_record(record)}
        runs = []
        for p in planned:
            pointdir = sweep_dir / POINTS_DIR / p.name
            kwargs: dict[str, Any] = dict(p.params)
            if takes_seed:
                kwargs["seed"] = p.seed
            if takes_workdir:
                kwargs["workdir"] = str(pointdir)
            spec = {"module": ref.module, "file": ref.file, "qualname": ref.qualname,
                    "sys_path": [os.path.abspath(s) for s in sys.path],
                    "kwargs": kwargs, "params": names, "key": p.key}
            run = _Run(p, pointdir, PointTask(spec, str(pointdir), timeout))
            old = done.get(p.key)
            if old is not None and (old.get("status") == "ok" or not retry_failed):
                run.row = old
            runs.append(run)
        todo = [r for r in runs if r.row is None]
        if todo:
            _dispatch(todo, record, executor=executor, workers=workers,
                      memory_per_point=memory_per_point, progress=progress, total=len(runs))
    rows = [r.row for r in runs if r.row is not None]
    df = pd.DataFrame(rows)
    measured = [c for c in df.columns if c not in names and c not in RESERVED_COLUMNS
                and c not in ("key", "started", "host")]
    df = df.reindex(columns=[*names, "repeat", "seed", *measured, "status", "error",
                             "wall_s", "workdir"])
    df.attrs["record"] = str(record)
    df.attrs["sweep_dir"] = str(sweep_dir)
    return df


def _dispatch(todo: list[_Run], record: Path, *, executor: Any, workers: int | None,
              memory_per_point: int | str | None, progress: bool, total: int) -> None:
    """Run ``todo`` on the executor, recording each point as it finishes."""
    from .kernel import ensure_kernel  # noqa: PLC0415

    # Built (or found) once here, so that points never race to build it.
    ensure_kernel(progress=progress)
    own = executor is None
    pool = (cf.ThreadPoolExecutor(max_workers=workers or default_workers(memory_per_point),
                                  thread_name_prefix="ns3-uml-sweep")
            if own else _executor(executor))
    bar = progress_bar(total, enabled=progress, initial=total - len(todo), desc="sweep",
                       unit="pt")
    failed = 0
    futures: dict[cf.Future[dict[str, Any]], _Run] = {}
    try:
        # Each point's task only waits for its own process: threads are enough locally.
        futures = {pool.submit(run_point, r.task): r for r in todo}
        for fut in cf.as_completed(futures):
            run = futures[fut]
            try:
                outcome = fut.result()
            except BaseException as exc:  # noqa: BLE001 - the executor lost the task
                outcome = {"status": "failed", "measurements": {}, "wall_s": None,
                           "error": f"the executor could not run the point: "
                                    f"{type(exc).__name__}: {exc}"}
            run.row = _row(run, outcome)
            _append(record, run.row)
            failed += run.row["status"] != "ok"
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)
    except BaseException:
        for fut in futures:
            fut.cancel()
        if own:
            _stop_running()
        raise
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def write_table(df: Any, path: str | os.PathLike[str]) -> Path:
    """Write a sweep's table by its suffix: .parquet (pyarrow), .csv, .jsonl or .json."""
    out = Path(path)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        df.to_parquet(out, index=False)
    elif suffix == ".csv":
        df.to_csv(out, index=False)
    elif suffix == ".jsonl":
        df.to_json(out, orient="records", lines=True)
    elif suffix == ".json":
        df.to_json(out, orient="records", indent=1)
    else:
        raise ValueError(f"{out}: write {', '.join(TABLE_SUFFIXES)}")
    return out
