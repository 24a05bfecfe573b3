"""Build and cache the User-Mode-Linux guest kernel.

The kernel is Linux 6.12 from Debian's ``linux-source-6.12`` package, built with
``ARCH=um``, the project's config fragment (``data/kernel/uml.config``) and its
patches (``data/kernel/patches/*.patch``). The binary is cached under
``cache_dir()/kernels/<key>/linux``; the key hashes everything that goes into the
build, so a changed fragment, patch or source package gives a new kernel.

Setting up (``ensure_kernel``, ``build_kernel``) also installs the Debian
packages guests need (``host.DEFAULT_GUEST_PACKAGES``) through ``host``, the one
place with the apt logic.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Iterable

from . import progress
from .atomic import replacing
from .host import DEFAULT_GUEST_PACKAGES, HostSetupError, dpkg_status, ensure_host_packages
from .lock import exclusive
from .log import get_logger
from .paths import cache_dir, executable_override, is_executable

__all__ = [
    "KERNEL_BUILD_VERSION",
    "KernelBuildError",
    "build_kernel",
    "cache_dir",
    "check_config",
    "config_fragment",
    "ensure_kernel",
    "find_kernel",
    "kernel_key",
    "patch_files",
    "required_packages",
]

#: Bump when the build procedure changes in a way the key cannot see.
KERNEL_BUILD_VERSION = 1

SOURCE_PACKAGE = "linux-source-6.12"
SOURCE_TARBALL = Path("/usr/src/linux-source-6.12.tar.xz")

# Debian packages the build needs (tar and sed are essential, always there).
BUILD_PACKAGES = (
    SOURCE_PACKAGE,
    "xz-utils",
    "patch",
    "make",
    "gcc",
    "libc6-dev",
    "flex",
    "bison",
    "bc",
)

DATA_DIR = Path(__file__).resolve().parent / "data" / "kernel"

# Rough number of "  CC foo.o"-style lines `make linux` prints with our config;
# only used to scale the progress bar.
_MAKE_STEPS_ESTIMATE = 1650
_STEP_RE = re.compile(r"^\s{2}([A-Z][A-Z0-9_]*)\s+(\S.*)$")

# Fixed build metadata: `uname -v` inside a guest must not depend on the host.
_KBUILD_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "Thu Jan  1 00:00:00 UTC 1970",
    "KBUILD_BUILD_USER": "ns3-uml",
    "KBUILD_BUILD_HOST": "ns3-uml",
    "KBUILD_BUILD_VERSION": "1",
    "LC_ALL": "C",
}
# Variables from the caller's environment that would redirect a kernel build.
_ENV_DROP = (
    "ARCH", "CROSS_COMPILE", "O", "KBUILD_OUTPUT", "KCONFIG_CONFIG",
    "MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES", "CC", "LD", "CFLAGS",
    "LDFLAGS", "KCFLAGS", "KCPPFLAGS", "KBUILD_EXTRA_SYMBOLS", "INSTALL_PATH",
)


_log = get_logger(__name__)


class KernelBuildError(RuntimeError):
    """The guest kernel could not be found or built; the message says why."""


# ---------------------------------------------------------------------------
# Locations and inputs


def config_fragment() -> Path:
    """The project's kernel config fragment."""
    return DATA_DIR / "uml.config"


def patch_files() -> list[Path]:
    """The project's kernel patches, in the order they are applied."""
    return sorted((DATA_DIR / "patches").glob("*.patch"))


def required_packages() -> tuple[str, ...]:
    """Debian packages the set-up installs: the kernel build's and the guests'."""
    return tuple(dict.fromkeys(BUILD_PACKAGES + DEFAULT_GUEST_PACKAGES))


def _package_version(package: str) -> str | None:
    """Installed version of a Debian package, or None."""
    try:
        return dpkg_status([package]).get(package)
    except HostSetupError as exc:
        raise KernelBuildError(str(exc)) from None


def kernel_key() -> str:
    """Short hash over everything that decides the kernel binary.

    Inputs: the source package's version and tarball size, the config fragment,
    the patches (names and contents) and ``KERNEL_BUILD_VERSION``. Raises
    KernelBuildError when the source package is not installed.
    """
    version = _package_version(SOURCE_PACKAGE)
    if version is None:
        raise KernelBuildError(f"{SOURCE_PACKAGE} is not installed")
    try:
        size = SOURCE_TARBALL.stat().st_size
    except OSError as exc:
        raise KernelBuildError(
            f"{SOURCE_PACKAGE} {version} is installed but {SOURCE_TARBALL} is "
            f"missing ({exc.strerror}); reinstall the package") from None
    h = hashlib.sha256()
    h.update(f"ns3-uml kernel v{KERNEL_BUILD_VERSION}\n".encode())
    h.update(f"{SOURCE_PACKAGE} {version} {size}\n".encode())
    h.update(b"config\n" + config_fragment().read_bytes())
    for patch in patch_files():
        h.update(f"patch {patch.name}\n".encode() + patch.read_bytes())
    return h.hexdigest()[:16]


