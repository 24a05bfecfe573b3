"""Unit tests of the reference time-travel client against a scripted calendar.

The calendar side is played by the test itself (``Peer``) over a socketpair,
one message at a time, so every message the client sends is checked in order.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import socket
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest


from ns3_uml.protocol import (  # noqa: E402
    CAP_TIME_SHARE,
    FLAG_REQ_RUN,
    MSG,
    MSG_SIZE,
    SHM_CLIENT,
    SHM_HEADER,
    SHM_OFF_CURRENT_TIME,
    SHM_OFF_FREE_UNTIL,
    SHM_OFF_RUNNING_ID,
    SHM_VERSION,
    TIME_NEVER,
    Op,
    client_offset,
    shm_size,
)
from ns3_uml.testing import HostileTTClient, TTClient, TTPanic, run_script  # noqa: E402

TIMEOUT = 5.0
MINUS_ONE = (1 << 64) - 1


# ----------------------------------------------------------------------
# the scripted calendar
# ----------------------------------------------------------------------
class Peer:
    """Calendar end of the time socket, driven message by message."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(TIMEOUT)
        self.seq = 1000

    def recv(self) -> tuple[int, int, int]:
        data = b""
        while len(data) < MSG_SIZE:
            chunk = self.sock.recv(MSG_SIZE - len(data))
            if not chunk:
                raise EOFError("client closed")
            data += chunk
        return MSG.unpack(data)

    def expect(self, op: int, time: int | None = None) -> tuple[int, int]:
        got_op, seq, got_time = self.recv()
        assert Op(got_op) == op, f"expected {Op(op).name}, got {got_op}"
        if time is not None:
            assert got_time == time, f"{Op(op).name}: {got_time} != {time}"
        return seq, got_time

    def send(self, op: int, time: int = 0, seq: int | None = None,
             fds: list[int] | None = None) -> int:
        if seq is None:
            self.seq += 1
            seq = self.seq
        data = MSG.pack(op, seq, time)
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)
        return seq

    def ack(self, seq: int, time: int = 0, fds: list[int] | None = None) -> None:
        self.send(Op.ACK, time, seq, fds)

    def call(self, op: int, time: int = 0) -> None:
        """Send a calendar message and check the client's ACK."""
        seq = self.send(op, time)
        self.expect_ack(seq)

    def expect_ack(self, seq: int) -> None:
        got_op, got_seq, _ = self.recv()
        assert (got_op, got_seq) == (Op.ACK, seq)

    def silent(self, wait: float = 0.2) -> bool:
        return not select.select([self.sock], [], [], wait)[0]


def bg(fn: Callable[..., Any], *args: Any) -> Future:
    """Run a blocking client call in a thread."""
    pool = ThreadPoolExecutor(max_workers=1)
    fut = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return fut


def make_memfd(version: int, max_clients: int = 4, current_time: int = 0,
               free_until: int = 0, running_id: int = 0) -> tuple[int, mmap.mmap]:
    fd = os.memfd_create("tt-test")
    size = shm_size(max_clients)
    os.ftruncate(fd, size)
    mm = mmap.mmap(fd, size)
    SHM_HEADER.pack_into(mm, 0, version, size, free_until, current_time,
                         running_id, max_clients)
    return fd, mm


def shm_entry(mm: mmap.mmap, slot: int) -> tuple[int, int, int, int]:
    return SHM_CLIENT.unpack_from(mm, client_offset(slot))


def shm_header(mm: mmap.mmap) -> tuple[int, ...]:
    return SHM_HEADER.unpack_from(mm, 0)


def set_u64(mm: mmap.mmap, off: int, value: int) -> None:
    mm[off:off + 8] = value.to_bytes(8, sys.byteorder)


def set_u16(mm: mmap.mmap, off: int, value: int) -> None:
    mm[off:off + 2] = value.to_bytes(2, sys.byteorder)


