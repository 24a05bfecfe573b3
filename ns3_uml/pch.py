"""The cache that makes loading ns-3 fast: one precompiled header, built once per set-up.

The ns3 wheel's loader (``from ns import ns``) spends ~6 s letting Cling parse every
ns-3 module header and ~0.7 s searching the file system for libraries. Here both are done
once and cached under ``cache_dir()/pch``:

* the *plan*: what the wheel's discovery finds (its library map, the libraries each
  ns-3 module links) and what its loader then declares (include paths, defines, the
  ``ns3/*-module.h`` headers), recorded by running the loader with a stand-in for cppyy
  in a child process. Keyed by what the discovery looks at (``plans/<key>.json``).
* the *precompiled header*: cppyy's standard headers (as ``cppyy_backend``'s
  ``makepch.py`` builds them), then the plan's defines and ns-3 headers, then ns3-uml's
  own headers. Keyed by the ns3 / cppyy installations, Cling's flags, the CPU (Cling
  uses ``-march=native``), the plan's declarations and our headers' paths and contents
  (``<key>/ns3-uml.pch``). Built under a lock, published by rename, checked by a child
  process before use.

``load_ns3`` then runs the wheel's own module code with ``CLING_STANDARD_PCH`` pointing at
the header and its two discovery functions answered from the plan: the same code making
the same cppyy calls as a plain import, so the same ``ns`` namespace, in under a second.

``NS3_UML_NO_PCH=1`` bypasses all of this, as does a ``CLING_STANDARD_PCH`` of the user's
or a cppyy imported before ns-3 (Cling reads its header only when it starts).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Callable, Sequence

from .atomic import replacing, write_atomic
from .lock import exclusive
from .log import get_logger
from .paths import cache_dir

__all__ = ["PchUnavailable", "Prepared", "disabled_reason", "in_use", "load_ns3", "pch_root",
           "prepare"]

#: Bump when the build or the plan changes in a way the keys cannot see.
PCH_FORMAT = 2
#: Complete headers kept (each ~150 MB); the least recently used beyond this go.
KEEP = 3
BUILD_ESTIMATE_S = 30

PCH_NAME = "ns3-uml.pch"
HEADER_NAME = "ns3-uml-pch.h"
#: Defined (as 1) by the header only: proof that Cling started with it.
MARKER = "NS3_UML_PCH"
MANIFEST_NAME = "manifest.json"
FAILED_NAME = "failed.json"
#: A failed build is retried after this long.
RETRY_AFTER_S = 24 * 3600
#: Plans kept (one per environment seen, ~70 kB each).
KEEP_PLANS = 20
_DISTRIBUTIONS = ("ns3", "cppyy", "cppyy-backend", "cppyy-cling", "CPyCppyy")
# The wheel functions that search the file system; answered from the plan.
_DISCOVERY = ("_search_libraries", "extract_linked_libraries")


_in_use: Path | None = None
_log = get_logger(__name__)


class PchUnavailable(RuntimeError):
    """The header cache cannot be used here; the message says why."""


@dataclasses.dataclass
class Prepared:
    """A precompiled header ready for Cling, and the wheel's loader ready to run."""

    pch: Path
    plan: dict[str, Any]
    module: types.ModuleType  # the wheel's ns3.ns with its definitions executed
    tail: types.CodeType  # the wheel's last statements: ``ns = load_modules()`` on
    previous_env: str | None  # CLING_STANDARD_PCH before we set it


def pch_root() -> Path:
    """Where headers and plans are cached: ``cache_dir()/pch``."""
    return cache_dir() / "pch"


def in_use() -> Path | None:
    """The header ns-3 was loaded with in this process (None: loaded without one, or not yet)."""
    return _in_use


def disabled_reason() -> str | None:
    """Why the cache must not be used in this process, or None when it can be."""
    if os.environ.get("NS3_UML_NO_PCH", "").strip() not in ("", "0"):
        return "NS3_UML_NO_PCH is set"
    if "cppyy" in sys.modules:
        return "cppyy was imported before ns-3"
    user_pch = os.environ.get("CLING_STANDARD_PCH")
    if user_pch and not _is_ours_or_cppyys(user_pch):
        return "CLING_STANDARD_PCH is set"
    if os.environ.get("CLING_REBUILD_PCH"):
        # cppyy would overwrite the header named by CLING_STANDARD_PCH with its own.
        return "CLING_REBUILD_PCH is set"
    return None


