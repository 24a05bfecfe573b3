"""The test suite under AddressSanitizer and UBSan (docs/DESIGN.md section 10): the core
built with ``NS3_UML_SANITIZE=ON`` into a venv of its own (cached by the sources' hash), and
pytest run from there with gcc's sanitizer runtime preloaded into the uninstrumented
interpreter (with libstdc++, so that C++ exceptions are intercepted).

``python -m ns3_uml.testing.sanitized_suite [PYTEST ARGS]`` from a source tree runs it.
Reports go to files (``asan.PID``): any is a finding, as is a failed test (UBSan's findings
abort, as ASan's do).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..lock import exclusive
from ..log import get_logger
from ..paths import cache_dir, ns3_package_dir
from .source_key import source_files, source_key

__all__ = ["SanitizedRun", "build", "run"]

#: Preloaded, in this order: the runtime must come first; libstdc++ for __cxa_throw.
PRELOADS: tuple[str, ...] = ("libasan.so", "libstdc++.so")
#: Checked by the sanitizers elsewhere: the fuzz targets carry their own (clang's).
NOT_UNDER_SANITIZERS: tuple[str, ...] = ("test_fuzz.py",)
#: What ASan itself changes, checked by the plain suite: a SIGBUS that is no guest's goes to
#: the handler before ours, and under ASan that chain ends in ASan's; cppyy's crash handler
#: runs gdb, which hangs with the runtime preloaded.
DESELECTED: tuple[str, ...] = tuple(
    f"test_shrunk_memory.py::test_a_sigbus_outside_guest_memory_goes_where_it_went[{case}]"
    for case in ("faulthandler", "cppyy"))
#: Part of the cache key: raise it when the build itself changes.
BUILD_VERSION = 1

_log = get_logger(__name__)


class SanitizedBuildError(RuntimeError):
    """The sanitized core could not be built; the message has pip's output."""


def build_key(source: Path) -> str:
    """Short hash over what the venv is built from: the package, the compiler and ns-3."""
    files = source_files(source, {"bindings": (".cc", ".h", ".txt"), "ns3_uml": (".py",)})
    return source_key(source, f"ns3-uml sanitized v{BUILD_VERSION}", files, "g++")


def build(source: Path) -> Path:
    """The interpreter of a venv whose ns3_uml is ``source`` with its core built under
    ASan and UBSan (built unless cached; concurrent callers serialise on a lock file)."""
    key = build_key(source)
    venv = cache_dir() / "sanitized" / key
    python = venv / "bin" / "python"
    done = venv / "built"
    if done.exists():
        return python
    lock = venv.parent / f"{key}.lock"
    with exclusive(lock, lambda: _log.info(f"Waiting for another sanitized build ({lock})")):
        if done.exists():
            return python
        # One tree's venv at a time: each is some 70 MB, made again in 3 minutes.
        for old in venv.parent.iterdir():
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        _log.info(f"Building the core under ASan and UBSan into {venv}")
        # The system's packages (ns3, cppyy, pytest) are seen; ns3_uml is this venv's own.
        _check([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], "venv")
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip()
        # The core's rpath is $ORIGIN/../../ns3/lib64: ns3 must sit beside ns3_uml.
        os.symlink(ns3_package_dir(), Path(purelib) / "ns3")
        _check([str(python), "-m", "pip", "install", "--no-deps", "--quiet",
                "-C", "cmake.define.NS3_UML_SANITIZE=ON",
                "-C", f"build-dir={venv / 'build'}", str(source)], "pip install")
        done.touch()
    return python


def _check(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SanitizedBuildError(f"{what} failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}")


def core_library(python: Path) -> Path:
    """The core that ``python`` imports (without importing it: that needs the preload)."""
    out = subprocess.run(
        [str(python), "-c", "import importlib.util as u; "
         "print(u.find_spec('ns3_uml').submodule_search_locations[0])"],
        capture_output=True, text=True, check=True, cwd=tempfile.gettempdir()).stdout.strip()
    return Path(out) / "_core" / "libns3-uml.so"


def preload() -> str:
    """LD_PRELOAD for an uninstrumented interpreter that loads a sanitized library."""
    paths = []
    for name in PRELOADS:
        path = subprocess.run(["g++", f"-print-file-name={name}"], capture_output=True,
                              text=True, check=True).stdout.strip()
        if not os.path.isabs(path):
            raise SanitizedBuildError(f"{name} not found (g++ -print-file-name={name}): "
                                      "install gcc's sanitizer runtime (libasan)")
        paths.append(path)
    return " ".join(paths)


@dataclass
class SanitizedRun:
    """One run of the suite: pytest's status and output, and the sanitizers' reports."""

    returncode: int
    log: str
    reports: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.reports

    @property
    def passed(self) -> int:
        m = re.search(r"(\d+) passed", self.log)
        return int(m.group(1)) if m else 0

    def report(self) -> str:
        found = "".join(f"\n--- {p}\n{p.read_text(errors='replace')[-6000:]}"
                        for p in self.reports)
        return f"pytest exit {self.returncode}{found}\n{self.log[-12000:]}"


def run(python: Path, source: Path, reports: Path, pytest_args: list[str]) -> SanitizedRun:
    """Run ``source``'s tests (but NOT_UNDER_SANITIZERS) with ``python`` under the
    sanitizers; their reports go to ``reports``."""
    reports.mkdir(parents=True, exist_ok=True)
    prefix = reports / "asan"
    env = dict(os.environ,
               LD_PRELOAD=preload(),
               ASAN_OPTIONS=f"detect_leaks=0:log_path={prefix}",
               UBSAN_OPTIONS=f"print_stacktrace=1:log_path={prefix}")
    tests = source / "tests"
    ignores = [f"--ignore={tests / name}" for name in NOT_UNDER_SANITIZERS]
    ignores += [f"--deselect=tests/{name}" for name in DESELECTED]  # node ids: from rootdir
    # Not from the source tree: its ns3_uml has no core (pytest puts tests/ on the path).
    with tempfile.TemporaryDirectory(prefix="ns3-uml-sanitized-") as cwd:
        proc = subprocess.run(
            [str(python), "-m", "pytest", str(tests), f"--rootdir={source}",
             "-p", "no:cacheprovider", *ignores, *pytest_args],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
            env=env, cwd=cwd, check=False)
    return SanitizedRun(proc.returncode, proc.stdout + proc.stderr,
                        sorted(reports.glob("asan.*")))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    source = Path.cwd()
    if not (source / "tests").is_dir() or not (source / "bindings").is_dir():
        print("run it from a source tree (it needs tests/ and bindings/)", file=sys.stderr)
        return 2
    python = build(source)
    core = core_library(python)
    if b"__asan_report_load" not in core.read_bytes():
        print(f"{core} is not built with ASan", file=sys.stderr)
        return 1
    result = run(python, source, source / "runs" / "sanitized", ["-q", "-rf", *args])
    print(result.report() if not result.ok else
          f"{result.passed} passed under ASan and UBSan, no reports")
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
