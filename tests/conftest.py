"""Fixtures shared by the tests: a calendar per test, reference clients as real processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

import ns3_uml
from ns3_uml import _native


def pytest_sessionstart(session: pytest.Session) -> None:
    # The tests exercise the installed package (with its compiled core), not a bare checkout.
    lib = _native.core_dir() / _native.CORE_LIBRARY
    if not lib.exists():
        pytest.exit(
            f"{lib} is missing: run the tests against an installed package "
            "(pip install '.[test]' && pytest), or set NS3_UML_CORE_DIR to a CMake build",
            returncode=2,
        )


@pytest.fixture(scope="session", autouse=True)
def neutral_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Run the tests from an empty directory, as users run their scripts: a child process
    (``python -m ns3_uml``, a Dask worker) started in a checkout would import the
    checkout's sources, which lack the compiled core, instead of the installed package."""
    saved = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield Path.cwd()
    os.chdir(saved)


@pytest.fixture(scope="session")
def uml_kernel() -> Path:
    """The real guest kernel, built on first use (minutes; fixtures are not timed)."""
    from ns3_uml.kernel import ensure_kernel

    return ensure_kernel(progress=True)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _is_calendar_kind(fd: str) -> bool:
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return target.startswith(("socket:", "anon_inode:", "/memfd:")) or target == "/dev/null"


@dataclass
class ClientProc:
    """A reference time-travel client running as its own process (as a guest would)."""

    proc: subprocess.Popen[bytes]
    out: Path
    client_id: int
    irq_server: socket.socket | None = None
    _irq: socket.socket | None = field(default=None, repr=False)
    _result: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def irq(self) -> socket.socket:
        """The device side of the client's interrupt line (it connects after START)."""
        if self._irq is None:
            assert self.irq_server is not None, "client started without irq=True"
            self.irq_server.settimeout(30)
            self._irq, _ = self.irq_server.accept()
        return self._irq

    def result(self, timeout: float = 30) -> dict[str, Any]:
        if self._result is None:
            self.proc.wait(timeout=timeout)
            self._result = json.loads(self.out.read_text())
        return self._result

    def run_times(self) -> list[int]:
        """Calendar times of every RUN this client received."""
        return [r["calendar"] for r in self.result()["runs"]]


class ClientFactory:
    """Starts reference clients (``python -m ns3_uml.testing.tt_client``) and cleans up."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.clients: list[ClientProc] = []
        self._irq_servers: list[socket.socket] = []

    def __call__(
        self,
        socket_path: Path,
        client_id: int,
        steps: list[dict[str, Any]],
        *,
        shm: bool = True,
        irq: bool | socket.socket = False,
        device: socket.socket | None = None,
    ) -> ClientProc:
        """``irq``: True for an interrupt line whose device end is ``ClientProc.irq``, or one
        end of a socket pair whose other end is another client's ``device`` line (a device
        that this client serves and the other one kicks). The factory takes both sockets."""
        out = self.tmp / f"client-{client_id:#x}-{len(self.clients)}.json"
        cmd = [
            sys.executable,
            "-m",
            "ns3_uml.testing.tt_client",
            "--socket",
            str(socket_path),
            "--id",
            hex(client_id),
            "--script",
            json.dumps(steps),
            "--out",
            str(out),
            "--timeout",
            "60",
        ]
        if not shm:
            cmd.append("--no-shm")
        server = None
        inherited = [sock for sock in (irq, device) if isinstance(sock, socket.socket)]
        if isinstance(irq, socket.socket):
            cmd += ["--irq-fd", str(irq.fileno())]
        if device is not None:
            cmd += ["--device-fd", str(device.fileno())]
        if irq is True:
            irq_path = self.tmp / f"irq-{client_id:#x}-{len(self.clients)}.sock"
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.bind(str(irq_path))
            server.listen(1)
            self._irq_servers.append(server)
            cmd += ["--irq-socket", str(irq_path)]
        proc = subprocess.Popen(cmd, cwd=self.tmp, pass_fds=[s.fileno() for s in inherited])
        for sock in inherited:
            sock.close()  # the client's now
        client = ClientProc(proc, out, client_id, irq_server=server)
        self.clients.append(client)
        return client

    def cleanup(self) -> None:
        for c in self.clients:
            if c.proc.poll() is None:
                c.proc.kill()
            c.proc.wait(timeout=10)
            if c._irq is not None:
                c._irq.close()
        for s in self._irq_servers:
            path = s.getsockname()
            s.close()
            if path:
                Path(path).unlink(missing_ok=True)


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[ClientFactory]:
    factory = ClientFactory(tmp_path)
    yield factory
    factory.cleanup()


@pytest.fixture
def socket_path(tmp_path: Path) -> Path:
    return tmp_path / "calendar.sock"


@pytest.fixture
def make_calendar(socket_path: Path) -> Iterator[Any]:
    """``make_calendar(**options)``: a Calendar on this test's socket, closed afterwards;
    checks that neither the socket file nor a descriptor is left behind."""
    fds_before = open_fds()
    made: list[ns3_uml.Calendar] = []

    def make(**options: Any) -> ns3_uml.Calendar:
        cal = ns3_uml.Calendar(socket_path, **options)
        made.append(cal)
        return cal

    yield make
    for cal in made:
        cal.close()
    assert not socket_path.exists(), "the calendar left its socket file behind"
    # Descriptors the calendar owns (sockets, memfds, epoll sets) must all be closed again;
    # cppyy may open header files of its own meanwhile.
    leaked = {fd for fd in open_fds() - fds_before if _is_calendar_kind(fd)}
    assert not leaked, f"descriptors left open: {[os.readlink(f'/proc/self/fd/{fd}') for fd in leaked]}"