def prepare(include_dirs: Sequence[Path], headers: Sequence[str],
            search_context: Callable[[], contextlib.AbstractContextManager[Any]]) -> Prepared:
    """Find or build the plan and the header for ns-3 plus our ``headers``; point Cling at it.

    ``include_dirs`` are where our headers are found, in the order the loader adds them;
    ``search_context`` is the one the wheel's loader runs in (its discovery is recorded
    there). Raises PchUnavailable when there is no usable header.
    """
    reason = disabled_reason()
    if reason:
        raise PchUnavailable(reason)
    root = pch_root().absolute()  # before the search context changes directory
    module, tail = _wheel_module()
    # What cppyy would set when it starts; the header must be built with the same flags.
    from cppyy_backend.loader import set_cling_compile_options  # noqa: PLC0415

    set_cling_compile_options()
    with search_context():
        plan = _plan(module, root)
    pch = ensure_pch(plan, include_dirs, headers, root)
    previous = os.environ.get("CLING_STANDARD_PCH")
    os.environ["CLING_STANDARD_PCH"] = str(pch)
    return Prepared(pch, plan, module, tail, previous)


def load_ns3(prepared: Prepared) -> Any:
    """Run the wheel's loader with the cached header and plan; return ``ns`` like the wheel.

    Afterwards ``sys.modules`` holds the module as ``ns3.ns`` and ``ns``, as after
    ``from ns import ns``.
    """
    global _in_use
    mod = prepared.module
    originals = {name: getattr(mod, name) for name in _DISCOVERY}
    linked = {(n, p): r for n, p, r in prepared.plan["linked"]}
    search = prepared.plan["search"]

    def extract_linked_libraries(library_name: str, prefix: str) -> tuple:
        found = linked.get((library_name, prefix))
        if found is None:
            return originals["extract_linked_libraries"](library_name, prefix)
        return found[0], found[1], list(found[2])

    mod._search_libraries = lambda: search
    mod.extract_linked_libraries = extract_linked_libraries
    sys.modules["ns3.ns"] = mod  # as the import system does while a module runs
    try:
        exec(prepared.tail, mod.__dict__)  # noqa: S102 (the wheel's own statements)
    except BaseException:
        sys.modules.pop("ns3.ns", None)
        raise
    finally:
        for name, fn in originals.items():
            setattr(mod, name, fn)
        # Cling has read it; children decide for themselves.
        if prepared.previous_env is None:
            os.environ.pop("CLING_STANDARD_PCH", None)
        else:
            os.environ["CLING_STANDARD_PCH"] = prepared.previous_env
    _in_use = prepared.pch
    sys.modules["ns"] = mod  # what the wheel's ``ns`` stub package does
    parent = sys.modules.get("ns3")
    if parent is not None:
        parent.ns = mod
    return mod.ns


# ---------------------------------------------------------------------------
# The wheel's loader


def _wheel_module() -> tuple[types.ModuleType, types.CodeType]:
    """The wheel's ``ns3.ns`` with everything before ``ns = load_modules()`` executed.

    Returns the module (not in ``sys.modules``) and the compiled remaining statements.
    """
    spec = importlib.util.find_spec("ns3.ns")
    if spec is None or not spec.origin or not spec.loader:
        raise PchUnavailable("the ns3 package is missing")
    source = Path(spec.origin).read_text()
    tree = ast.parse(source, spec.origin)
    calls = [
        i for i, stmt in enumerate(tree.body)
        if isinstance(stmt, ast.Assign)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "load_modules"
    ]
    if len(calls) != 1:
        raise PchUnavailable(f"unexpected shape of {spec.origin} (ns3 version?)")
    head = ast.Module(body=tree.body[: calls[0]], type_ignores=[])
    tail = ast.Module(body=tree.body[calls[0]:], type_ignores=[])
    module = importlib.util.module_from_spec(spec)
    exec(compile(head, spec.origin, "exec"), module.__dict__)  # noqa: S102
    missing = [name for name in _DISCOVERY if not callable(getattr(module, name, None))]
    if missing:
        raise PchUnavailable(f"{spec.origin} has no {', '.join(missing)} (ns3 version?)")
    return module, compile(tail, spec.origin, "exec")


# ---------------------------------------------------------------------------
# The plan: what the wheel's discovery finds


