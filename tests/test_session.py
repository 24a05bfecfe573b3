"""GuestSession, the host's side of an agent, against a stand-in for the console device.

The stand-in holds the device's side still (bytes in, bytes out, no ns-3); the real device
and the real agent are exercised together in tests/test_interactive.py and
tests/test_console.py.
"""

from __future__ import annotations

import re
import signal

import numpy as np
import pytest

from ns3_uml import agent_protocol as ap
from ns3_uml.session import GuestSession, wake_mask


class StandInDevice:
    """The ns3::VirtioConsoleDevice calls GuestSession makes, over two byte buffers."""

    def __init__(self) -> None:
        self.to_guest = bytearray()
        self.from_guest = bytearray()
        self.connected = True

    def Send(self, data: np.ndarray, length: int) -> None:  # noqa: N802 - the C++ names
        self.to_guest += bytes(data[:length])

    def GetReceivedSize(self) -> int:  # noqa: N802
        return len(self.from_guest)

    def TakeReceived(self, buf: np.ndarray, length: int) -> int:  # noqa: N802
        n = min(length, len(self.from_guest))
        buf[:n] = np.frombuffer(bytes(self.from_guest[:n]), dtype=np.uint8)
        del self.from_guest[:n]
        return n

    def IsConnected(self) -> bool:  # noqa: N802
        return self.connected

    def sent(self) -> list[ap.Frame]:
        frames = ap.FrameReader().feed(bytes(self.to_guest))
        self.to_guest.clear()
        return frames


@pytest.fixture
def session(tmp_path):
    return GuestSession("g", StandInDevice(), tmp_path / "out", not_before_ns=1_000_000_000,
                        stop_at_ns=50_000_000_000)


def _ready(session: GuestSession) -> None:
    session.device.from_guest += ap.ready_frame(20_000_000)
    session.take_frames()


def test_wake_mask_covers_ready_exit_and_error():
    assert wake_mask() == (1 << 0) | (1 << 4) | (1 << 5)


def test_scheduled_commands_go_in_order_after_ready_and_one_second(session):
    a = session.add("a", "sleep 1", scheduled=True)
    b = session.add("b", "server", background=True, scheduled=True)
    c = session.add("c", "late", at_ns=5_000_000_000, scheduled=True)
    assert session.due(2_000_000_000) == []  # the agent has not said READY
    _ready(session)
    assert session.due(500_000_000) == []
    assert session.next_wake_ns(500_000_000) == 1_000_000_000
    assert session.due(1_000_000_000) == [a]
    session.send_run(a)
    assert session.due(1_000_000_000) == []  # a is in the foreground
    assert session.next_wake_ns(1_000_000_000) == 50_000_000_000  # only the deadline
    session.device.from_guest += ap.exit_frame(a.id, 1_000_000_000, 2_000_000_000, 0)
    assert session.take_frames() == [a]
    assert session.due(2_000_000_000) == [b]  # b in the background, c not yet due
    session.send_run(b)
    assert session.next_wake_ns(2_000_000_000) == 5_000_000_000
    assert session.due(5_000_000_000) == [c]
    assert [(f.type, f.id) for f in session.device.sent()] == [
        (ap.Type.RUN, a.id), (ap.Type.RUN, b.id)]
    assert not session.scheduled_done()


def test_output_and_exit_make_a_result_and_its_files(session, tmp_path):
    _ready(session)
    c = session.add("hello", "echo hi; exit 3")
    session.send_run(c)
    session.device.from_guest += (ap.started_frame(c.id, 1_000_000_000, 77)
                                  + ap.encode(ap.Type.STDOUT, c.id, b"hi\n")
                                  + ap.encode(ap.Type.STDERR, c.id, b"oops\n"))
    assert session.take_frames() == []
    assert c.stdout == b"hi\n" and not c.done
    session.device.from_guest += ap.exit_frame(c.id, 1_000_000_000, 1_500_000_000, 3 << 8)
    assert session.take_frames() == [c]
    r = c.result()
    assert (r.returncode, r.stdout, r.stderr, r.start, r.end) == (3, "hi\n", "oops\n", 1.0, 1.5)
    out = tmp_path / "out"
    assert (out / "hello.rc").read_text() == "3\n"
    assert (out / "hello.time").read_text() == "1.000000000 1.500000000\n"


def test_a_signal_and_the_deadline(session):
    _ready(session)
    c = session.add("sleeper", "sleep 100", scheduled=True)
    session.send_run(c)
    session.reach_deadline()
    assert c.killed and session.stopped
    assert session.device.sent()[-1] == ap.Frame(ap.Type.SIGNAL, c.id,
                                                 int(signal.SIGKILL).to_bytes(4, "little"))
    session.device.from_guest += ap.exit_frame(c.id, 1, 2, signal.SIGKILL)
    session.take_frames()
    assert c.result().returncode is None and c.result().killed  # as the shell init says
    assert session.scheduled_done()


@pytest.mark.parametrize("frames, message", [
    (lambda c: ap.exit_frame(99, 1, 2, 0), "EXIT frame for unknown command 99"),
    (lambda c: ap.encode(ap.Type.EXIT, c.id, b"short"), "expected 20"),
    (lambda c: ap.exit_frame(c.id, 1, 2, 0) * 2, "(ended)"),
    (lambda c: ap.encode(ap.Type.ERROR, 0, b"bad frame"), "refused a frame: bad frame"),
    (lambda c: ap.HEADER.pack(1, 16, 7, 0) + b"x", "reserved 7"),
])
def test_what_breaks_the_protocol_names_the_guest(session, frames, message):
    _ready(session)
    c = session.add("x", "true")
    session.send_run(c)
    session.device.from_guest += frames(c)
    with pytest.raises(ap.AgentProtocolError, match=re.escape(message)) as err:
        session.take_frames()
    assert err.value.node == "g"


def test_gone_only_after_it_was_there(session):
    session.device.connected = False
    assert not session.gone  # booting: not connected yet
    session.device.connected = True
    assert not session.gone
    session.device.connected = False
    assert session.gone