def set_capa(mm: mmap.mmap, slot: int, capa: int) -> None:
    off = client_offset(slot)
    mm[off:off + 4] = capa.to_bytes(4, sys.byteorder)


@pytest.fixture
def pair():
    cal_sock, cli_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    made: list[TTClient] = []

    def factory(cls: type[TTClient] = TTClient, **kw: Any) -> tuple[Peer, TTClient]:
        client = cls(sock=cli_sock, client_id=kw.pop("client_id", 7),
                     timeout=TIMEOUT, **kw)
        made.append(client)
        return Peer(cal_sock), client

    yield factory
    for client in made:
        client.close()
    cal_sock.close()


def do_start(peer: Peer, client: TTClient, slot: int = 1,
             fds: list[int] | None = None) -> None:
    fut = bg(client.start)
    seq, ident = peer.expect(Op.START)
    assert ident == client.client_id
    peer.ack(seq, slot, fds)
    fut.result(TIMEOUT)


def dev_null() -> int:
    return os.open(os.devnull, os.O_WRONLY)


def own_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


# ----------------------------------------------------------------------
# START
# ----------------------------------------------------------------------
def test_start_without_fds(pair):
    peer, client = pair()
    do_start(peer, client, slot=3)
    assert client.slot == 3
    assert client.shm is None
    assert client.start_fds == 0
    assert any("fds" in w for w in client.warnings)
    assert client.seq == 1


def test_start_version0_memfd_falls_back_and_closes_fds(pair):
    peer, client = pair()
    before = own_fds()
    memfd, mm = make_memfd(version=0)
    log = dev_null()
    do_start(peer, client, slot=2, fds=[memfd, log])
    os.close(memfd)
    os.close(log)
    mm.close()
    assert client.shm is None
    assert client.start_fds == 2
    assert own_fds() == before          # both received fds were closed
    # message mode: a timer becomes a REQUEST message
    fut = bg(client.add_event, 500)
    seq, _ = peer.expect(Op.REQUEST, 500)
    peer.ack(seq)
    fut.result(TIMEOUT)


def test_no_shm_flag_refuses_valid_page(pair):
    peer, client = pair(use_shm=False)
    memfd, mm = make_memfd(version=SHM_VERSION)
    log = dev_null()
    do_start(peer, client, slot=1, fds=[memfd, log])
    os.close(memfd)
    os.close(log)
    assert client.shm is None
    assert shm_entry(mm, 1)[0] == 0     # no capability announced
    mm.close()


def test_start_shm_version2(pair):
    peer, client = pair()
    memfd, mm = make_memfd(version=SHM_VERSION, current_time=5000,
                           free_until=5000, running_id=1)
    log = dev_null()
    do_start(peer, client, slot=1, fds=[memfd, log])
    os.close(memfd)
    os.close(log)
    assert client.shm is not None
    assert client.shm_offset == 5000
    assert client.offset == 5000
    assert shm_entry(mm, 1)[0] & CAP_TIME_SHARE
    mm.close()


def test_start_shm_too_short_for_slot(pair):
    peer, client = pair()
    memfd, mm = make_memfd(version=SHM_VERSION, max_clients=2)
    do_start(peer, client, slot=40, fds=[memfd, dev_null()])
    os.close(memfd)
    assert client.shm is None
    mm.close()


# ----------------------------------------------------------------------
# message mode
# ----------------------------------------------------------------------
def test_sleep_message_sequence(pair):
    peer, client = pair()
    do_start(peer, client)
    fut = bg(client.sleep, 1000)
    seq, _ = peer.expect(Op.REQUEST, 1000)
    peer.ack(seq)
    seq, t = peer.expect(Op.WAIT)
    assert t == MINUS_ONE
    peer.ack(seq)
    peer.call(Op.RUN, 1000)
    # nothing else pending: the idle loop asks for S64_MAX
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    fut.result(TIMEOUT)
    assert client.time == 1000
    assert client.runs == [{"local": 1000, "calendar": 1000}]
    assert client.sent == {"START": 1, "REQUEST": 2, "WAIT": 1, "ACK": 1}
    assert client.received == {"ACK": 4, "RUN": 1}
    assert peer.silent()


