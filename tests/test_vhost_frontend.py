"""Tests of the reference vhost-user front-end against a scripted Python back-end.

The back-end (``ScriptedBackend``) is a tiny device written here: a socket server thread that
answers the start-up sequence, maps the memory fd it receives and reads/writes the rings
through its own mapping, so every test also proves the memory table is right.  It holds
still where a test needs that (``process_tx=False``).
"""

from __future__ import annotations

import mmap
import os
import queue
import select
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest


from ns3_uml.protocol import MSG, MSG_SIZE, Op  # noqa: E402
from ns3_uml.testing.tt_client import TTClient  # noqa: E402
from ns3_uml.testing.vhost_frontend import (  # noqa: E402
    DEFAULT_RESERVED,
    HostileFrontend,
    RingBroken,
    VhostBackendError,
    VhostConnectionClosed,
    VhostProtocolError,
    VhostTimeout,
    VhostUnsupported,
    VhostUserFrontend,
)
from ns3_uml.vhost_protocol import (  # noqa: E402
    CONFIG_HEAD,
    HEADER,
    HEADER_SIZE,
    LINUX_RX_BUF_LEN,
    MEM_REGION,
    MEM_REGIONS_HEAD,
    U64,
    UML_BACKEND_MAX_PAYLOAD,
    UML_PROTOCOL_FEATURES,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_FLAG_NEED_REPLY,
    VHOST_USER_REPLY_FLAGS,
    VHOST_USER_VERSION,
    VIRTIO_NET_HDR_MRG,
    VRING_ADDR,
    VRING_DESC,
    VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    VRING_LOG_NONE,
    VRING_STATE,
    VRING_USED_ELEM,
    VRING_USED_F_NO_NOTIFY,
    BackendRequest,
    NetFeature,
    ProtocolFeature,
    Request,
    VirtioFeature,
)

TIMEOUT = 5.0
MAC = bytes.fromhex("020000000a01")
BIT30 = 1 << VHOST_USER_F_PROTOCOL_FEATURES
V1 = 1 << VirtioFeature.VERSION_1
F_MAC = 1 << NetFeature.MAC
F_STATUS = 1 << NetFeature.STATUS
F_MTU = 1 << NetFeature.MTU
MEM = 16 << 20