def plan_key(module: types.ModuleType) -> str:
    """Hash of what the wheel's discovery looks at (search paths, library directories)."""
    system_dirs = [d for d in getattr(module, "SYSTEM_LIBRARY_DIRECTORIES", ()) if d]
    stamps = {}
    for d in sorted(set(system_dirs)):
        # The wheel globs d/*.so* and d/*/*.so*: these directories' mtimes see new files.
        with contextlib.suppress(OSError), os.scandir(d) as entries:
            stamps[d] = os.stat(d).st_mtime_ns
            for e in entries:
                if e.is_dir():
                    stamps[e.path] = e.stat().st_mtime_ns
    return _hash({
        "format": PCH_FORMAT,
        "wheel": module.__file__,
        "distributions": _distribution_stamps(("ns3",)),
        "PATH": os.environ.get("PATH", ""),
        "LD_LIBRARY_PATH": os.environ.get("LD_LIBRARY_PATH", ""),
        "lock": module.find_ns3_lock() if hasattr(module, "find_ns3_lock") else None,
        "system_dirs": stamps,
        "python": sys.executable,
    })


def _plan(module: types.ModuleType, root: Path) -> dict[str, Any]:
    path = root / "plans" / f"{plan_key(module)}.json"
    with contextlib.suppress(OSError, ValueError):
        plan = json.loads(path.read_text())
        if {"search", "linked", "calls"} <= plan.keys():
            return plan
    plan = _record_plan()
    write_atomic(path, json.dumps(plan))
    plans = sorted(path.parent.glob("*.json"), key=_mtime, reverse=True)
    for old in plans[KEEP_PLANS:]:
        old.unlink(missing_ok=True)
    return plan