def run_at_1000_free_until_10000(peer: Peer, client: TTClient) -> None:
    """Start; the client sleeps 1 us and is RUN at 1000 with free-until 10 us (its first
    WAIT is at time 0: nothing to publish, with patch 0004 or without)."""
    do_start(peer, client)
    fut = bg(client.sleep, 1000)
    seq, _ = peer.expect(Op.REQUEST, 1000)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    peer.call(Op.FREE_UNTIL, 10_000)
    peer.call(Op.RUN, 1000)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    fut.result(TIMEOUT)


def test_free_until_honoured_then_forgotten_at_wait(pair):
    peer, client = pair(publish_before_wait=False)  # stock UML
    run_at_1000_free_until_10000(peer, client)
    assert client.free_until == 10_000

    # before free_until: runs without a single message
    client.sleep(1000)
    client.sleep_until(9_999)
    assert client.time == 9_999
    assert peer.silent()

    # at/after free_until: REQUEST + WAIT, and the grant is forgotten
    fut = bg(client.sleep_until, 20_000)
    seq, _ = peer.expect(Op.REQUEST, 20_000)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    assert client.free_until is None
    peer.call(Op.RUN, 20_000)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    fut.result(TIMEOUT)
    fut = bg(client.add_event, 20_100)
    seq, _ = peer.expect(Op.REQUEST, 20_100)   # no free_until any more
    peer.ack(seq)
    fut.result(TIMEOUT)


def test_ack_with_wrong_seq_panics(pair):
    peer, client = pair()
    do_start(peer, client)
    fut = bg(client.sleep, 1000)
    seq, _ = peer.expect(Op.REQUEST, 1000)
    peer.ack(seq + 1)
    with pytest.raises(TTPanic, match="different seqno"):
        fut.result(TIMEOUT)


def test_messages_served_while_waiting_for_ack(pair):
    peer, client = pair()
    do_start(peer, client)
    fut = bg(client.broadcast, 5)
    seq, value = peer.expect(Op.BROADCAST)
    assert value == 5
    peer.call(Op.FREE_UNTIL, 7000)
    peer.call(Op.BROADCAST, 0xBEEF)
    peer.call(Op.RUN, 300)              # consumed inside the ACK wait
    unknown = peer.send(42, 1)
    peer.expect_ack(unknown)            # unknown op: warned and ACKed
    peer.ack(seq)
    fut.result(TIMEOUT)
    assert client.free_until == 7000
    assert client.time == 300
    assert client.runs[0]["in_ack_wait"] is True
    assert client.broadcasts[0]["value"] == 0xBEEF
    assert any(e["event"] == "unexpected_message" for e in client.log)


def test_the_time_reached_is_published_before_wait(pair):
    # Patch 0004: having run freely past the time the calendar knows, UML tells it (UPDATE)
    # before WAIT; the stock kernel does not (test above).
    peer, client = pair()
    run_at_1000_free_until_10000(peer, client)
    client.sleep_until(9_999)
    assert peer.silent()
    fut = bg(client.sleep_until, 20_000)
    seq, _ = peer.expect(Op.REQUEST, 20_000)
    peer.ack(seq)
    seq, _ = peer.expect(Op.UPDATE, 9_999)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    peer.call(Op.RUN, 20_000)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    fut.result(TIMEOUT)


