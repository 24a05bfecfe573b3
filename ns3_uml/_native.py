"""Find and load ns-3 and the ns3-uml core (one shared library plus its headers) via cppyy."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator

from . import pch
from .log import get_logger

_log = get_logger(__name__)
_lock = threading.Lock()
_ns: ModuleType | None = None

CORE_LIBRARY = "libns3-uml.so"
CALENDAR_TYPE = "ns3::UmlCalendar"
HEADERS = ("uml-calendar.h", "uml-bridge-helper.h", "buffered-pcap-file.h",
           "virtio-console-device.h")


def core_dir() -> Path:
    """Where the built core lives: ``$NS3_UML_CORE_DIR`` (a CMake build tree) or the package."""
    override = os.environ.get("NS3_UML_CORE_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "_core"


def _include_dir(base: Path) -> Path:
    installed = base / "include"
    if installed.is_dir():
        return installed
    # A CMake build tree used in place: headers are still in the source tree.
    return Path(__file__).resolve().parent.parent / "bindings"


@contextlib.contextmanager
def _quiet_ns3_search() -> Iterator[None]:
    """``from ns import ns`` globs PATH, LD_LIBRARY_PATH and the current directory
    recursively for libraries: from ``/`` or a large home directory that never ends. Import
    from an empty directory, and keep only the search-path entries that are plain absolute
    directories other than ``/`` and the home directory (Cling itself needs PATH to find
    the compiler)."""
    saved_cwd = os.getcwd()
    saved = {k: os.environ.get(k) for k in ("PATH", "LD_LIBRARY_PATH")}
    with tempfile.TemporaryDirectory(prefix="ns3-uml-import-") as empty:
        try:
            os.chdir(empty)
            for key, value in saved.items():
                if value is not None:
                    os.environ[key] = _safe_search_path(value, saved_cwd)
            yield
        finally:
            os.chdir(saved_cwd)
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# The ns3 3.44 wheel's bindings print this on every import; ns-3 works regardless (its Time
# initialisation also runs through Time's own static init), so it is only noise to users.
_KNOWN_NOISE = "[runStaticInitializersOnce]: Failed to materialize symbols"


@contextlib.contextmanager
def _filtered_stderr() -> Iterator[None]:
    """Hold back what C++ prints on fd 2 during the import and pass on all but the noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode(errors="replace").splitlines(keepends=True):
                if not line.startswith(_KNOWN_NOISE):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _safe_search_path(value: str, cwd: str) -> str:
    risky = {"/", os.path.expanduser("~"), cwd}
    keep = [
        entry
        for entry in value.split(os.pathsep)
        if os.path.isabs(entry) and os.path.normpath(entry) not in risky
    ]
    return os.pathsep.join(keep)


def include_dirs(base: Path | None = None) -> list[Path]:
    """Where our headers are found, in the order the loader adds them to Cling."""
    include = _include_dir(core_dir() if base is None else base).absolute()
    return [include] + [include / sub for sub in ("model", "helper") if (include / sub).is_dir()]


def load() -> ModuleType:
    """Import ns-3 (``from ns import ns``), load the ns3-uml core, return the ``ns`` namespace.

    Idempotent and thread-safe. The calendar's TypeId is registered once the library loads.
    ns-3 is imported with the cached precompiled header (``pch``; built on first use) unless
    ``NS3_UML_NO_PCH`` is set or it is unavailable, in which case one line says why.
    """
    global _ns
    with _lock:
        if _ns is not None:
            return _ns
        if importlib.util.find_spec("ns3") is None:
            raise ImportError("the ns3 package is missing: pip install ns3")
        base = core_dir()
        library = base / CORE_LIBRARY
        if not library.exists():
            raise ImportError(
                f"the ns3-uml core {library} is missing: reinstall the package "
                "(pip install .) or point NS3_UML_CORE_DIR at a CMake build directory"
            )
        dirs = include_dirs(base)
        ns = _import_ns3(dirs)
        import cppyy  # noqa: PLC0415

        for d in dirs:
            cppyy.add_include_path(str(d))
        for header in HEADERS:
            cppyy.include(header)
        cppyy.load_library(str(library))
        _ns = ns
        return ns


def _import_ns3(dirs: list[Path]) -> ModuleType:
    """``from ns import ns``, with the header cache when it can be used."""
    if "ns3.ns" in sys.modules:  # imported already, by the user or an earlier attempt
        from ns import ns  # noqa: PLC0415

        return ns
    prepared = None
    if pch.disabled_reason() is None:
        try:
            prepared = pch.prepare(dirs, HEADERS, _quiet_ns3_search)
        except Exception as exc:  # noqa: BLE001 (any failure: ns-3 still loads without it)
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            _log.warning("no ns-3 header cache (%s); loading ns-3 without it (slower)",
                         reason)
    with _quiet_ns3_search(), _filtered_stderr():
        if prepared is not None:
            return pch.load_ns3(prepared)
        from ns import ns  # noqa: PLC0415 (slow: loaded on first use only)

        return ns


def calendar_class() -> type:
    """The cppyy proxy of ``ns3::UmlCalendar``."""
    import cppyy  # noqa: PLC0415

    load()
    return cppyy.gbl.ns3.UmlCalendar


def error_class() -> type:
    """The cppyy proxy of ``ns3::UmlError``, thrown by the calendar and by devices (a Python
    exception class)."""
    import cppyy  # noqa: PLC0415

    load()
    return cppyy.gbl.ns3.UmlError


if __name__ == "__main__":  # pragma: no cover - a quick check of an installation
    load()
    print("ns3-uml core loaded from", core_dir(), file=sys.stderr)