def _kernel_dir(key: str) -> Path:
    return cache_dir() / "kernels" / key


# ---------------------------------------------------------------------------
# Public entry points


def find_kernel() -> Path | None:
    """The kernel to use: ``$NS3_UML_KERNEL``, else the cached build, else None."""
    override = executable_override("NS3_UML_KERNEL", KernelBuildError)
    if override is not None:
        return override
    try:
        key = kernel_key()
    except KernelBuildError:
        return None
    path = _kernel_dir(key) / "linux"
    return path if is_executable(path) else None


def ensure_kernel(progress: bool = True) -> Path:
    """The guest kernel, built first if there is none yet.

    Also makes sure the packages guests need are installed (see ``host``).
    """
    found = find_kernel()
    if found is None:
        return build_kernel(progress=progress)  # installs every required package
    _ensure_packages(_Progress(progress), DEFAULT_GUEST_PACKAGES, "ns3-uml guests")
    return found


def build_kernel(force: bool = False, progress: bool = True) -> Path:
    """Build the guest kernel into the cache (unless cached) and return its path.

    ``force`` rebuilds even when a cached binary exists. Concurrent callers
    serialise on a lock file; the final binary appears atomically.
    """
    ui = _Progress(progress)
    _ensure_packages(ui, required_packages(), "the guest kernel build and ns3-uml guests")
    key = kernel_key()
    kdir = _kernel_dir(key)
    final = kdir / "linux"
    if is_executable(final) and not force:
        return final
    kdir.parent.mkdir(parents=True, exist_ok=True)
    lock = kdir.parent / f"{key}.lock"
    with exclusive(lock, lambda: ui.say(f"Waiting for another build of this kernel (lock "
                                        f"{lock}) ...")):
        # Someone else may have finished the same build while we waited.
        if is_executable(final) and not force:
            return final
        return _build_locked(key, kdir, ui)


# ---------------------------------------------------------------------------
# System packages


def _ensure_packages(ui: _Progress, packages: Iterable[str], purpose: str) -> None:
    try:
        ensure_host_packages(packages, purpose=purpose, log=cache_dir() / "apt.log",
                             say=ui.say)
    except HostSetupError as exc:
        raise KernelBuildError(str(exc)) from None


# ---------------------------------------------------------------------------
# The build