def test_backwards_run_panics(pair):
    peer, client = pair(publish_before_wait=False)
    do_start(peer, client)
    fut = bg(client.sleep, 1000)
    seq, _ = peer.expect(Op.REQUEST)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    peer.call(Op.RUN, 1000)
    seq, _ = peer.expect(Op.REQUEST)
    peer.ack(seq)
    fut.result(TIMEOUT)
    fut = bg(client.sleep, 10)
    seq, _ = peer.expect(Op.REQUEST, 1010)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    peer.send(Op.RUN, 999)
    with pytest.raises(TTPanic, match="backwards"):
        fut.result(TIMEOUT)


def test_get_tod_boot_sequence(pair):
    peer, client = pair()
    do_start(peer, client)
    fut = bg(client.get_tod)
    seq, _ = peer.expect(Op.GET_TOD, MINUS_ONE)
    peer.ack(seq, 10**18 + 50)
    seq, _ = peer.expect(Op.GET, MINUS_ONE)
    peer.ack(seq, 50)
    assert fut.result(TIMEOUT) == 10**18 + 50
    assert client.time == 50
    assert client.get_tod() == 10**18 + 50   # later reads: no messages
    assert peer.silent()


def test_update_only_when_time_moved(pair):
    peer, client = pair()
    do_start(peer, client)
    client.propagate_time()             # time 0 == last propagated: silent
    assert peer.silent(0.1)
    fut = bg(client.ndelay, 100)
    seq, _ = peer.expect(Op.REQUEST, 100)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    peer.call(Op.RUN, 100)
    fut.result(TIMEOUT)                 # non-idle: nothing left to request
    fut = bg(client.propagate_time)
    seq, _ = peer.expect(Op.UPDATE, 100)
    peer.ack(seq)
    fut.result(TIMEOUT)


def test_exit_running_closes_without_wait(pair):
    peer, client = pair()
    do_start(peer, client)
    client.exit_running()
    with pytest.raises(EOFError):
        peer.recv()


def test_robustness_helpers(pair):
    peer, client = pair(HostileTTClient)
    do_start(peer, client)
    client.send_raw(bytes.fromhex("0100"))
    assert peer.sock.recv(16) == b"\x01\x00"
    client.send_as_calendar(Op.FREE_UNTIL, 99)
    assert peer.expect(Op.FREE_UNTIL, 99)[0] == 2
    client.ack_next_with_wrong_seq()
    fut = bg(client.broadcast, 3)
    bseq, _ = peer.expect(Op.BROADCAST, 3)
    seq = peer.send(Op.FREE_UNTIL, 1)
    op, got, _ = peer.recv()
    assert (op, got) == (Op.ACK, seq + 1)
    peer.ack(bseq)
    fut.result(TIMEOUT)
    client.send_short_and_close(5)
    assert len(peer.sock.recv(16)) == 5
    assert peer.sock.recv(16) == b""


def test_hostile_steps_need_a_hostile_client(pair):
    peer, client = pair()
    do_start(peer, client)
    with pytest.raises(ValueError, match="needs a HostileTTClient"):
        run_script(client, [{"op": "raw", "hex": "0100"}])
    assert peer.silent(0.1)


# ----------------------------------------------------------------------
# shared memory
# ----------------------------------------------------------------------
def start_shm(peer: Peer, client: TTClient, offset: int = 5000,
              slot: int = 1) -> mmap.mmap:
    # like usfstl: running_id = the new client, free_until = now
    memfd, mm = make_memfd(version=SHM_VERSION, current_time=offset,
                           free_until=offset, running_id=slot)
    do_start(peer, client, slot=slot, fds=[memfd, dev_null()])
    os.close(memfd)
    assert client.shm is not None
    return mm