def _record_plan() -> dict[str, Any]:
    # A child process: the recorder replaces cppyy in sys.modules.
    pkg_parent = str(Path(__file__).resolve().parent.parent)
    code = (f"import sys; sys.path.insert(0, {pkg_parent!r}); "
            "from ns3_uml.pch import _record_main; _record_main()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PchUnavailable(f"recording the ns3 loader's plan failed: {last}")
    return json.loads(proc.stdout)


class _Stop(Exception):
    """Raised by the stand-in cppyy once the loader starts using real C++ classes."""


def _record_main() -> None:
    """Child process: run the wheel's loader with a recording cppyy, print the plan."""
    module, _ = _wheel_module()
    calls: list[list[str]] = []
    fake = types.ModuleType("cppyy")
    for name in ("add_library_path", "add_include_path", "cppexec", "include",
                 "load_library"):
        setattr(fake, name, lambda arg, _name=name: calls.append([_name, str(arg)]))

    class _Global:
        def __getattr__(self, name: str) -> Any:
            raise _Stop(name)

    fake.gbl = _Global()
    libcppyy = types.ModuleType("libcppyy")
    libcppyy.AddSmartPtrType = lambda name: calls.append(["AddSmartPtrType", name])
    sys.modules["cppyy"] = fake
    sys.modules["libcppyy"] = libcppyy

    search_libraries = module._search_libraries
    extract = module.extract_linked_libraries
    linked: dict[tuple[str, str], Any] = {}

    def record_extract(library_name: str, prefix: str) -> tuple:
        result = extract(library_name, prefix)
        linked[(library_name, prefix)] = [result[0], result[1], list(result[2])]
        return result

    module.extract_linked_libraries = record_extract
    with contextlib.suppress(_Stop):
        module.load_modules()
    ops = [op for op, _ in calls]
    if "include" not in ops or "load_library" not in ops:
        raise SystemExit(f"the ns3 loader did not run as expected: {sorted(set(ops))}")
    plan = {
        "search": search_libraries(),
        "linked": [[n, p, r] for (n, p), r in linked.items()],
        "calls": calls,
    }
    json.dump(plan, sys.stdout)


# ---------------------------------------------------------------------------
# The precompiled header


def pch_key(plan: dict[str, Any], include_dirs: Sequence[Path], headers: Sequence[str]) -> str:
    """Hash of everything the header's contents depend on."""
    ours = {}
    for d in include_dirs:
        for h in sorted(Path(d).glob("*.h")):
            ours[str(h)] = hashlib.sha256(h.read_bytes()).hexdigest()
    return _hash({
        "format": PCH_FORMAT,
        "distributions": _distribution_stamps(_DISTRIBUTIONS),
        "cppyy_backend": _backend_dir(),
        "EXTRA_CLING_ARGS": os.environ.get("EXTRA_CLING_ARGS", ""),
        "STDCXX": os.environ.get("STDCXX", ""),
        "cpu": _cpu(),
        # Sorted: the wheel's loader orders them by set iteration, which differs per process.
        "declarations": {k: sorted(v) for k, v in _declarations(plan).items()},
        "include_dirs": [str(d) for d in include_dirs],
        "headers": list(headers),
        "our_headers": ours,
    })


def ensure_pch(plan: dict[str, Any], include_dirs: Sequence[Path], headers: Sequence[str],
               root: Path | None = None) -> Path:
    """The cached header for these inputs, built (once, under a lock) when missing or broken.

    Raises PchUnavailable when the build fails; a failed build is not retried for
    RETRY_AFTER_S (each attempt costs half a minute), unless its directory is removed.
    """
    root = pch_root() if root is None else root
    key = pch_key(plan, include_dirs, headers)
    kdir = root / key
    if _valid(kdir):
        _touch(kdir / MANIFEST_NAME)
        return kdir / PCH_NAME
    _raise_if_failed_recently(kdir)
    kdir.mkdir(parents=True, exist_ok=True)
    lock = root / "locks" / f"{key}.lock"
    with exclusive(lock, lambda: _log.info(
            "waiting for another process building the ns-3 header cache (lock %s) ...",
            lock)):
        if not _valid(kdir):  # else another process built it while we waited
            _raise_if_failed_recently(kdir)
            try:
                _build(kdir, plan, include_dirs, headers)
            except Exception as exc:
                write_atomic(kdir / FAILED_NAME,
                             json.dumps({"time": time.time(), "reason": str(exc)}))
                raise
    _prune(root, keep=key)
    return kdir / PCH_NAME


def _build(kdir: Path, plan: dict[str, Any], include_dirs: Sequence[Path],
           headers: Sequence[str]) -> None:
    """Build to a temporary file, publish by rename, write the manifest (under the lock)."""
    pch = kdir / PCH_NAME
    for stale in [*kdir.glob(f".{PCH_NAME}.*.tmp"), kdir / MANIFEST_NAME, kdir / FAILED_NAME]:
        stale.unlink(missing_ok=True)
    header = kdir / HEADER_NAME
    header.write_text(_header_text(plan, headers))
    _log.info("building the ns-3 header cache (once, ~%d s) ...", BUILD_ESTIMATE_S)
    started = time.monotonic()
    with replacing(pch) as tmp:
        _make_pch(header, _include_paths(plan, include_dirs), tmp, kdir / "build.log")
    st = pch.stat()
    manifest = {"key": kdir.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                "build_s": round(time.monotonic() - started, 1)}
    write_atomic(kdir / MANIFEST_NAME, json.dumps(manifest))
    _log.info("ns-3 header cache built in %.0f s (%s)", manifest["build_s"], pch)


def _raise_if_failed_recently(kdir: Path) -> None:
    try:
        failed = json.loads((kdir / FAILED_NAME).read_text())
    except (OSError, ValueError):
        return
    if time.time() - failed.get("time", 0) < RETRY_AFTER_S:
        raise PchUnavailable(f"{failed.get('reason')} (an earlier build; remove {kdir} "
                             "to retry now)")


def _make_pch(header: Path, include_paths: Sequence[str], out: Path, log: Path) -> None:
    """Compile ``header`` with cppyy_backend's makepch.py, then check Cling starts with it."""
    backend = Path(_backend_dir())
    argv = [sys.executable, str(backend / "etc" / "dictpch" / "makepch.py"), str(out),
            # makepch.py takes its 2nd argument as flags and everything after it as
            # headers; the compiler sorts the -I options from the files.
            f"-I{backend / 'include'}", *(f"-I{p}" for p in include_paths), str(header)]
    env = {k: v for k, v in os.environ.items() if k != "CLING_STANDARD_PCH"}
    with open(log, "w") as out_log:
        rc = subprocess.call(argv, cwd=backend, env=env, stdin=subprocess.DEVNULL,
                             stdout=out_log, stderr=subprocess.STDOUT)
    if rc != 0 or not out.exists():
        raise PchUnavailable(f"building the header failed (exit {rc}; log {log})")
    _check_pch(out, include_paths, header, log)


_CHECK = f"""
import sys, cppyy
for p in sys.argv[2:]:
    cppyy.add_include_path(p)
cppyy.include(sys.argv[1])
if not cppyy.gbl.ns3.Simulator.Now or cppyy.macro("{MARKER}") != 1:
    sys.exit("ns-3 or the header's marker is missing")
"""


def _check_pch(pch: Path, include_paths: Sequence[str], header: Path, log: Path) -> None:
    # A broken header crashes Cling at start-up: find out in a child, not in the user's process.
    env = dict(os.environ, CLING_STANDARD_PCH=str(pch))
    proc = subprocess.run([sys.executable, "-c", _CHECK, str(header), *include_paths],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        with open(log, "a") as out_log:
            out_log.write(f"\n--- check (exit {proc.returncode})\n{proc.stdout}{proc.stderr}")
        raise PchUnavailable(f"the new header does not work (exit {proc.returncode}; log {log})")


def _declarations(plan: dict[str, Any]) -> dict[str, list[str]]:
    calls = plan["calls"]
    return {
        "include_paths": [a for op, a in calls if op == "add_include_path"],
        "defines": [a.strip() for op, a in calls if op == "cppexec" and a.strip()],
        "includes": [a for op, a in calls if op == "include"],
    }


def _header_text(plan: dict[str, Any], headers: Sequence[str]) -> str:
    decl = _declarations(plan)
    lines = ["// Generated by ns3-uml: what the ns3 wheel's loader declares, then ns3-uml.",
             f"#define {MARKER} 1"]
    lines += decl["defines"]
    lines += [f'#include "{h}"' for h in [*decl["includes"], *headers]]
    return "\n".join(lines) + "\n"


def _include_paths(plan: dict[str, Any], include_dirs: Sequence[Path]) -> list[str]:
    paths = _declarations(plan)["include_paths"] + [str(d) for d in include_dirs]
    return [p for p in dict.fromkeys(paths) if os.path.isdir(p)]


def _valid(kdir: Path) -> bool:
    """A complete header: the manifest matches the file (a changed file is a broken one)."""
    try:
        manifest = json.loads((kdir / MANIFEST_NAME).read_text())
        st = (kdir / PCH_NAME).stat()
    except (OSError, ValueError):
        return False
    return manifest.get("size") == st.st_size and manifest.get("mtime_ns") == st.st_mtime_ns


def _prune(root: Path, keep: str) -> None:
    """Remove complete headers beyond the KEEP most recently used (never ``keep``)."""
    done = [d for d in root.iterdir() if d.name != keep and (d / MANIFEST_NAME).is_file()]
    for d in sorted(done, key=lambda d: _mtime(d / MANIFEST_NAME), reverse=True)[KEEP - 1:]:
        # Its lock file stays: a process may hold it, and a new file would not be locked.
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------
# Helpers


def _is_ours_or_cppyys(path: str) -> bool:
    """Whether ``path`` is one of our headers or cppyy's standard one, not a user's choice.

    Both come inherited from a parent process that loaded ns-3 (cppyy sets its own in
    ``os.environ`` when imported); ours contains cppyy's, so replacing either is safe.
    """
    p = Path(path)
    with contextlib.suppress(ValueError, OSError):
        p.resolve().relative_to(pch_root().resolve())
        return True
    if not p.name.startswith("allDict.cxx.pch"):
        return False
    standard_dirs = []
    for package, sub in (("cppyy", ""), ("cppyy_backend", "etc")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            standard_dirs.append(Path(spec.origin).parent / sub)
    return any(p.parent.resolve() == d.resolve() for d in standard_dirs)


def _backend_dir() -> str:
    spec = importlib.util.find_spec("cppyy_backend")
    if spec is None or not spec.origin:
        raise PchUnavailable("cppyy_backend is missing")
    return str(Path(spec.origin).parent)


@functools.cache
def _distribution_stamp(name: str) -> str | None:
    """Version and RECORD hash of a distribution (RECORD lists every file's hash)."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    record = (dist.read_text("RECORD") or "").encode()
    return f"{dist.version} {hashlib.sha256(record).hexdigest()}"


def _distribution_stamps(names: Sequence[str]) -> dict[str, str | None]:
    return {name: _distribution_stamp(name) for name in names}


def _cpu() -> str:
    """Model and flags of this CPU: ``-march=native`` bakes them into the header."""
    wanted = {}
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            name, _, value = line.partition(":")
            name = name.strip()
            if name in ("model name", "flags") and name not in wanted:
                wanted[name] = value.strip()
            if len(wanted) == 2:
                break
    return json.dumps(wanted, sort_keys=True)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)
