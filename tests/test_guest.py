"""A real UML guest: boot, init, recorded results, power-off, clean-up."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ns3_uml.guest import (
    ADDR_NO_RANDOMIZE,
    GUEST_WORKDIR,
    GuestConfig,
    GuestProcess,
    build_init_script,
    guest_argv,
    process_group_members,
)
from ns3_uml.kernel import ensure_kernel

BOOT_TIMEOUT = 120  # wall seconds; a healthy boot-run-poweroff takes ~1 s



def _cfg(tmp_path: Path, commands: list[str], name: str = "g1") -> GuestConfig:
    return GuestConfig(name=name, client_id=7, tt_socket=None, workdir=tmp_path / name,
                       commands=commands, time_travel="inf-cpu")


def test_argv_default_and_override(tmp_path: Path) -> None:
    cfg = GuestConfig(name="a", client_id=0x1A, tt_socket=tmp_path / "tt.sock",
                      workdir=tmp_path / "a", extra_args=["loglevel=7"])
    argv = guest_argv("/k/linux", cfg)
    assert argv[0] == "/k/linux"
    assert "mem=64M" in argv
    assert f"time-travel=ext:26:{tmp_path / 'tt.sock'}" in argv
    assert f"init={tmp_path / 'a' / 'init.sh'}" in argv
    assert {"rootfstype=hostfs", "rootflags=/", "ro", "con0=null,fd:1"} <= set(argv)
    assert argv[-1] == "loglevel=7"
    assert "time-travel=inf-cpu" in guest_argv("/k/linux", cfg, time_travel="inf-cpu")
    with pytest.raises(ValueError):
        guest_argv("/k/linux", GuestConfig("b", 1, None, tmp_path / "b"))
    with pytest.raises(ValueError, match="whitespace"):
        guest_argv("/k/linux", GuestConfig("c", 1, tmp_path / "s", tmp_path / "with space"))


def test_init_script(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ["echo 'quoted' \"x\"", "exit 3"])
    text = build_init_script(cfg)
    path = tmp_path / "g1" / "init.sh"
    assert path.read_text() == text and os.access(path, os.X_OK)
    assert text.startswith("#!/bin/sh\n")
    assert f"mount -t hostfs -o {tmp_path / 'g1'} hostfs {GUEST_WORKDIR}" in text.replace(
        "mnt ", "mount ")
    # The script must be valid sh, and the quoting must survive.
    subprocess.run(["sh", "-n", str(path)], check=True)
    assert """/bin/sh -c 'echo '"'"'quoted'"'"' "x"'""" in text


def _wait_gone(pgid: int, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := process_group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# The first test to need the kernel may have to build it (~5 min on 2 cores).
@pytest.mark.timeout(3600)
def test_boot_run_poweroff(uml_kernel: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ["cat /proc/uptime", "sleep 2", "uname -r",
                          "echo hi >&2; exit 3"])
    with GuestProcess(cfg, uml_kernel) as guest:
        pid = guest.pid
        assert pid is not None
        rc = guest.wait(timeout=BOOT_TIMEOUT)
        console = guest.console_log.read_text(errors="replace")
        assert rc == 0, console
        assert guest.returncode == 0
        assert guest.finished(), console
        results = guest.read_outputs()
    assert not _wait_gone(pid), "processes of the guest left running"
    assert [r.returncode for r in results] == [0, 0, 0, 3], console
    up0 = float(results[0].stdout.split()[0])
    assert results[1].duration is not None and results[1].duration >= 2.0
    assert results[2].start is not None and results[2].start - up0 >= 2.0
    assert results[2].stdout.startswith("6.12"), results[2]
    assert results[3].stderr == "hi\n" and results[3].stdout == ""
    assert "Kernel panic" not in console
    # UML's run directory stays inside the workdir and is removed on power-off.
    assert not (cfg.workdir_path / "uml").exists()


def test_kill_running_guest(uml_kernel: Path, tmp_path: Path) -> None:
    # A busy loop never ends, even in inf-cpu mode: the guest must be killed.
    cfg = _cfg(tmp_path, ["echo started > started; while :; do :; done"], name="busy")
    guest = GuestProcess(cfg, uml_kernel)
    guest.start()
    try:
        pid = guest.pid
        assert pid is not None
        deadline = time.monotonic() + BOOT_TIMEOUT
        while not (cfg.workdir_path / "started").exists():
            assert time.monotonic() < deadline, guest.console_log.read_text()
            assert guest.poll() is None, guest.console_log.read_text()
            time.sleep(0.05)
        # Address-space randomisation is off for the guest (setarch -R).
        persona = int((Path(f"/proc/{pid}/personality").read_text()), 16)
        assert persona & ADDR_NO_RANDOMIZE
        # The parent's own personality is untouched.
        own = int(Path("/proc/self/personality").read_text(), 16)
        assert not own & ADDR_NO_RANDOMIZE
        members = process_group_members(pid)
        assert pid in members and len(members) >= 2  # UML forks helpers
        with pytest.raises(subprocess.TimeoutExpired):
            guest.wait(timeout=0.2)
    finally:
        guest.kill()
    assert guest.returncode == -9
    assert not _wait_gone(pid)
    guest.kill()  # idempotent


def test_context_exit_kills(uml_kernel: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, ["while :; do :; done"], name="ctx")
    with pytest.raises(RuntimeError, match="boom"):
        with GuestProcess(cfg, uml_kernel) as guest:
            pid = guest.pid
            assert pid is not None
            time.sleep(0.5)
            raise RuntimeError("boom")
    assert guest.returncode is not None
    assert not _wait_gone(pid)