def test_shm_request_written_not_sent(pair):
    peer, client = pair()
    mm = start_shm(peer, client)
    fut = bg(client.sleep, 1000)
    peer.expect(Op.WAIT)                # the only message: WAIT, no ACK wanted
    capa, flags, req_time, _ = shm_entry(mm, 1)
    assert flags & FLAG_REQ_RUN
    assert req_time == 6000             # absolute calendar time
    assert shm_header(mm)[2] == 5000    # free_until untouched (not lower)
    set_u64(mm, SHM_OFF_FREE_UNTIL, 6000)
    peer.send(Op.RUN, 1000)             # RUN carries the client-local time
    fut.result(TIMEOUT)
    assert client.time == 1000
    assert client.runs == [{"local": 1000, "calendar": 6000}]
    # idle again with nothing pending: REQ_RUN for "never" (S64_MAX + offset)
    _, flags, req_time, _ = shm_entry(mm, 1)
    assert flags & FLAG_REQ_RUN and req_time == TIME_NEVER + 5000
    assert client.sent == {"START": 1, "WAIT": 1}
    assert client.received == {"ACK": 1, "RUN": 1}
    assert peer.silent()
    mm.close()


def test_shm_ignores_free_until_message_but_acks(pair):
    peer, client = pair()
    mm = start_shm(peer, client)
    fut = bg(client.broadcast, 1)
    seq, _ = peer.expect(Op.BROADCAST)
    peer.call(Op.FREE_UNTIL, 10**9)
    peer.ack(seq)
    fut.result(TIMEOUT)
    assert client.free_until == 5000    # still the page's value
    mm.close()


def test_shm_propagate_time(pair):
    peer, client = pair()
    mm = start_shm(peer, client)
    set_u64(mm, SHM_OFF_FREE_UNTIL, 10**6)
    client.ndelay(700)                  # free: no messages
    client.propagate_time()
    assert shm_header(mm)[3] == 5700
    set_u16(mm, SHM_OFF_RUNNING_ID, 0)
    with pytest.raises(TTPanic, match="not running"):
        client.propagate_time()
    assert peer.silent(0.1)
    mm.close()


# ----------------------------------------------------------------------
# interrupts
# ----------------------------------------------------------------------
def irq_pair() -> tuple[socket.socket, socket.socket]:
    dev, cli = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    dev.settimeout(TIMEOUT)
    return dev, cli


def test_irq_message_mode(pair):
    dev, cli_irq = irq_pair()
    peer, client = pair(irq=cli_irq, publish_before_wait=False)
    do_start(peer, client)
    fut = bg(client.wait_irq)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    # the device interrupt while the client waits
    dev.sendall(b"\x01")
    seq, _ = peer.expect(Op.GET)
    peer.ack(seq, 300)
    seq, _ = peer.expect(Op.REQUEST, 300)
    assert not select.select([dev], [], [], 0.2)[0]   # no reply before ACK
    peer.ack(seq)
    assert dev.recv(1) == b"\x00"
    # the RUN for the interrupt; without FREE_UNTIL UML requests it again
    # and needs a second WAIT/RUN before it delivers the irq
    peer.call(Op.RUN, 300)
    seq, _ = peer.expect(Op.REQUEST, 300)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    peer.call(Op.RUN, 300)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    fut.result(TIMEOUT)
    assert client.irqs == [{"received_local": 300, "received_calendar": 300,
                            "waiting": True, "handled_local": 300,
                            "handled_calendar": 300}]
    dev.close()


def test_irq_message_mode_with_free_until(pair):
    dev, cli_irq = irq_pair()
    peer, client = pair(irq=cli_irq)
    do_start(peer, client)
    fut = bg(client.wait_irq)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    seq, _ = peer.expect(Op.WAIT)
    peer.ack(seq)
    dev.sendall(b"\x01")
    seq, _ = peer.expect(Op.GET)
    peer.ack(seq, 300)
    seq, _ = peer.expect(Op.REQUEST, 300)
    peer.ack(seq)
    assert dev.recv(1) == b"\x00"
    peer.call(Op.FREE_UNTIL, 1000)
    peer.call(Op.RUN, 300)
    seq, _ = peer.expect(Op.REQUEST, TIME_NEVER)
    peer.ack(seq)
    fut.result(TIMEOUT)
    assert client.irqs[0]["handled_local"] == 300
    assert peer.silent()
    dev.close()