def _build_locked(key: str, kdir: Path, ui: _Progress) -> Path:
    builds = cache_dir() / "build"
    builds.mkdir(parents=True, exist_ok=True)
    # Trees of this key left by an interrupted build: we hold its lock now.
    for stale in builds.glob(f"{key}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    kdir.mkdir(parents=True, exist_ok=True)
    log_path = kdir / "build.log"
    work = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=builds))
    tree = work / "linux"
    started = time.monotonic()
    try:
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            runner = _Runner(log, log_path, ui)
            ui.say(f"Building the UML guest kernel {key} (takes minutes; log: {log_path})")
            _unpack(tree, runner)
            _apply_patches(tree, runner)
            _configure(tree, runner, log_path)
            jobs = len(os.sched_getaffinity(0)) or 1
            runner.run(["make", "ARCH=um", f"-j{jobs}", "linux"], tree,
                       phase="make linux", count_steps=True)
            binary = tree / "linux"
            if not is_executable(binary):
                raise KernelBuildError(f"make finished but left no {binary}; see {log_path}")
            # .config first, binary last: the binary's presence means complete.
            _install_atomic(tree / ".config", kdir / "config", 0o644)
            _install_atomic(binary, kdir / "linux", 0o755)
            log.write(f"\nbuilt in {time.monotonic() - started:.0f} s\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ui.say(f"Kernel ready: {kdir / 'linux'} ({time.monotonic() - started:.0f} s)")
    return kdir / "linux"


def _unpack(tree: Path, runner: _Runner) -> None:
    tree.mkdir()
    runner.run(["tar", "-xJf", str(SOURCE_TARBALL), "-C", str(tree),
                "--strip-components=1"], tree, phase="unpack source")


def _apply_patches(tree: Path, runner: _Runner) -> None:
    for patch in patch_files():
        runner.run(["patch", "-p1", "--forward", "--batch", "-i", str(patch)], tree,
                   phase=f"apply {patch.name}")


def _configure(tree: Path, runner: _Runner, log_path: Path) -> None:
    runner.run(["make", "ARCH=um", "defconfig"], tree, phase="defconfig")
    runner.run(["scripts/kconfig/merge_config.sh", "-m", ".config",
                str(config_fragment())], tree, phase="merge config fragment")
    runner.run(["make", "ARCH=um", "olddefconfig"], tree, phase="olddefconfig")
    problems = check_config(config_fragment(), tree / ".config")
    if problems:
        raise KernelBuildError(
            "the kernel configuration did not come out as requested in "
            f"{config_fragment()}:\n  " + "\n  ".join(problems)
            + f"\n(a dependency in the Kconfig files is not met; log: {log_path})")


def parse_config(text: str) -> dict[str, str | None]:
    """Symbols of a .config or fragment: value, or None for "is not set"."""
    result: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
        if m:
            result[m[1]] = m[2]
            continue
        m = re.match(r"^# (CONFIG_\w+) is not set$", line)
        if m:
            result[m[1]] = None
    return result


# Why a wanted option can come out wrong, for the error message.
_CONFIG_HINTS = {
    "CONFIG_UML_TIME_TRAVEL_SUPPORT":
        "arch/um/Kconfig: needs !RAID6_PQ_BENCHMARK and !SMP",
    "CONFIG_MAGIC_SYSRQ": "arch/um/Kconfig: needs MCONSOLE unless patch 0002 is applied",
}


def check_config(fragment: Path, config: Path) -> list[str]:
    """Differences between what ``fragment`` asks for and the final ``config``."""
    want = parse_config(fragment.read_text())
    have = parse_config(config.read_text())
    problems = []
    for sym, value in want.items():
        got = have.get(sym)
        if got == value:
            continue
        problem = (f"{sym}: wanted {'not set' if value is None else value}, "
                   f"got {'not set' if got is None else got}")
        if sym in _CONFIG_HINTS:
            problem += f" ({_CONFIG_HINTS[sym]})"
        problems.append(problem)
    return problems


def _install_atomic(src: Path, dst: Path, mode: int) -> None:
    with replacing(dst, mode, sync=True) as tmp:
        shutil.copyfile(src, tmp)


def _build_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(_KBUILD_ENV)
    return env


class _Runner:
    """Runs build commands with their output in the log and a progress display."""

    def __init__(self, log: IO[str], log_path: Path, ui: _Progress) -> None:
        self.log = log
        self.log_path = log_path
        self.ui = ui

    def run(self, argv: list[str], cwd: Path, phase: str,
            count_steps: bool = False) -> None:
        self.log.write(f"\n$ (cd {cwd} && {' '.join(argv)})\n")
        self.log.flush()
        # Own process group, so an interrupt can take down all of make's children.
        proc = subprocess.Popen(argv, cwd=cwd, env=_build_env(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        assert proc.stdout is not None
        bar = self.ui.bar(phase, _MAKE_STEPS_ESTIMATE if count_steps else None)
        tail: list[str] = []
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                self.log.write(line + "\n")
                tail = (tail + [line])[-15:]
                m = _STEP_RE.match(line)
                bar.step(m[2] if m else None, counted=bool(m))
            rc = proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            bar.close()
            self.log.flush()
        if rc != 0:
            raise KernelBuildError(
                f"kernel build step `{' '.join(argv)}` failed (exit {rc}); full log: "
                f"{self.log_path}\nlast lines:\n  " + "\n  ".join(tail))


class _Progress:
    """What a build shows: messages (logged at INFO; at DEBUG when quiet) and bars."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def say(self, msg: str) -> None:
        _log.log(logging.INFO if self.enabled else logging.DEBUG, msg)

    def bar(self, phase: str, total: int | None) -> _Bar:
        return _Bar(phase, total, self.enabled)


class _Bar:
    """A build phase: counted phases get a bar, the others a line count and the last
    target."""

    def __init__(self, phase: str, total: int | None, enabled: bool) -> None:
        self.total = total
        self.bar: Any = None
        if enabled:
            self.bar = progress.bar(total, desc=phase, unit=" files", leave=False,
                                    bar_format=None if total else "{desc} [{elapsed}]{postfix}")

    def step(self, target: str | None, counted: bool) -> None:
        if self.bar is None:
            return
        if self.total is None or counted:
            # Never run past the estimate: the bar would look broken.
            if self.total is None or self.bar.n < self.total - 1:
                self.bar.update(1)
        if target:
            self.bar.set_postfix_str(target[-40:], refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