def frame_of(n: int, size: int = 60) -> bytes:
    """A recognisable Ethernet frame: broadcast dst, our MAC, a counter in the body."""
    body = n.to_bytes(4, "little") * ((size - 14) // 4 + 1)
    return b"\xff" * 6 + MAC + b"\x88\xb5" + body[:size - 14]


# ----------------------------------------------------------------------
# the scripted back-end
# ----------------------------------------------------------------------
@dataclass
class Msg:
    request: int
    flags: int
    size: int
    payload: bytes
    nfds: int


@dataclass
class Vring:
    num: int = 0
    base: int = 0
    desc: int = 0
    used: int = 0
    avail: int = 0
    log: int = 0
    enabled: bool = False
    last_avail: int = 0
    used_idx: int = 0


@dataclass
class Region:
    guest: int
    size: int
    user: int
    offset: int
    mm: mmap.mmap


class ScriptedBackend:
    """A minimal vhost-user virtio-net device on a listening socket, in a thread."""

    def __init__(self, path: Path, *, features: int = V1 | F_MAC | BIT30,
                 protocol_features: int = UML_PROTOCOL_FEATURES, mac: bytes = MAC,
                 status: int = 1, mtu: int = 1500, process_tx: bool = True,
                 hdr_len: int = 12, events: list[tuple[Any, ...]] | None = None,
                 events_lock: threading.Lock | None = None) -> None:
        self.path = path
        self.features = features
        self.protocol_features = protocol_features
        self.config = bytearray(24)
        self.config[0:6] = mac
        struct.pack_into("<HHH", self.config, 6, status, 1, mtu)
        self.process_tx = process_tx
        self.hdr_len = hdr_len
        self.msgs: list[Msg] = []
        self.vrings: dict[int, Vring] = {}
        self.regions: list[Region] = []
        self.tx_frames: list[bytes] = []
        self.tx_chains: list[list[tuple[int, int, int]]] = []
        self.call_acks: list[tuple[int, int, int, int]] = []
        self.kick_fds: dict[int, int] = {}
        self.call_fds: dict[int, int] = {}
        self.chan: socket.socket | None = None
        self.kick_status = 0
        self.on_tx_kick_call_rx: bytes | None = None
        self.errors: list[str] = []
        self.events = events if events is not None else []
        self.events_lock = events_lock or threading.Lock()
        self.closed = threading.Event()
        self._cmds: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._wake_r, self._wake_w = socket.socketpair()
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    # --- plumbing -----------------------------------------------------
    def event(self, *ev: Any) -> None:
        with self.events_lock:
            self.events.append(ev)

    def _recv_exact(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _read_msg(self) -> tuple[Msg, list[int]]:
        assert self.conn is not None
        head, fds, _f, _a = socket.recv_fds(self.conn, HEADER_SIZE, 8)
        if not head:
            raise EOFError
        head += self._recv_exact(self.conn, HEADER_SIZE - len(head)) if len(head) < 12 else b""
        request, flags, size = HEADER.unpack(head)
        payload = self._recv_exact(self.conn, size) if size else b""
        msg = Msg(request, flags, size, payload, len(fds))
        self.msgs.append(msg)
        self.event("vhost", Request(request).name if request in Request._value2member_map_
                   else request, payload[:8])
        return msg, fds

    def _reply(self, request: int, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(HEADER.pack(request, VHOST_USER_REPLY_FLAGS, len(payload)) + payload)

    def _run(self) -> None:
        try:
            self.server.settimeout(TIMEOUT * 4)
            self.conn, _ = self.server.accept()
            while True:
                socks = [self.conn, self._wake_r] + ([self.chan] if self.chan else [])
                ready = select.select(socks, [], [], TIMEOUT * 4)[0]
                if not ready:
                    continue
                if self._wake_r in ready:
                    self._wake_r.recv(64)
                    while not self._cmds.empty():
                        self._command(*self._cmds.get())
                if self.chan is not None and self.chan in ready:
                    self._read_ack()
                if self.conn in ready:
                    msg, fds = self._read_msg()
                    self._handle(msg, fds)
        except (EOFError, OSError, socket.timeout):
            pass
        except Exception as exc:  # a bug in the scripted device: make the test see it
            self.errors.append(repr(exc))
        finally:
            self.closed.set()
            if self.conn is not None:
                self.conn.close()

    def _read_ack(self) -> None:
        assert self.chan is not None
        data = self._recv_exact(self.chan, HEADER_SIZE)
        request, flags, size = HEADER.unpack(data)
        payload = self._recv_exact(self.chan, size)
        value = U64.unpack(payload)[0] if size == 8 else -1
        self.call_acks.append((request, flags, size, value))
        self.event("ack", request, value)

    # --- memory -------------------------------------------------------
    def translate(self, addr: int, length: int) -> tuple[mmap.mmap, int]:
        for r in self.regions:
            if r.user <= addr and addr + length <= r.user + r.size:
                return r.mm, addr - r.user
        raise IndexError(f"{addr:#x}+{length} not in guest memory")

    def read(self, addr: int, length: int) -> bytes:
        mm, off = self.translate(addr, length)
        return bytes(mm[off:off + length])

    def write(self, addr: int, data: bytes) -> None:
        mm, off = self.translate(addr, len(data))
        mm[off:off + len(data)] = data

    def r16(self, addr: int) -> int:
        return struct.unpack("<H", self.read(addr, 2))[0]

    def w16(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<H", value & 0xFFFF))

    def desc(self, q: int, i: int) -> tuple[int, int, int, int]:
        return VRING_DESC.unpack(self.read(self.vrings[q].desc + 16 * i, 16))

    def avail_idx(self, q: int) -> int:
        return self.r16(self.vrings[q].avail + 2)

    def avail_entry(self, q: int, slot: int) -> int:
        vr = self.vrings[q]
        return self.r16(vr.avail + 4 + 2 * (slot % vr.num))

    def in_memory(self, addr: int, length: int) -> bool:
        return any(r.user <= addr and addr + length <= r.user + r.size for r in self.regions)

    # --- the device ---------------------------------------------------
    def _handle(self, msg: Msg, fds: list[int]) -> None:
        req, need = msg.request, msg.flags & VHOST_USER_FLAG_NEED_REPLY
        status: int | None = 0
        p = msg.payload
        keep: set[int] = set()
        if req == Request.GET_FEATURES:
            self._reply(req, U64.pack(self.features))
            status = None
        elif req == Request.GET_PROTOCOL_FEATURES:
            self._reply(req, U64.pack(self.protocol_features))
            status = None
        elif req == Request.GET_CONFIG:
            offset, size, flags = CONFIG_HEAD.unpack_from(p)
            data = bytes(self.config[:size]).ljust(size, b"\0")
            self._reply(req, CONFIG_HEAD.pack(offset, size, flags) + data)
            status = None
        elif req == Request.SET_BACKEND_REQ_FD:
            self.chan = socket.socket(fileno=fds[0])
            keep.add(fds[0])
        elif req == Request.SET_MEM_TABLE:
            n = MEM_REGIONS_HEAD.unpack_from(p)[0]
            if n > 2 or len(fds) != n or msg.size < 8 + 32 * n:
                status = 1
            else:
                for i in range(n):
                    g, size, user, off = MEM_REGION.unpack_from(p, 8 + 32 * i)
                    mm = mmap.mmap(fds[i], size, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=off)
                    self.regions.append(Region(g, size, user, off, mm))
        elif req in (Request.SET_VRING_NUM, Request.SET_VRING_BASE, Request.SET_VRING_ENABLE):
            index, num = VRING_STATE.unpack_from(p)
            vr = self.vrings.setdefault(index, Vring())
            if req == Request.SET_VRING_NUM:
                vr.num = num
            elif req == Request.SET_VRING_BASE:
                vr.base = vr.last_avail = vr.used_idx = num
            else:
                vr.enabled = bool(num)
        elif req == Request.SET_VRING_ADDR:
            index, _fl, desc, used, avail, log = VRING_ADDR.unpack_from(p)
            vr = self.vrings.setdefault(index, Vring())
            if not (self.in_memory(desc, 16 * vr.num) and self.in_memory(avail, 6 + 2 * vr.num)
                    and self.in_memory(used, 6 + 8 * vr.num)):
                status = 1
            else:
                vr.desc, vr.used, vr.avail, vr.log = desc, used, avail, log
        elif req in (Request.SET_VRING_KICK, Request.SET_VRING_CALL):
            index = U64.unpack_from(p)[0] & 0xFF
            if fds:
                (self.kick_fds if req == Request.SET_VRING_KICK else self.call_fds)[index] = fds[0]
                keep.add(fds[0])
        elif req == Request.VRING_KICK:
            index = VRING_STATE.unpack_from(p)[0]
            if index == 1 and self.process_tx and self.vrings[1].enabled:
                self.process_tx_ring()
                if self.on_tx_kick_call_rx is not None:
                    frame, self.on_tx_kick_call_rx = self.on_tx_kick_call_rx, None
                    self._rx(frame, 1, True, True)
                    # hold the kick reply until the call is acked
                    assert self.chan is not None
                    self.chan.settimeout(TIMEOUT)
                    self._read_ack()
            status = self.kick_status
        elif req in (Request.SET_OWNER, Request.SET_FEATURES, Request.SET_PROTOCOL_FEATURES):
            pass
        else:
            status = 1          # unknown or unsupported
        for fd in fds:
            if fd not in keep:
                os.close(fd)
        if need and status is not None:
            self._reply(req, U64.pack(status))

    def process_tx_ring(self) -> None:
        vr = self.vrings[1]
        while vr.last_avail != self.avail_idx(1):
            head = self.avail_entry(1, vr.last_avail)
            chain, data, i = [], b"", head
            for _ in range(vr.num):
                addr, length, flags, nxt = self.desc(1, i)
                chain.append((addr, length, flags))
                data += self.read(addr, length)
                if not flags & VRING_DESC_F_NEXT:
                    break
                i = nxt
            self.tx_chains.append(chain)
            self.tx_frames.append(data[self.hdr_len:])
            self._push_used(1, head, 0)
            vr.last_avail = (vr.last_avail + 1) & 0xFFFF

    def _push_used(self, q: int, head: int, length: int) -> None:
        vr = self.vrings[q]
        self.write(vr.used + 4 + 8 * (vr.used_idx % vr.num), VRING_USED_ELEM.pack(head, length))
        vr.used_idx = (vr.used_idx + 1) & 0xFFFF
        self.w16(vr.used + 2, vr.used_idx)

    def _rx(self, frame: bytes, num_buffers: int, call: bool, need_reply: bool) -> None:
        vr = self.vrings[0]
        assert vr.last_avail != self.avail_idx(0), "no RX buffer posted"
        head = self.avail_entry(0, vr.last_avail)
        addr, length, flags, _n = self.desc(0, head)
        assert flags & VRING_DESC_F_WRITE
        data = VIRTIO_NET_HDR_MRG.pack(0, 0, 0, 0, 0, 0, num_buffers) + frame
        assert len(data) <= length
        self.write(addr, data)
        vr.last_avail = (vr.last_avail + 1) & 0xFFFF
        self._push_used(0, head, len(data))
        if call:
            self.send_call(0, need_reply)

    def send_call(self, q: int, need_reply: bool = True,
                  request: int = BackendRequest.VRING_CALL) -> None:
        assert self.chan is not None
        flags = VHOST_USER_VERSION | (VHOST_USER_FLAG_NEED_REPLY if need_reply else 0)
        self.event("call", request, q)
        self.chan.sendall(HEADER.pack(request, flags, 8) + VRING_STATE.pack(q, 0))

    def _command(self, name: str, *args: Any) -> None:
        done: threading.Event = args[-1]
        if name == "rx":
            for frame in args[0]:
                self._rx(frame, args[1], args[2], args[3])
        elif name == "call":
            self.send_call(*args[:-1])
        done.set()

    def inject_rx(self, frames: list[bytes] | bytes, *, num_buffers: int = 1,
                  call: bool = True, need_reply: bool = True) -> None:
        """Write frames into posted RX buffers (and send VRING_CALL) from the device thread."""
        if isinstance(frames, bytes):
            frames = [frames]
        self._do("rx", frames, num_buffers, call, need_reply)

    def call(self, q: int, need_reply: bool = True,
             request: int = BackendRequest.VRING_CALL) -> None:
        self._do("call", q, need_reply, request)

    def _do(self, *cmd: Any) -> None:
        done = threading.Event()
        self._cmds.put((*cmd, done))
        self._wake_w.send(b"x")
        assert done.wait(TIMEOUT), "device thread did not run the command"

    # --- checks -------------------------------------------------------
    def sequence(self) -> list[tuple[str, int, int]]:
        return [(Request(m.request).name if m.request in Request._value2member_map_
                 else f"REQ_{m.request}", m.flags, m.size) for m in self.msgs]

    def find(self, request: int) -> list[Msg]:
        return [m for m in self.msgs if m.request == request]

    def wait_msgs(self, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while len(self.msgs) < count and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self.server.close()
        self._wake_w.close()
        self.thread.join(TIMEOUT)
        self._wake_r.close()
        if self.chan is not None:
            self.chan.close()
        for fd in list(self.kick_fds.values()) + list(self.call_fds.values()):
            os.close(fd)
        for r in self.regions:
            r.mm.close()
        self.path.unlink(missing_ok=True)


@pytest.fixture
def make_pair(tmp_path: Path) -> Iterator[Any]:
    """``make_pair(backend_options, frontend_options, connect=True)`` -> (backend, frontend)."""
    made: list[tuple[ScriptedBackend, HostileFrontend]] = []

    def make(backend: dict[str, Any] | None = None, frontend: dict[str, Any] | None = None,
             *, connect: bool = True, open: bool = True,  # noqa: A002
             ) -> tuple[ScriptedBackend, HostileFrontend]:
        path = tmp_path / f"vhost-{len(made)}.sock"
        be = ScriptedBackend(path, **(backend or {}))
        fe = HostileFrontend(path, **{"mem_size": MEM, "timeout": TIMEOUT, **(frontend or {})})
        made.append((be, fe))
        if connect:
            fe.connect(open=open)
        return be, fe

    yield make
    for be, fe in made:
        fe.close()
        be.close()
        assert not be.errors, be.errors


# ----------------------------------------------------------------------
# start-up
# ----------------------------------------------------------------------
def startup_sequence(config_sizes: list[int], *,
                     rx_kick: bool = True) -> list[tuple[str, int, int]]:
    seq = [
        ("SET_OWNER", 0x1, 0),
        ("GET_FEATURES", 0x1, 0),
        ("GET_PROTOCOL_FEATURES", 0x1, 0),
        ("SET_PROTOCOL_FEATURES", 0x9, 8),
        ("SET_BACKEND_REQ_FD", 0x9, 0),
        ("SET_FEATURES", 0x9, 8),
    ]
    seq += [("GET_CONFIG", 0x1, 12 + n) for n in config_sizes]
    seq.append(("SET_MEM_TABLE", 0x9, 72))
    for _q in (0, 1):
        seq += [("SET_VRING_NUM", 0x9, 8), ("SET_VRING_BASE", 0x9, 8),
                ("SET_VRING_ADDR", 0x9, 40)]
    seq += [("SET_VRING_ENABLE", 0x9, 8)] * 2
    if rx_kick:
        seq.append(("VRING_KICK", 0x9, 8))
    return seq


def test_startup_sequence_matches_uml(make_pair: Any) -> None:
    be, fe = make_pair()
    expected = startup_sequence([1, 2, 3, 4, 5, 6])
    assert fe.sequence() == expected
    assert be.sequence() == expected
    # every NEED_REPLY got exactly one ack, the GETs their natural reply
    assert [m.brief() for m in fe.log if m.direction == "recv"] == (
        [("GET_FEATURES", 5, 8), ("GET_PROTOCOL_FEATURES", 5, 8), ("SET_PROTOCOL_FEATURES", 5, 8),
         ("SET_BACKEND_REQ_FD", 5, 8), ("SET_FEATURES", 5, 8)]
        + [("GET_CONFIG", 5, 12 + n) for n in range(1, 7)]
        + [(name, 5, 8) for name, _f, _s in expected[12:]])
    # payloads
    assert U64.unpack(be.find(Request.SET_PROTOCOL_FEATURES)[0].payload)[0] == 0x4228
    assert U64.unpack(be.find(Request.SET_FEATURES)[0].payload)[0] == V1 | F_MAC | BIT30
    assert be.find(Request.SET_BACKEND_REQ_FD)[0].nfds == 1
    gets = [CONFIG_HEAD.unpack_from(m.payload) for m in be.find(Request.GET_CONFIG)]
    assert gets == [(0, n, 0) for n in range(1, 7)]
    assert all(m.payload[12:] == bytes(len(m.payload) - 12) for m in be.find(Request.GET_CONFIG))
    assert fe.mac == MAC
    kick = be.find(Request.VRING_KICK)[0]
    assert VRING_STATE.unpack(kick.payload) == (0, 0)
    assert fe.stats["rx_posted"] == 256 and fe.rxq.num_free == 0
    assert fe.status == 1      # no STATUS feature: link assumed up
    assert fe.declined_features == 0


#: Recorded from a real Linux 6.12 UML guest (our kernel build, mem=64M, run under
#: ``setarch -R``) against ScriptedBackend offering VERSION_1 | MAC | STATUS; the guest ran
#: ``ip link set eth0 up``, sent one frame, ``ip link set eth0 down`` and powered off.
#: Region seen: guest_addr == user_addr == mmap_offset == 0x946000, size 0x36ba000.
REAL_UML_TRACE = (
    [("SET_OWNER", 0x1, 0), ("GET_FEATURES", 0x1, 0), ("GET_PROTOCOL_FEATURES", 0x1, 0),
     ("SET_PROTOCOL_FEATURES", 0x9, 8), ("SET_BACKEND_REQ_FD", 0x9, 0),
     ("SET_FEATURES", 0x9, 8)]
    + [("GET_CONFIG", 0x1, 12 + n) for n in range(1, 7)]
    + [("SET_MEM_TABLE", 0x9, 72)]
    + [("SET_VRING_NUM", 0x9, 8), ("SET_VRING_BASE", 0x9, 8), ("SET_VRING_ADDR", 0x9, 40)] * 2
    + [("SET_VRING_ENABLE", 0x9, 8)] * 2
    + [("VRING_KICK", 0x9, 8), ("GET_CONFIG", 0x1, 20), ("VRING_KICK", 0x9, 8)]
    + [("SET_VRING_ENABLE", 0x9, 8)] * 2 + [("GET_FEATURES", 0x1, 0)])


def test_same_messages_as_a_real_uml(make_pair: Any) -> None:
    be, fe = make_pair({"features": V1 | F_MAC | F_STATUS | BIT30},
                       {"mem_size": 64 << 20})
    fe.send_frame(frame_of(1, 90))
    fe.close()
    be.wait_msgs(len(REAL_UML_TRACE))
    assert be.sequence() == REAL_UML_TRACE
    region = MEM_REGION.unpack_from(be.find(Request.SET_MEM_TABLE)[0].payload, 8)
    assert region == (0x946000, 0x36BA000, 0x946000, 0x946000)
    assert U64.unpack(be.find(Request.SET_FEATURES)[0].payload)[0] == 0x140010020
    # one RX descriptor of 12 + 1518 bytes, one TX descriptor of 12 + frame (as seen)
    assert be.desc(0, 0)[1:3] == (1530, VRING_DESC_F_WRITE)
    assert [(ln, fl) for _a, ln, fl in be.tx_chains[0]] == [(102, 0)]


def test_vring_setup_payloads(make_pair: Any) -> None:
    be, fe = make_pair()
    for q, vq in enumerate(fe.queues):
        num = [VRING_STATE.unpack(m.payload) for m in be.find(Request.SET_VRING_NUM)]
        assert num[q] == (q, 256)
        base = [VRING_STATE.unpack(m.payload) for m in be.find(Request.SET_VRING_BASE)]
        assert base[q] == (q, 0)
        addr = VRING_ADDR.unpack(be.find(Request.SET_VRING_ADDR)[q].payload)
        assert addr == (q, 0, vq.desc_addr, vq.used_addr, vq.avail_addr, VRING_LOG_NONE)
        # vring_init() layout with PAGE_SIZE alignment, page-aligned block
        assert vq.desc_addr % 4096 == 0
        assert vq.avail_addr == vq.desc_addr + 4096
        assert vq.used_addr == vq.desc_addr + 8192
    enables = [VRING_STATE.unpack(m.payload) for m in be.find(Request.SET_VRING_ENABLE)]
    assert enables == [(0, 1), (1, 1)]


def test_memory_table_and_shared_bytes(make_pair: Any) -> None:
    be, fe = make_pair()
    msg = be.find(Request.SET_MEM_TABLE)[0]
    assert msg.nfds == 1 and msg.size == 72
    nregions, pad = MEM_REGIONS_HEAD.unpack_from(msg.payload)
    assert (nregions, pad) == (1, 0)
    region = MEM_REGION.unpack_from(msg.payload, 8)
    assert region == (DEFAULT_RESERVED, MEM - DEFAULT_RESERVED, DEFAULT_RESERVED,
                      DEFAULT_RESERVED)
    assert msg.payload[40:] == bytes(32)        # room for the second region, zeroed
    # the back-end's mapping (mmap_offset honoured) sees what the front-end wrote
    rq = fe.rxq
    assert be.avail_idx(0) == 256
    for i in (0, 1, 255):
        addr, length, flags, _nxt = be.desc(0, i)
        assert (length, flags) == (LINUX_RX_BUF_LEN, VRING_DESC_F_WRITE)
        assert fe.mem.in_region(addr, length)
        assert be.desc(0, i) == rq.read_desc(i)
    addr = fe.mem.alloc(64)
    fe.mem.write(addr, b"front-end bytes")
    assert be.read(addr, 15) == b"front-end bytes"
    be.write(addr + 32, b"back-end bytes")
    assert fe.mem.read(addr + 32, 14) == b"back-end bytes"


def test_status_and_mtu_reads(make_pair: Any) -> None:
    be, fe = make_pair({"features": V1 | F_MAC | F_STATUS | F_MTU | BIT30, "status": 1,
                        "mtu": 1500})
    # validate reads the MTU (size 12) after SET_FEATURES, probe reads MAC bytes and the MTU
    # again, open() reads the status (size 8) after the RX kick
    expected = startup_sequence([12, 1, 2, 3, 4, 5, 6, 12]) + [("GET_CONFIG", 0x1, 20)]
    assert fe.sequence() == expected
    assert (fe.mtu, fe.status) == (1500, 1)
    assert U64.unpack(be.find(Request.SET_FEATURES)[0].payload)[0] == (
        V1 | F_MAC | F_STATUS | F_MTU | BIT30)


def test_tiny_mtu_resends_features_without_bit30(make_pair: Any) -> None:
    """UML quirk: the second vu_finalize_features loses bit 30, so no SET_VRING_ENABLE."""
    be, fe = make_pair({"features": V1 | F_MAC | F_MTU | BIT30, "mtu": 60})
    sets = [U64.unpack(m.payload)[0] for m in be.find(Request.SET_FEATURES)]
    assert sets == [V1 | F_MAC | F_MTU | BIT30, V1 | F_MAC]
    assert be.find(Request.SET_VRING_ENABLE) == []
    assert fe.mtu is None


def test_declined_features_are_reported(make_pair: Any) -> None:
    offered = (V1 | F_MAC | BIT30 | 1 << NetFeature.CSUM | 1 << NetFeature.MRG_RXBUF
               | 1 << VirtioFeature.RING_EVENT_IDX | 1 << VirtioFeature.IN_ORDER)
    be, fe = make_pair({"features": offered})
    # Linux would take CSUM, MRG_RXBUF and EVENT_IDX (IN_ORDER is cleared by the ring code)
    assert fe.declined_features == (1 << NetFeature.CSUM | 1 << NetFeature.MRG_RXBUF
                                    | 1 << VirtioFeature.RING_EVENT_IDX)
    assert U64.unpack(be.find(Request.SET_FEATURES)[0].payload)[0] == V1 | F_MAC | BIT30


def test_missing_protocol_features_fail_clearly(make_pair: Any) -> None:
    be, fe = make_pair({"protocol_features": UML_PROTOCOL_FEATURES
                        & ~(1 << ProtocolFeature.INBAND_NOTIFICATIONS)}, connect=False)
    with pytest.raises(VhostUnsupported, match="INBAND_NOTIFICATIONS"):
        fe.connect()
    # what UML sent up to that point is the same as always
    assert [n for n, _f, _s in fe.sequence()] == [
        "SET_OWNER", "GET_FEATURES", "GET_PROTOCOL_FEATURES", "SET_PROTOCOL_FEATURES",
        "SET_BACKEND_REQ_FD"]
    assert U64.unpack(be.find(Request.SET_PROTOCOL_FEATURES)[0].payload)[0] == 0x228


def test_fallback_without_protocol_features(make_pair: Any) -> None:
    """strict=False follows UML's fallback: fd kicks and calls, no ENABLE, no config."""
    be, fe = make_pair({"features": V1 | F_MAC}, {"strict": False})
    assert fe.sequence() == (
        [("SET_OWNER", 1, 0), ("GET_FEATURES", 1, 0), ("SET_FEATURES", 1, 8),
         ("SET_MEM_TABLE", 1, 72)]
        + [("SET_VRING_CALL", 1, 8), ("SET_VRING_NUM", 1, 8), ("SET_VRING_BASE", 1, 8),
           ("SET_VRING_ADDR", 1, 40)] * 2
        + [("SET_VRING_KICK", 1, 8)] * 2)
    assert fe.mac is None
    be.wait_msgs(len(fe.sequence()))        # no acks: the device may lag behind
    assert be.sequence() == fe.sequence()
    assert sorted(be.kick_fds) == [0, 1] and sorted(be.call_fds) == [0, 1]
    # the RX fill kicked through the eventfd
    assert os.read(be.kick_fds[0], 8) == (1).to_bytes(8, "little")


# ----------------------------------------------------------------------
# data path
# ----------------------------------------------------------------------
def test_tx_round_trip(make_pair: Any) -> None:
    be, fe = make_pair()
    frame = frame_of(1, 98)
    head = fe.send_frame(frame)
    assert be.tx_frames == [frame]
    assert be.tx_chains[0] == [(be.tx_chains[0][0][0], 12 + 98, 0)]
    # the header the driver wrote: all zero, num_buffers 0 on TX
    assert be.read(be.tx_chains[0][0][0], 12) == bytes(12)
    kick = be.find(Request.VRING_KICK)[-1]
    assert (kick.flags, VRING_STATE.unpack(kick.payload)) == (0x9, (1, 0))
    assert fe.txq.num_free == 256 and fe.stats["tx_completed"] == 1
    assert fe.txq.used_elem(0) == (head, 0)


def test_tx_chain_over_three_descriptors(make_pair: Any) -> None:
    be, fe = make_pair()
    frame = frame_of(7, 200)
    fe.send_frame(frame, chain=[12, 50, 150])
    chain = be.tx_chains[0]
    assert [(ln, fl) for _a, ln, fl in chain] == [(12, VRING_DESC_F_NEXT),
                                                   (50, VRING_DESC_F_NEXT), (150, 0)]
    assert be.tx_frames == [frame]
    # descriptors 0, 1, 2 from the free list, linked in order
    assert [fe.txq.read_desc(i)[3] for i in (0, 1)] == [1, 2]
    with pytest.raises(ValueError):
        fe.send_frame(frame, chain=[12, 10])


def test_rx_frame_with_call_and_ack(make_pair: Any) -> None:
    be, fe = make_pair()
    frame = frame_of(42, 1514)
    be.inject_rx(frame)
    assert fe.wait_frames(1) == [frame]
    assert fe.rx_headers == [(0, 0, 0, 0, 0, 0, 1)]
    assert fe.sequence("backend", "recv") == [("VRING_CALL", 0x9, 8)]
    assert fe.sequence("backend", "send") == [("VRING_CALL", 0x5, 8)]
    deadline = time.monotonic() + TIMEOUT
    while not be.call_acks and time.monotonic() < deadline:
        time.sleep(0.005)
    assert be.call_acks == [(BackendRequest.VRING_CALL, 0x5, 8, 0)]
    # one buffer used: no refill yet (Linux refills when more than 32 are free)
    assert fe.rxq.num_free == 1 and len(be.find(Request.VRING_KICK)) == 1


def test_rx_refill_after_napi_budget(make_pair: Any) -> None:
    be, fe = make_pair()
    frames = [frame_of(i) for i in range(40)]
    be.inject_rx(frames[:39], call=False)
    be.inject_rx(frames[39:])
    assert fe.wait_frames(40) == frames
    assert fe.rxq.num_free == 0        # refilled to full ...
    assert len(be.find(Request.VRING_KICK)) == 2   # ... with one more RX kick


def test_rx_quirks_num_buffers_short_and_unknown_queue(make_pair: Any) -> None:
    be, fe = make_pair()
    be.inject_rx(frame_of(1), num_buffers=0)
    assert fe.wait_frames(1) == [frame_of(1)]       # Linux ignores num_buffers here
    assert fe.stats["rx_bad_num_buffers"] == 1
    # a call for a queue that does not exist is acked with 1 (first in its drain)
    be.call(5)
    fe.poll(TIMEOUT)
    assert fe.sequence("backend", "send")[-1] == ("VRING_CALL", 5, 8)
    assert fe.log[-1].payload == U64.pack(1)


def test_config_change_message_rereads_status(make_pair: Any) -> None:
    be, fe = make_pair({"features": V1 | F_MAC | F_STATUS | BIT30})
    be.config[6] = 0                      # link down
    be.call(0, request=BackendRequest.CONFIG_CHANGE_MSG)
    fe.poll(TIMEOUT)
    assert fe.status == 0
    assert fe.sequence()[-1] == ("GET_CONFIG", 0x1, 20)
    assert fe.sequence("backend", None) == [("CONFIG_CHANGE_MSG", 0x9, 8),
                                            ("CONFIG_CHANGE_MSG", 0x5, 8)]


def test_ring_index_wrap_with_initial_index(make_pair: Any) -> None:
    """Test-only start near 65535 (UML always sends base 0): both rings wrap."""
    be, fe = make_pair(frontend={"initial_index": 65530})
    assert VRING_STATE.unpack(be.find(Request.SET_VRING_BASE)[0].payload) == (0, 65530)
    assert fe.rxq.avail_idx == (65530 + 256) & 0xFFFF
    sent = [frame_of(i) for i in range(20)]
    for f in sent:
        fe.send_frame(f)
    assert be.tx_frames == sent
    assert fe.txq.avail_idx == 14 and fe.txq.used_idx == 14 and fe.txq.num_free == 256
    rx = [frame_of(100 + i) for i in range(20)]
    be.inject_rx(rx)
    assert fe.wait_frames(20) == rx
    assert fe.rxq.used_idx == 14


def test_ring_index_wrap_by_traffic(make_pair: Any) -> None:
    """What a real guest does: push more than 65536 frames through the TX ring."""
    be, fe = make_pair()
    total = 0
    batch = [frame_of(i, 60) for i in range(256)]
    while total <= 65536 + 300:
        fe.send_frames(batch)
        total += len(batch)
    assert len(be.tx_frames) == total
    assert fe.txq.avail_idx == total & 0xFFFF == fe.txq.used_idx
    assert fe.txq.num_free == 256 and be.tx_frames[-1] == batch[-1]


def test_no_notify_suppresses_kicks(make_pair: Any) -> None:
    be, fe = make_pair()
    be.w16(be.vrings[1].used, VRING_USED_F_NO_NOTIFY)
    kicks = len(be.find(Request.VRING_KICK))
    fe.send_frame(frame_of(1))
    assert len(be.find(Request.VRING_KICK)) == kicks
    assert fe.stats["kicks_suppressed"] == 1
    be.w16(be.vrings[1].used, 0)


def test_kick_error_breaks_the_queue(make_pair: Any) -> None:
    be, fe = make_pair()
    be.kick_status = 7
    with pytest.raises(VhostBackendError):
        fe.send_frame(frame_of(1))
    assert fe.txq.broken and "slave reports error: 7" in fe.errors[0]
    with pytest.raises(RingBroken):
        fe.send_frame(frame_of(2))


def test_bad_used_id_breaks_the_ring(make_pair: Any) -> None:
    be, fe = make_pair()
    vr = be.vrings[0]
    be.write(vr.used + 4, VRING_USED_ELEM.pack(300, 74))
    be.w16(vr.used + 2, 1)
    be.call(0)
    with pytest.raises(RingBroken, match="id 300 out of range"):
        fe.poll(TIMEOUT)
    # the ack went out before the ring was looked at
    assert fe.sequence("backend", "send") == [("VRING_CALL", 5, 8)]


def test_teardown_sequence(make_pair: Any) -> None:
    be, fe = make_pair()
    n = len(be.msgs)
    fe.close()
    be.wait_msgs(n + 3)
    assert be.sequence()[n:] == [("SET_VRING_ENABLE", 0x9, 8)] * 2 + [("GET_FEATURES", 1, 0)]
    assert [VRING_STATE.unpack(m.payload) for m in be.msgs[n:n + 2]] == [(1, 0), (0, 0)]


def test_reply_with_wrong_flags_is_a_protocol_error(make_pair: Any) -> None:
    be, fe = make_pair(connect=False)
    real_reply = be._reply

    def bad_reply(request: int, payload: bytes) -> None:
        assert be.conn is not None
        be.conn.sendall(HEADER.pack(request, 0x1, len(payload)) + payload)

    be._reply = bad_reply  # type: ignore[method-assign]
    with pytest.raises(VhostProtocolError, match="flags 0x1"):
        fe.connect()
    be._reply = real_reply  # type: ignore[method-assign]


# ----------------------------------------------------------------------
# hostile helpers: each leaves the ring state it claims (seen through the back-end)
# ----------------------------------------------------------------------
@pytest.fixture
def still(make_pair: Any) -> tuple[ScriptedBackend, HostileFrontend]:
    """A pair whose device only acks kicks and never touches the TX ring."""
    return make_pair({"process_tx": False})


def _published(be: ScriptedBackend, fe: VhostUserFrontend, q: int, head: int) -> None:
    vq = fe.queues[q]
    assert be.avail_idx(q) == vq.avail_idx_shadow
    assert be.avail_entry(q, vq.avail_idx_shadow - 1) == head
    kick = be.find(Request.VRING_KICK)[-1]
    assert VRING_STATE.unpack(kick.payload) == (q, 0)


def test_hostile_out_of_memory(still: Any) -> None:
    be, fe = still
    for where, addr in (("above", MEM + 4096), ("below", DEFAULT_RESERVED - 4096),
                        ("zero", 0)):
        r = fe.corrupt_tx_out_of_memory(where=where)
        assert r.outcome == "ok"
        assert be.desc(1, r.head) == (addr, 64, 0, be.desc(1, r.head)[3])
        assert not be.in_memory(addr, 64)
        _published(be, fe, 1, r.head)


def test_hostile_addr_overflow_and_zero_len(still: Any) -> None:
    be, fe = still
    r = fe.corrupt_tx_addr_overflow()
    addr, length, flags, _n = be.desc(1, r.head)
    assert (addr, length, flags) == ((1 << 64) - 16, 64, 0) and addr + length > 1 << 64
    _published(be, fe, 1, r.head)
    r = fe.corrupt_tx_zero_len()
    assert be.desc(1, r.head)[1:3] == (0, 0)
    _published(be, fe, 1, r.head)


def test_hostile_next_out_of_range(still: Any) -> None:
    be, fe = still
    r = fe.corrupt_tx_next_out_of_range()
    assert be.desc(1, r.head)[2:] == (VRING_DESC_F_NEXT, 256)
    _published(be, fe, 1, r.head)


def test_hostile_chain_loop(still: Any) -> None:
    be, fe = still
    r = fe.corrupt_tx_chain_loop()
    a, b = r.descs
    assert be.desc(1, a)[2:] == (VRING_DESC_F_NEXT, b)
    assert be.desc(1, b)[2:] == (VRING_DESC_F_NEXT, a)
    _published(be, fe, 1, a)


def test_hostile_chain_too_long(still: Any) -> None:
    be, fe = still
    r = fe.corrupt_tx_chain_too_long()
    assert len(r.descs) == 256 and sorted(r.descs) == list(range(256))
    i, seen = r.head, 0
    for _ in range(300):            # following it never ends
        _a, _l, flags, i = be.desc(1, i)
        assert flags == VRING_DESC_F_NEXT
        seen += 1
    assert seen == 300 and fe.txq.num_free == 0
    _published(be, fe, 1, r.head)


def test_hostile_indirect_and_write_flags(still: Any) -> None:
    be, fe = still
    r = fe.corrupt_tx_indirect()
    addr, length, flags, _n = be.desc(1, r.head)
    assert (addr, length, flags) == (r.details["table"], 16, VRING_DESC_F_INDIRECT)
    assert VRING_DESC.unpack(be.read(addr, 16))[:3] == (r.details["frame_addr"], 72, 0)
    _published(be, fe, 1, r.head)
    r = fe.corrupt_tx_write_flag()
    assert be.desc(1, r.head)[2] == VRING_DESC_F_WRITE
    _published(be, fe, 1, r.head)


def test_hostile_rx_readonly(make_pair: Any) -> None:
    be, fe = make_pair(open=False)
    r = fe.corrupt_rx_readonly()
    assert r.outcome == "ok"
    assert be.desc(0, r.head)[1:3] == (LINUX_RX_BUF_LEN, 0)
    _published(be, fe, 0, r.head)


def test_hostile_avail_idx_jump_and_bad_head(still: Any) -> None:
    be, fe = still
    r = fe.corrupt_avail_head_out_of_range()
    assert be.avail_entry(1, r.details["slot"]) == 256
    assert be.avail_idx(1) == r.details["avail_idx"]
    r = fe.corrupt_avail_idx_jump()
    assert be.avail_idx(1) == (fe.txq.avail_idx_shadow + 257) & 0xFFFF
    assert r.outcome == "ok"
    fe.repair_avail_idx(1)
    assert be.avail_idx(1) == fe.txq.avail_idx_shadow


def test_hostile_messages(still: Any) -> None:
    be, fe = still
    r = fe.send_vring_addr_outside(which="used")
    assert r.outcome == "error 1"
    msg = be.find(Request.SET_VRING_ADDR)[-1]
    assert VRING_ADDR.unpack(msg.payload)[3] == MEM + 4096
    r = fe.send_mem_table_too_many_regions()
    assert r.outcome == "error 1"
    msg = be.find(Request.SET_MEM_TABLE)[-1]
    assert (MEM_REGIONS_HEAD.unpack_from(msg.payload)[0], msg.nfds, msg.size) == (3, 3, 104)
    r = fe.send_mem_table_bad_fd_count(0)
    assert r.outcome == "error 1" and be.find(Request.SET_MEM_TABLE)[-1].nfds == 0
    r = fe.send_unknown_request(0xDEAD)
    assert r.outcome == "error 1" and be.msgs[-1].request == 0xDEAD
    r = fe.send_oversized_payload(size=100_000)
    assert r.outcome == "ok"            # this scripted device is lenient about sizes
    assert be.msgs[-1].size == len(be.msgs[-1].payload) == 100_000
    # header claims 4096 bytes, 8 follow: the device waits for the rest
    r = fe.send_size_mismatch(claimed=4096)
    assert r.outcome == "no reply"
    # the remaining 4088 bytes complete it; the device then answers it
    r2 = fe.send_raw(bytes(4088), expect_reply=True)
    assert r2.outcome == "ok"
    assert be.msgs[-1].size == 4096 and len(be.msgs[-1].payload) == 4096


def test_hostile_truncated_then_everything_reports_closed(still: Any) -> None:
    be, fe = still
    r = fe.send_truncated(keep=6)
    assert r.outcome == "closed"
    assert be.closed.wait(TIMEOUT)
    # nothing raises on a dead back-end
    assert fe.send_unknown_request().outcome.startswith("closed")
    assert fe.corrupt_tx_zero_len().outcome.startswith("closed")


# ----------------------------------------------------------------------
# time travel
# ----------------------------------------------------------------------
class Calendar:
    """Scripted calendar peer: ACKs everything, answers WAIT with RUN(requested time)."""

    def __init__(self, sock: socket.socket, events: list[tuple[Any, ...]],
                 lock: threading.Lock) -> None:
        self.sock = sock
        self.events = events
        self.lock = lock
        self.now = 0
        self.request = 0
        self.seq = 5000
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, op: int, seq: int, t: int, fds: list[int] | None = None) -> None:
        data = MSG.pack(op, seq, t)
        if fds:
            socket.send_fds(self.sock, [data], fds)
        else:
            self.sock.sendall(data)

    def _run(self) -> None:
        try:
            while True:
                data = b""
                while len(data) < MSG_SIZE:
                    chunk = self.sock.recv(MSG_SIZE - len(data))
                    if not chunk:
                        return
                    data += chunk
                op, seq, t = MSG.unpack(data)
                if op == Op.ACK:
                    continue
                with self.lock:
                    self.events.append(("tt", Op(op).name, t))
                if op == Op.START:
                    memfd = os.memfd_create("tt")          # version 0: no shared memory
                    os.ftruncate(memfd, 4096)
                    null = os.open(os.devnull, os.O_RDONLY)
                    self._send(Op.ACK, seq, 0, [memfd, null])
                    os.close(memfd)
                    os.close(null)
                elif op == Op.UPDATE:
                    self.now = t
                    self._send(Op.ACK, seq, 0)
                elif op == Op.GET:
                    self._send(Op.ACK, seq, self.now)
                elif op == Op.REQUEST:
                    self.request = t
                    self._send(Op.ACK, seq, 0)
                elif op == Op.WAIT:
                    self._send(Op.ACK, seq, 0)
                    self.now = max(self.now, self.request)
                    self.seq += 1
                    self._send(Op.RUN, self.seq, self.now)
                else:
                    self._send(Op.ACK, seq, 0)
        except OSError:
            return


@pytest.fixture
def tt_pair(tmp_path: Path) -> Iterator[tuple[ScriptedBackend, VhostUserFrontend, TTClient,
                                              list[tuple[Any, ...]]]]:
    events: list[tuple[Any, ...]] = []
    lock = threading.Lock()
    ours, theirs = socket.socketpair()
    cal = Calendar(theirs, events, lock)
    tt = TTClient(sock=ours, client_id=1, use_shm=False, timeout=TIMEOUT)
    tt.start()
    path = tmp_path / "vhost-tt.sock"
    be = ScriptedBackend(path, events=events, events_lock=lock)
    fe = VhostUserFrontend(path, mem_size=MEM, timeout=TIMEOUT, tt=tt)
    fe.connect()
    yield be, fe, tt, events
    fe.close()
    tt.close()
    be.close()
    theirs.close()
    cal.thread.join(TIMEOUT)
    assert not be.errors, be.errors
    assert not tt.warnings, tt.warnings


def test_tt_update_precedes_every_kick(tt_pair: Any) -> None:
    be, fe, tt, events = tt_pair
    for i in range(3):
        tt.ndelay(1000)
        fe.send_frame(frame_of(i))
    kicks = [k for k, ev in enumerate(events) if ev[:2] == ("vhost", "VRING_KICK")
             and ev[2][:4] == b"\x01\x00\x00\x00"]
    assert len(kicks) == 3
    for n, k in enumerate(kicks):
        assert events[k - 1] == ("tt", "UPDATE", 1000 * (n + 1))
    assert len(be.tx_frames) == 3


def test_tt_irq_path_before_ack(tt_pair: Any) -> None:
    """On VRING_CALL: GET, REQUEST(now), and only then the ack (time_travel_add_irq_event)."""
    be, fe, tt, events = tt_pair
    tt.ndelay(5000)
    start = len(events)
    be.inject_rx(frame_of(9))
    assert fe.wait_frames(1) == [frame_of(9)]
    deadline = time.monotonic() + TIMEOUT
    while not be.call_acks and time.monotonic() < deadline:
        time.sleep(0.005)
    tail = [ev[:2] for ev in events[start:]]
    assert tail == [("call", BackendRequest.VRING_CALL), ("tt", "GET"), ("tt", "REQUEST"),
                    ("ack", BackendRequest.VRING_CALL)]
    assert tt.irq_event.pending and tt.irqs[-1]["received_local"] == 5000


def test_tt_call_served_while_waiting_for_kick_reply(tt_pair: Any) -> None:
    """The device calls and waits for the ack before replying to the kick: with time travel
    UML serves the call inside the wait (SIGIO handler), so nothing deadlocks."""
    be, fe, tt, events = tt_pair
    tt.ndelay(700)
    be.on_tx_kick_call_rx = frame_of(77)
    fe.send_frame(frame_of(1))
    names = [ev[:2] for ev in events]
    k = names.index(("vhost", "VRING_KICK"), len(names) - 6)
    assert names[k - 1:] == [("tt", "UPDATE"), ("vhost", "VRING_KICK"),
                             ("call", BackendRequest.VRING_CALL), ("tt", "GET"),
                             ("tt", "REQUEST"), ("ack", BackendRequest.VRING_CALL)]
    # the vring work ran once the kick request was done
    assert fe.received_frames() == [frame_of(77)]


def test_call_during_kick_without_tt_times_out(make_pair: Any) -> None:
    """Without time travel UML only acks after its kick reply: a device waiting for the
    ack first deadlocks (here: our timeout)."""
    be, fe = make_pair(frontend={"timeout": 0.5})
    be.on_tx_kick_call_rx = frame_of(3)
    with pytest.raises(VhostTimeout):
        fe.send_frame(frame_of(1))


def test_backend_channel_payload_limit() -> None:
    assert UML_BACKEND_MAX_PAYLOAD == 584


def test_unexpected_backend_request_response_quirk(make_pair: Any) -> None:
    """``response`` is not reset inside one drain: unknown request after a good call -> 0."""
    be, fe = make_pair()
    assert be.chan is not None
    be.chan.sendall(HEADER.pack(4, 0x9, 8) + VRING_STATE.pack(0, 0)
                    + HEADER.pack(99, 0x9, 8) + VRING_STATE.pack(0, 0))
    fe.poll(TIMEOUT)
    acks = [m for m in fe.log if m.channel == "backend" and m.direction == "send"]
    assert [(m.request, U64.unpack(m.payload)[0]) for m in acks] == [(4, 0), (99, 0)]
    assert fe.stats["spurious_calls"] == 1     # nothing was in the used ring


def test_frontend_does_not_import_ns3() -> None:
    import subprocess
    code = ("import sys, ns3_uml.testing.vhost_frontend, ns3_uml.vhost_protocol;"
            "sys.exit(any(m in sys.modules for m in ('cppyy', 'ns', 'ns3')))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backend_error_on_ack_is_raised(make_pair: Any) -> None:
    be, fe = make_pair(connect=False)
    orig = be._handle

    def failing(msg: Msg, fds: list[int]) -> None:
        if msg.request == Request.SET_MEM_TABLE:
            for fd in fds:
                os.close(fd)
            be._reply(msg.request, U64.pack(3))
            return
        orig(msg, fds)

    be._handle = failing  # type: ignore[method-assign]
    with pytest.raises(VhostBackendError) as info:
        fe.connect()
    assert info.value.request == Request.SET_MEM_TABLE and info.value.status == 3


def test_forgotten_call_only_seen_with_poll_ring(make_pair: Any) -> None:
    be, fe = make_pair()
    be.inject_rx(frame_of(5), call=False)
    assert fe.received_frames(0.05) == []                 # Linux waits for the call
    assert fe.received_frames(poll_ring=True) == [frame_of(5)]


def test_backend_channel_closed(make_pair: Any) -> None:
    be, fe = make_pair()
    assert be.chan is not None
    be.chan.shutdown(socket.SHUT_RDWR)
    with pytest.raises(VhostConnectionClosed):
        fe.poll(TIMEOUT)
    assert not fe.registered