def test_irq_shm_without_messages(pair):
    dev, cli_irq = irq_pair()
    peer, client = pair(irq=cli_irq)
    mm = start_shm(peer, client)
    fut = bg(client.wait_irq)
    peer.expect(Op.WAIT)
    # the calendar runs now (slot 0 shares time) and some job is at 1e6
    set_capa(mm, 0, CAP_TIME_SHARE)
    set_u16(mm, SHM_OFF_RUNNING_ID, 0)
    set_u64(mm, SHM_OFF_CURRENT_TIME, 5300)
    set_u64(mm, SHM_OFF_FREE_UNTIL, 10**6)
    dev.sendall(b"\x01")
    assert dev.recv(1) == b"\x00"
    assert peer.silent()                # no GET, no REQUEST
    _, flags, req_time, _ = shm_entry(mm, 1)
    assert flags & FLAG_REQ_RUN and req_time == 5300
    assert shm_header(mm)[2] == 5300    # the waiting client lowered it
    # grant it, with free_until past the irq time (next job at 10000)
    set_u16(mm, SHM_OFF_RUNNING_ID, 1)
    set_u64(mm, SHM_OFF_FREE_UNTIL, 10_000)
    peer.send(Op.RUN, 300)
    fut.result(TIMEOUT)
    assert client.irqs[0]["handled_local"] == 300
    assert client.irqs[0]["handled_calendar"] == 5300
    assert client.sent == {"START": 1, "WAIT": 1}
    assert peer.silent()
    mm.close()
    dev.close()


def test_irq_shm_running_without_capa_sends_request(pair):
    dev, cli_irq = irq_pair()
    peer, client = pair(irq=cli_irq)
    mm = start_shm(peer, client)
    fut = bg(client.wait_irq)
    peer.expect(Op.WAIT)
    set_u16(mm, SHM_OFF_RUNNING_ID, 0)  # slot 0 without CAP_TIME_SHARE
    set_u64(mm, SHM_OFF_CURRENT_TIME, 5300)
    dev.sendall(b"\x01")
    seq, _ = peer.expect(Op.REQUEST, 300)   # client-local time on the wire
    peer.ack(seq)
    assert dev.recv(1) == b"\x00"
    set_u16(mm, SHM_OFF_RUNNING_ID, 1)
    set_u64(mm, SHM_OFF_FREE_UNTIL, 10_000)
    peer.send(Op.RUN, 300)
    fut.result(TIMEOUT)
    assert client.sent == {"START": 1, "WAIT": 1, "REQUEST": 1}
    mm.close()
    dev.close()


# ----------------------------------------------------------------------
# scripts and the command line
# ----------------------------------------------------------------------
class AutoCalendar(threading.Thread):
    """A minimal one-client message-mode calendar (for script tests)."""

    def __init__(self, sock: socket.socket | None = None,
                 listen: str | None = None, tod: int = 10**18,
                 bad_start_seq: bool = False) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.listen = listen
        self.tod = tod
        self.bad_start_seq = bad_start_seq
        self.now = 0
        self.req: int | None = None
        self.seen: list[str] = []
        self.error: BaseException | None = None
        if listen is not None:
            self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.server.bind(listen)
            self.server.listen(1)

    def run(self) -> None:
        try:
            if self.sock is None:
                self.server.settimeout(TIMEOUT)
                self.sock, _ = self.server.accept()
            self._serve(Peer(self.sock))
        except EOFError:
            pass
        except BaseException as exc:   # reported by the test
            self.error = exc

    def _serve(self, peer: Peer) -> None:
        while True:
            op, seq, time = peer.recv()
            self.seen.append(Op(op).name if op in Op._value2member_map_
                             else str(op))
            if op == Op.START:
                memfd, mm = make_memfd(version=0)
                log = dev_null()
                peer.ack(seq + self.bad_start_seq, 1, [memfd, log])
                os.close(memfd)
                os.close(log)
                mm.close()
            elif op == Op.REQUEST:
                self.req = time
                peer.ack(seq)
            elif op == Op.WAIT:
                peer.ack(seq)
                assert self.req is not None and self.req < TIME_NEVER
                self.now, self.req = self.req, None
                peer.call(Op.RUN, self.now)
            elif op == Op.GET:
                peer.ack(seq, self.now)
            elif op == Op.GET_TOD:
                peer.ack(seq, self.tod + self.now)
            elif op == Op.UPDATE:
                self.now = time
                peer.ack(seq)
            elif op == Op.BROADCAST:
                peer.ack(seq)
            elif op == Op.ACK:
                pass
            else:
                raise AssertionError(f"unexpected op {op}")

    def close(self) -> None:
        if self.listen is not None:
            self.server.close()
            if self.sock is not None:
                self.sock.close()


