"""The guest agent on the host, without a guest: built by ensure_agent, driven over a
socketpair (``--fd``) with ns3_uml.agent_protocol, as the console device drives it."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from leftovers import processes_mentioning

from ns3_uml import agent_protocol as ap
from ns3_uml import cli, procs
from ns3_uml.agent_protocol import Frame, Type
from ns3_uml.guest import agent
from ns3_uml.guest.agent import AgentBuildError, build_agent, ensure_agent, find_agent


@pytest.fixture(scope="session")
def agent_binary() -> Path:
    return ensure_agent()


class Agent:
    """One agent process on one end of a socketpair; the test holds the other end."""

    def __init__(self, binary: Path, workdir: Path, log: Path) -> None:
        self.sock, theirs = socket.socketpair()
        with open(log, "ab") as err:  # its diagnostics, if a test fails
            self.proc = subprocess.Popen(
                [str(binary), "--fd", str(theirs.fileno()), "--workdir", str(workdir)],
                pass_fds=[theirs.fileno()], stderr=err)
        theirs.close()
        self.reader = ap.FrameReader()
        self.frames: list[Frame] = []
        self.pids: list[int] = []  # of every STARTED: each is a process group

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def run(self, id_: int, command: str) -> None:
        self.send(ap.run_frame(id_, command))

    def wait_for(self, done: Callable[[Frame], bool], timeout: float = 20.0) -> Frame:
        """Read frames until one satisfies ``done``; every frame read is kept."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames:
                if done(frame):
                    return frame
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no such frame within {timeout} s; got {self.frames}")
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 20)
            if not data:
                raise EOFError(f"the agent closed its end; got {self.frames}")
            for frame in self.reader.feed(data):
                if frame.type == Type.STARTED:
                    self.pids.append(frame.started()[1])
                self.frames.append(frame)

    def wait_exit(self, id_: int, timeout: float = 20.0) -> Frame:
        return self.wait_for(lambda f: f.type == Type.EXIT and f.id == id_, timeout)

    def output(self, id_: int, type_: Type = Type.STDOUT) -> bytes:
        return b"".join(f.payload for f in self.frames if f.id == id_ and f.type == type_)

    def of(self, id_: int) -> list[Type]:
        return [f.type for f in self.frames if f.id == id_]

    def close(self) -> None:
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.sock.close()


@pytest.fixture
def guest_agent(agent_binary: Path, tmp_path: Path) -> Iterator[Agent]:
    a = Agent(agent_binary, tmp_path, tmp_path / "agent.log")
    a.wait_for(lambda f: f.type == Type.READY)
    yield a
    a.close()
    # Nothing left: not the agent (its argv names tmp_path), nothing of any command's group.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (
            processes_mentioning(tmp_path) or any(procs.group_members(p) for p in a.pids)):
        time.sleep(0.05)  # an orphan's zombie is reaped by whoever adopted it
    assert not processes_mentioning(tmp_path)
    assert not [p for p in a.pids if procs.group_members(p)]


def status(frame: Frame) -> int:
    return frame.exit()[2]


# -- commands ------------------------------------------------------------------------------


def test_ready_comes_first_with_the_uptime(agent_binary: Path, tmp_path: Path) -> None:
    a = Agent(agent_binary, tmp_path, tmp_path / "agent.log")
    try:
        ready = a.wait_for(lambda f: True)
        assert ready.type == Type.READY and ready.id == 0
        assert 0 < ready.ready_ns() <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    finally:
        a.close()


def test_output_status_and_times(guest_agent: Agent, tmp_path: Path) -> None:
    guest_agent.run(7, "echo out; echo err >&2; pwd; exit 3")
    end = guest_agent.wait_exit(7)
    assert guest_agent.of(7)[0] == Type.STARTED and guest_agent.of(7)[-1] == Type.EXIT
    assert guest_agent.output(7) == f"out\n{tmp_path}\n".encode()
    assert guest_agent.output(7, Type.STDERR) == b"err\n"
    assert os.waitstatus_to_exitcode(status(end)) == 3
    started = guest_agent.wait_for(lambda f: f.type == Type.STARTED and f.id == 7)
    start_ns, pid = started.started()
    assert pid > 0
    exit_start, exit_end, _ = end.exit()
    assert exit_start == start_ns <= exit_end <= time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def test_a_missing_program_is_127_and_not_found(guest_agent: Agent) -> None:
    guest_agent.run(1, "no-such-program-ns3uml")
    assert os.waitstatus_to_exitcode(status(guest_agent.wait_exit(1))) == 127
    assert b"not found" in guest_agent.output(1, Type.STDERR)


def test_stdin_is_dev_null(guest_agent: Agent) -> None:
    guest_agent.run(1, "cat; echo end")
    guest_agent.wait_exit(1, timeout=10)
    assert guest_agent.output(1) == b"end\n"


