"""The fuzz targets of ``fuzz/`` (docs/DESIGN.md section 10): built with clang, libFuzzer,
AddressSanitizer and UBSan into the cache, and run for a while over their seed corpora.

``python -m ns3_uml.testing.fuzzing [--seconds N] [FUZZER ...]`` from a source tree runs
them (the longer run; ``tests/test_fuzz.py`` is CI's minute per target). A source tree is
needed: the targets compile the core's sources again, with the fuzzer's instrumentation.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..host import ensure_host_packages
from ..lock import exclusive
from ..log import get_logger
from ..paths import cache_dir, ns3_package_dir
from .source_key import source_files, source_key

__all__ = ["FUZZERS", "FuzzRun", "build", "corpus", "run"]

#: The targets, by the name of their binary (and of their source, fuzz/NAME.cc).
FUZZERS: tuple[str, ...] = ("tt-calendar-fuzzer", "vhost-user-fuzzer", "virtqueue-fuzzer")
#: clang and its compiler-rt (libclang_rt.fuzzer, asan, ubsan).
PACKAGES: tuple[str, ...] = ("clang-14", "libclang-rt-14-dev")
COMPILER = "clang++-14"
#: Part of the cache key: raise it when the build itself changes.
FUZZ_BUILD_VERSION = 1

_log = get_logger(__name__)


class FuzzBuildError(RuntimeError):
    """The fuzz targets could not be built; the message has the build's output."""


def corpus(source: Path, fuzzer: str) -> Path:
    """The committed seeds of a target: ``fuzz/corpus/<target without -fuzzer>``."""
    return source / "fuzz" / "corpus" / fuzzer.removesuffix("-fuzzer")


def build_key(source: Path) -> str:
    """Short hash over the sources the targets are built from, the compiler and ns-3."""
    code = (".cc", ".h", ".txt")
    files = source_files(source, {"bindings": code, "fuzz": code})
    return source_key(source, f"ns3-uml fuzzers v{FUZZ_BUILD_VERSION}", files, COMPILER)


def build(source: Path) -> dict[str, Path]:
    """Build the targets from the source tree ``source`` (unless cached); their paths by
    name. Installs clang first if needed (``host``). Concurrent callers serialise on a lock
    file; a finished build appears whole."""
    ensure_host_packages(PACKAGES, purpose="the fuzz targets")
    key = build_key(source)
    final = cache_dir() / "fuzz" / key
    paths = {name: final / "fuzz" / name for name in FUZZERS}
    if all(p.exists() for p in paths.values()):
        return paths
    lock = final.parent / f"{key}.lock"
    with exclusive(lock, lambda: _log.info(f"Waiting for another build of the fuzzers ({lock})")):
        if all(p.exists() for p in paths.values()):
            return paths
        work = final.with_name(f"{key}.build")
        shutil.rmtree(work, ignore_errors=True)
        _log.info(f"Building the fuzz targets into {final}")
        generator = ["-G", "Ninja"] if shutil.which("ninja") else []
        _cmake(["-S", str(source), "-B", str(work), *generator, "-DNS3_UML_FUZZ=ON",
                f"-DCMAKE_CXX_COMPILER={COMPILER}", f"-DNS3_DIR={ns3_package_dir()}",
                f"-DPython3_EXECUTABLE={sys.executable}"])
        _cmake(["--build", str(work), "--target", "fuzzers", "-j", str(os.cpu_count() or 1)])
        shutil.rmtree(final, ignore_errors=True)
        work.rename(final)  # CMake's own paths inside name the build directory: fine to run
    return paths


def _cmake(args: list[str]) -> None:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise FuzzBuildError("cmake not found: pip install cmake (it is in the test extras)")
    proc = subprocess.run([cmake, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise FuzzBuildError(f"`cmake {' '.join(args)}` failed (exit {proc.returncode}):\n"
                             f"{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}")


@dataclass
class FuzzRun:
    """One run of a target: its exit status, its output, the inputs it saved as findings."""

    fuzzer: str
    returncode: int
    log: str
    artifacts: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing found: libFuzzer ended by itself and saved no crash, leak or timeout."""
        return self.returncode == 0 and not self.artifacts

    @property
    def executions(self) -> int:
        """How many inputs were run (libFuzzer's final statistics)."""
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", self.log)
        return int(m.group(1)) if m else 0

    def report(self) -> str:
        """What a failure shows: the findings' files and the end of the output."""
        found = "".join(f"\n  {p}" for p in self.artifacts)
        return (f"{self.fuzzer}: exit {self.returncode}, {self.executions} inputs run; "
                f"inputs saved:{found or ' none'}\n{self.log[-12000:]}")


def run(binary: Path, seeds: Path, seconds: int, workdir: Path) -> FuzzRun:
    """Run ``binary`` for ``seconds`` (wall time) from the ``seeds`` corpus; new inputs go
    to ``workdir/corpus``, findings to ``workdir/artifacts``."""
    grown = workdir / "corpus"
    artifacts = workdir / "artifacts"
    grown.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [str(binary), f"-max_total_time={seconds}", "-timeout=20", "-rss_limit_mb=4096",
            "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(grown), str(seeds)]
    # The targets' sockets: a short path (unix socket paths are limited to 107 bytes).
    with tempfile.TemporaryDirectory(prefix="ns3-uml-fuzz-") as sockets:
        env = dict(os.environ, TMPDIR=sockets,
                   ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:handle_abort=1",
                   UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        env.pop("NS3_UML_RECORD", None)
        # The targets carry clang's sanitizer runtimes: gcc's libasan, preloaded when the
        # suite runs under ASan (README), must not be loaded beside them.
        env.pop("LD_PRELOAD", None)
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", env=env, check=False, timeout=seconds + 600)
    return FuzzRun(binary.name, proc.returncode, proc.stdout + proc.stderr,
                   sorted(artifacts.iterdir()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fuzzers", nargs="*", metavar="FUZZER",
                        help=f"of {', '.join(FUZZERS)} (default: all)")
    parser.add_argument("--seconds", type=int, default=3600, help="per target (default 3600)")
    parser.add_argument("--source", type=Path, default=Path.cwd(),
                        help="the source tree (default: the current directory)")
    parser.add_argument("--workdir", type=Path, default=Path("runs/fuzz"),
                        help="grown corpora and findings (default runs/fuzz)")
    args = parser.parse_args(argv)
    unknown = set(args.fuzzers) - set(FUZZERS)
    if unknown:
        parser.error(f"no fuzzer {', '.join(sorted(unknown))}: the fuzzers are {', '.join(FUZZERS)}")
    binaries = build(args.source.resolve())
    failed = 0
    for name in args.fuzzers or FUZZERS:
        result = run(binaries[name], corpus(args.source, name), args.seconds,
                     (args.workdir / name).resolve())
        print(result.report() if not result.ok else
              f"{name}: nothing found in {result.executions} inputs")
        failed += not result.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