def test_run_script_in_process():
    cal_sock, cli_sock = socket.socketpair()
    cal = AutoCalendar(sock=cal_sock)
    cal.start()
    client = TTClient(sock=cli_sock, client_id=1, timeout=TIMEOUT)
    client.start()
    steps = [{"op": "get_tod"},
             {"op": "repeat", "count": 10, "steps": [{"op": "sleep", "ns": 1000}]},
             {"op": "read_clock"},
             {"op": "update"},
             {"op": "broadcast", "value": 5},
             {"op": "exit"},
             {"op": "sleep", "ns": 1}]        # never reached
    assert run_script(client, steps) is True
    cal.join(TIMEOUT)
    assert cal.error is None
    assert client.time == 10_000 + 256
    assert [r["local"] for r in client.runs][:10] == list(range(1000, 10_001, 1000))
    assert client.tods == [10**18]
    assert cal.seen[-1] == "BROADCAST"        # departed without WAIT
    cal_sock.close()


def run_cli(tmp_path: Path, script: list[dict[str, Any]],
            **cal_kw: Any) -> tuple[subprocess.CompletedProcess, AutoCalendar]:
    path = str(tmp_path / "cal.sock")
    cal = AutoCalendar(listen=path, **cal_kw)
    cal.start()
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ns3_uml.testing.tt_client", "--socket", path,
         "--id", "0x1a", "--script", json.dumps(script), "--out", str(out),
         "--timeout", str(TIMEOUT)],
        capture_output=True, text=True, timeout=30)
    cal.join(TIMEOUT)
    cal.close()
    return proc, cal


def test_cli_end_to_end(tmp_path):
    script = [{"op": "get_tod"},
              {"op": "sleep", "ns": 1_000_000},
              {"op": "repeat", "count": 3, "steps": [{"op": "sleep", "ns": 1000}]},
              {"op": "update"},
              {"op": "broadcast", "value": 5}]
    proc, cal = run_cli(tmp_path, script)
    assert proc.returncode == 0, proc.stderr
    assert cal.error is None
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "ok"
    assert res["id"] == 0x1A
    assert res["slot"] == 1 and res["shm"] is False
    assert res["start_fds"] == 2
    assert [r["local"] for r in res["runs"]] == [1_000_000, 1_001_000,
                                                 1_002_000, 1_003_000]
    assert res["tods"] == [10**18]
    assert res["final_time"] == 1_003_000
    assert res["messages"]["sent"]["WAIT"] == 4
    assert res["messages"]["received"]["RUN"] == 4
    assert cal.seen[-1] == "BROADCAST"      # poweroff: closed while running


def test_cli_panics_on_wrong_start_seq(tmp_path):
    proc, _cal = run_cli(tmp_path, [{"op": "sleep", "ns": 10}],
                         bad_start_seq=True)
    assert proc.returncode == 2
    assert "different seqno" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