def test_signal_kills_the_command(guest_agent: Agent) -> None:
    guest_agent.run(5, "sleep 30")
    guest_agent.wait_for(lambda f: f.type == Type.STARTED)
    guest_agent.send(ap.signal_frame(5, signal.SIGTERM))
    st = status(guest_agent.wait_exit(5, timeout=10))
    assert os.WIFSIGNALED(st) and os.WTERMSIG(st) == signal.SIGTERM


def test_signal_to_an_unknown_id_is_an_error_with_that_id(guest_agent: Agent) -> None:
    guest_agent.send(ap.signal_frame(42, signal.SIGTERM))
    err = guest_agent.wait_for(lambda f: f.type == Type.ERROR)
    assert err.id == 42 and "42" in err.text()


def test_two_commands_at_once_keep_their_output_apart(guest_agent: Agent) -> None:
    loop = "for i in 1 2 3 4 5; do echo {0}$i; sleep 0.02; done"
    guest_agent.run(1, loop.format("a"))
    guest_agent.run(2, loop.format("b"))
    guest_agent.wait_exit(1)
    guest_agent.wait_exit(2)
    assert guest_agent.output(1) == b"a1\na2\na3\na4\na5\n"
    assert guest_agent.output(2) == b"b1\nb2\nb3\nb4\nb5\n"
    # They ran side by side: the second started before the first ended.
    started2 = guest_agent.wait_for(lambda f: f.type == Type.STARTED and f.id == 2)
    assert started2.started()[0] < guest_agent.wait_exit(1).exit()[1]


def test_a_background_grandchild_does_not_delay_exit(guest_agent: Agent) -> None:
    t0 = time.monotonic()
    guest_agent.run(1, "sleep 30 & echo left")
    end = guest_agent.wait_exit(1, timeout=10)
    assert time.monotonic() - t0 < 5
    assert os.waitstatus_to_exitcode(status(end)) == 0
    assert guest_agent.output(1) == b"left\n"
    # The sleep still runs in the command's group (the fixture kills it).
    assert len(procs.group_members(guest_agent.pids[0])) == 1


def test_large_output_arrives_whole_and_in_order(guest_agent: Agent) -> None:
    guest_agent.run(1, "seq 1 160000; seq 1 1000 >&2")  # about 1 MB
    guest_agent.wait_exit(1, timeout=60)
    expected = "".join(f"{i}\n" for i in range(1, 160001)).encode()
    assert len(expected) > 1_000_000
    assert guest_agent.output(1) == expected
    assert guest_agent.output(1, Type.STDERR) == "".join(f"{i}\n" for i in range(1, 1001)).encode()
    sizes = [len(f.payload) for f in guest_agent.frames if f.type == Type.STDOUT]
    assert max(sizes) <= 16384 and len(sizes) < len(expected) // 1000


def test_a_frame_split_byte_by_byte(guest_agent: Agent) -> None:
    for byte in ap.run_frame(3, "echo split"):
        guest_agent.send(bytes([byte]))
        time.sleep(0.002)  # separate reads on the agent's side
    guest_agent.wait_exit(3)
    assert guest_agent.output(3) == b"split\n"


def test_several_frames_in_one_piece(guest_agent: Agent) -> None:
    guest_agent.send(ap.run_frame(1, "echo one") + ap.run_frame(2, "echo two"))
    guest_agent.wait_exit(1)
    guest_agent.wait_exit(2)
    assert (guest_agent.output(1), guest_agent.output(2)) == (b"one\n", b"two\n")


@pytest.mark.parametrize("header", [
    ap.HEADER.pack(ap.MAX_PAYLOAD + 1, Type.RUN, 0, 1),
    ap.HEADER.pack(4, Type.RUN, 1, 1),
    ap.HEADER.pack(0, 99, 0, 1),
    ap.HEADER.pack(8, Type.READY, 0, 0) + bytes(8),  # guest-to-host type
], ids=["too-long", "reserved", "unknown-type", "wrong-direction"])
def test_a_malformed_frame_is_an_error_and_the_agent_goes_on(guest_agent: Agent,
                                                             header: bytes) -> None:
    guest_agent.send(header)
    err = guest_agent.wait_for(lambda f: f.type == Type.ERROR)
    assert err.id == 0
    guest_agent.run(9, "echo still here")
    guest_agent.wait_exit(9)
    assert guest_agent.output(9) == b"still here\n"


def test_bad_runs_are_errors_with_their_id(guest_agent: Agent, tmp_path: Path) -> None:
    guest_agent.run(1, "sleep 30")
    guest_agent.run(1, "echo again")  # id in use
    guest_agent.send(ap.encode(Type.RUN, 2, b"\0\0"))  # payload too short
    guest_agent.send(ap.encode(Type.RUN, 3, b"\0\0\0\0echo\0nul"))
    errors = {guest_agent.wait_for(lambda f, i=i: f.type == Type.ERROR and f.id == i).id
              for i in (1, 2, 3)}
    assert errors == {1, 2, 3}
    guest_agent.send(ap.signal_frame(1, signal.SIGKILL))
    guest_agent.wait_exit(1)


