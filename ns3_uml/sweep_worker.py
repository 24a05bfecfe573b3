"""One point of a sweep in a fresh process: ``python -m ns3_uml.sweep_worker SPEC PARENT_PID``.

``ns3_uml.sweep`` starts this module once per point (ns-3 runs one simulation per
process, so every point needs a process of its own, whatever executor dispatched it). The process
splits in two right away, before anything heavy is imported:

* the *supervisor* (this process) stays small. It dies with whatever started it
  (``PR_SET_PDEATHSIG``), is the reaper of every orphan below it
  (``PR_SET_CHILD_SUBREAPER``), and when it is told to stop (SIGTERM, SIGINT, SIGHUP,
  or the parent's death) or the experiment has ended, it kills everything the point
  started: the experiment, its guests (which run in sessions of their own) and their
  helpers. It then removes the point's private temporary directory, where the
  Simulation's sockets live.
* the *experiment* (a fork) imports the user's function, calls it with the point's
  parameters, with the point's work directory as its current directory, and writes
  ``result.json`` there: ``{"status": "ok", "measurements": {...}}`` or
  ``{"status": "failed", "error": "<traceback tail>"}``.

The spec (``point.json`` in the point's work directory, JSON) holds: ``module``, ``file``,
``qualname`` (where the function is), ``sys_path`` (the sweep's ``sys.path``, so the
function's module imports the same way), ``kwargs`` (the call's keyword arguments),
``params`` (the parameter names, which measurements may not reuse) and ``result`` (the
path of the result file).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from . import libc
from .atomic import write_atomic
from .procs import descendants

__all__ = [
    "ENV_FLAG",
    "RESERVED_COLUMNS",
    "SCRIPT_MODULE",
    "check_measurements",
    "kill_descendants",
    "load_function",
    "main",
]

#: Columns of a sweep's table that a measurement may not be called.
RESERVED_COLUMNS = ("repeat", "seed", "status", "error", "wall_s", "workdir")
#: Set in a point's environment: ``sweep()`` refuses to start a sweep inside a point.
ENV_FLAG = "NS3_UML_SWEEP_POINT"
#: Module name a script is loaded under when it cannot be imported by its own name.
SCRIPT_MODULE = "ns3_uml_sweep_script"

# prctl(2) options.
_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
# Seconds the experiment gets to shut its guests down itself before everything is killed.
_GRACE_S = 5.0
# Characters of a traceback kept in the error column.
_ERROR_TAIL = 4000


class _Stop(Exception):
    """The supervisor was told to stop (a signal, or its parent died)."""


def _reap_all() -> None:
    """Reap every child that has exited (orphans come to us: we are their subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_descendants(timeout: float = 10.0) -> None:
    """SIGKILL everything below this process until nothing is left (guests fork helpers,
    and killed processes' children come to us as orphans)."""
    deadline = time.monotonic() + timeout
    while True:
        _reap_all()
        pids = descendants(os.getpid())
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def _exit_code(status: int) -> int:
    """The shell's convention: the exit code, or 128 + the signal that killed it."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _wait_for(child: int, timeout: float | None = None) -> int | None:
    """Reap children until ``child`` exits: its exit code, or None after ``timeout``.

    Orphans (a killed guest's helpers) come to us and are reaped as they die: the
    experiment waits until a killed guest's process group is empty, zombies included."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        pid, status = os.waitpid(-1, 0 if deadline is None else os.WNOHANG)
        if pid == child:
            return _exit_code(status)
        if pid == 0:  # nothing has exited yet (only without blocking)
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


def _supervise(child: int) -> int:
    """Wait for the experiment; on a stop signal end it, gracefully first."""
    stops = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def stop(signum: int, frame: object) -> None:
        raise _Stop(signum)

    for sig in stops:
        signal.signal(sig, stop)
    try:
        code = _wait_for(child)
    except _Stop as exc:
        for sig in stops:
            signal.signal(sig, signal.SIG_IGN)  # one stop is enough: finish cleaning up
        # The experiment stops its Simulation itself (a SIGTERM interrupts a run cleanly).
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGTERM)
        code = _wait_for(child, _GRACE_S)
        if code is None:
            code = 128 + int(exc.args[0])
    for sig in stops:
        signal.signal(sig, signal.SIG_IGN)
    kill_descendants()
    return code if code is not None else 1


def load_function(module: str | None, file: str | None, qualname: str) -> Callable[..., Any]:
    """The function ``qualname`` of ``module`` (imported by name) or of the file ``file``
    (loaded as a module of its own when the name does not import that same file)."""
    import importlib  # noqa: PLC0415
    import importlib.util  # noqa: PLC0415

    mod = None
    if module and module not in ("__main__", SCRIPT_MODULE):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            mod = None
        found = getattr(mod, "__file__", None)
        if mod is not None and file and found and Path(found).resolve() != Path(file).resolve():
            mod = None  # the name imports another file: use the file the sweep saw
    if mod is None:
        if not file:
            raise ImportError(f"cannot import module {module!r} and no file is known")
        mod = sys.modules.get(SCRIPT_MODULE)
        if mod is None or getattr(mod, "__file__", None) != file:
            # As `python script.py` would: the script imports the modules beside it.
            folder = str(Path(file).parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(SCRIPT_MODULE, file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {file}")
            mod = importlib.util.module_from_spec(spec)
            # Registered first, as an import would: dataclasses and pickling look it up.
            sys.modules[SCRIPT_MODULE] = mod
            spec.loader.exec_module(mod)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{qualname} in {file or module} is not callable")
    return obj


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: numpy scalars become Python numbers."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return value


def check_measurements(result: Any, params: list[str]) -> dict[str, Any]:
    """The function's return value as a dict of JSON values; ValueError/TypeError if not."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"the experiment returned {type(result).__name__}; return a dict "
                        "of measurements (name: number or string)")
    out = {}
    taken = set(params) | set(RESERVED_COLUMNS)
    for key, value in result.items():
        if not isinstance(key, str):
            raise TypeError(f"measurement name {key!r} is not a string")
        if key in taken:
            raise ValueError(f"measurement {key!r} has the name of a parameter or of a "
                             f"column the sweep adds ({', '.join(RESERVED_COLUMNS)})")
        plain = _plain(value)
        try:
            json.dumps(plain, default=_plain)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"measurement {key!r} cannot be stored ({exc})") from None
        out[key] = plain
    return out


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data, default=_plain))


def _error_text(exc: BaseException) -> str:
    import traceback  # noqa: PLC0415

    # The frames of this module say nothing about the user's error: start below them.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip()
    return text if len(text) <= _ERROR_TAIL else "..." + text[-_ERROR_TAIL:]


def _experiment(spec: dict[str, Any]) -> int:
    """Run the user's function once and write ``result.json``; the exit code."""
    def terminated(signum: int, frame: object) -> None:
        # Unwinds through the user's `with Simulation(...)`, which stops its guests.
        raise SystemExit(f"stopped by signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, terminated)
    result = Path(spec["result"])
    # The sweep's sys.path first: the function's module imports as it did there.
    sys.path[:0] = [p for p in spec["sys_path"] if p not in sys.path]
    try:
        fn = load_function(spec["module"], spec["file"], spec["qualname"])
        returned = fn(**spec["kwargs"])
        # What the function left in reference cycles (a Simulation and its nodes) goes now:
        # ns-3 writes out the pcaps of devices it no longer needs.
        gc.collect()
        measurements = check_measurements(returned, spec["params"])
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the point's row
        _write_json(result, {"status": "failed", "error": _error_text(exc)})
        return 1
    _write_json(result, {"status": "ok", "measurements": measurements})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Supervise one point (see the module's docstring); the experiment's exit code."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m ns3_uml.sweep_worker SPEC.json PARENT_PID", file=sys.stderr)
        return 2
    spec_path, parent = Path(args[0]), int(args[1])
    libc.call("prctl", _PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:
        return 125  # the sweep died before we could ask to follow it
    libc.call("prctl", _PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    spec = json.loads(spec_path.read_text())
    # A private temporary directory: the Simulation's sockets go here, and it is removed
    # whatever happens to the experiment.
    tmp = tempfile.mkdtemp(prefix="ns3-uml-point-")
    supervisor = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        libc.call("prctl", _PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != supervisor:
            os._exit(125)
        # Python's temporary files only: the guests keep theirs (UML puts its memory file
        # in $TMPDIR, or on /dev/shm without it).
        tempfile.tempdir = tmp
        # An ordinary interpreter exit, as a script would have: atexit handlers run and
        # C++ objects that buffer files (ns-3's pcap writers) are destroyed, so flushed.
        return _experiment(spec)
    try:
        return _supervise(child)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