def test_a_missing_workdir_is_an_error_with_the_id(agent_binary: Path, tmp_path: Path) -> None:
    a = Agent(agent_binary, tmp_path / "missing", tmp_path / "agent.log")
    try:
        a.run(4, "true")
        err = a.wait_for(lambda f: f.type == Type.ERROR)
        assert err.id == 4 and "No such file" in err.text()
        assert Type.STARTED not in a.of(4)
    finally:
        a.close()


def test_poweroff_when_not_pid_1_exits_0(guest_agent: Agent) -> None:
    guest_agent.run(1, "sleep 30")
    guest_agent.wait_for(lambda f: f.type == Type.STARTED)
    guest_agent.send(ap.poweroff_frame())
    assert guest_agent.proc.wait(timeout=10) == 0
    assert _gone(guest_agent.pids[0])


def test_the_host_going_away_ends_the_agent_and_its_commands(guest_agent: Agent) -> None:
    guest_agent.run(1, "sleep 30")
    guest_agent.wait_for(lambda f: f.type == Type.STARTED)
    guest_agent.sock.shutdown(socket.SHUT_RDWR)
    assert guest_agent.proc.wait(timeout=10) == 0
    assert _gone(guest_agent.pids[0])


def _gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while procs.group_members(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- build and cache -----------------------------------------------------------------------


def test_the_source_is_warning_free(tmp_path: Path) -> None:
    out = tmp_path / "agent"
    subprocess.run([agent.COMPILER, *agent.CFLAGS, "-Werror",
                    f"-I{agent.protocol_header().parent}", "-o", str(out),
                    str(agent.agent_source())], check=True)
    assert out.stat().st_size > 0


def test_the_agent_is_static(agent_binary: Path) -> None:
    # No PT_INTERP: it needs no dynamic loader nor any of the host's libraries.
    assert b"/ld-linux" not in agent_binary.read_bytes()[:4096]
    out = subprocess.run(["file", "-L", str(agent_binary)], capture_output=True, text=True)
    if out.returncode == 0:
        assert "statically linked" in out.stdout


def test_cache_hit_is_fast_and_a_source_change_rebuilds(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("NS3_UML_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NS3_UML_AGENT", raising=False)
    assert find_agent() is None
    first = ensure_agent()
    assert first.is_relative_to(tmp_path / "cache" / "agent")
    assert first.name == "ns3-uml-agent"
    mtime = first.stat().st_mtime_ns
    t0 = time.monotonic()
    assert ensure_agent() == first
    assert time.monotonic() - t0 < 0.5
    assert first.stat().st_mtime_ns == mtime
    changed = tmp_path / "ns3-uml-agent.c"
    changed.write_text(agent.agent_source().read_text() + "/* changed */\n")
    monkeypatch.setattr(agent, "agent_source", lambda: changed)
    second = ensure_agent()
    assert second != first and second.parent.parent == first.parent.parent
    assert first.exists() and second.exists()
    assert not [p for p in (tmp_path / "cache" / "agent").rglob(".*.tmp")]


def test_a_failed_build_names_the_compiler_output(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("NS3_UML_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "ns3-uml-agent.c"
    broken.write_text("int main(void) { return nosuchsymbol; }\n")
    monkeypatch.setattr(agent, "agent_source", lambda: broken)
    with pytest.raises(AgentBuildError, match="nosuchsymbol"):
        build_agent()
    assert find_agent() is None
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()
                and not p.name.endswith(".lock")]


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                       capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "my-agent"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NS3_UML_AGENT", str(fake))
    assert find_agent() == fake
    assert ensure_agent() == fake
    assert cli.main(["agent", "path"]) == 0
    assert capsys.readouterr().out == f"{fake}\n"
    monkeypatch.setenv("NS3_UML_AGENT", str(tmp_path / "missing"))
    with pytest.raises(AgentBuildError, match="NS3_UML_AGENT"):
        find_agent()
    assert cli.main(["agent", "path"]) == 1


def test_protocol_constants_match_the_header() -> None:
    """agent_protocol.py mirrors bindings/model/agent-protocol.h, the one definition."""
    from ns3_uml.guest.agent import protocol_header

    defines = dict(re.findall(r"^#define (AGENT_\w+) (.+)$", protocol_header().read_text(),
                              re.M))
    assert int(defines["AGENT_HEADER_SIZE"]) == ap.HEADER_SIZE == ap.HEADER.size
    assert int(defines["AGENT_MAX_PAYLOAD"]) == ap.MAX_PAYLOAD
    assert defines["AGENT_PORT_NAME"] == f'"{ap.PORT_NAME}"'
    assert defines["AGENT_PORT_DEVICE"] == f'"{ap.PORT_DEVICE}"'
    types = {k[len("AGENT_"):]: int(v) for k, v in defines.items() if v.isdigit()
             and k not in ("AGENT_HEADER_SIZE", "AGENT_MAX_PAYLOAD")}
    assert types == {t.name: t.value for t in ap.Type}
