"""A front-end that also attacks: crafted rings and messages for robustness tests.

:class:`HostileFrontend` is the reference front-end plus helpers that build what a broken
or hostile driver would: descriptors outside the shared memory, loops, wrong flags
(``corrupt_*``), malformed or slow vhost-user messages (``send_*``) and interrupt replies
cut short (``cut_call_replies``).  They never raise for what the back-end does in response;
each returns a :class:`HostileResult` saying what came back.  docs/DESIGN.md rule 10 is
what the back-end must show against them.
"""

from __future__ import annotations

import select
import socket
import time as _wall
from dataclasses import dataclass, field
from typing import Any, Sequence

from ns3_uml.vhost_protocol import (
    HEADER,
    HEADER_SIZE,
    NET_RX_QUEUE,
    NET_TX_QUEUE,
    U64,
    UML_MAX_MEM_REGIONS,
    VHOST_USER_FLAG_NEED_REPLY,
    VHOST_USER_REPLY_FLAGS,
    VHOST_USER_VERSION,
    VRING_ADDR,
    VRING_DESC,
    VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    VRING_DESC_SIZE,
    VRING_LOG_NONE,
    VRING_STATE,
    Request,
)
from ns3_uml.testing.vhost_frontend.errors import (
    VhostBackendError,
    VhostConnectionClosed,
    VhostFrontendError,
    VhostProtocolError,
    VhostTimeout,
)
from ns3_uml.testing.vhost_frontend.frontend import VhostUserFrontend
from ns3_uml.testing.vhost_frontend.memory import PAGE_SIZE, mem_table_payload
from ns3_uml.testing.vhost_frontend.ring import U16_MASK, U32_MASK, U64_MASK, PostedChain

__all__ = ["HostileFrontend", "HostileResult"]


@dataclass
class HostileResult:
    """What a hostile helper wrote and what came back."""

    name: str
    queue: int | None = None
    head: int | None = None
    descs: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    #: "ok", "error <status>", "closed", "no reply", "protocol: ...", "not kicked", or for raw
    #: messages "reply" / "sent"
    outcome: str = "not kicked"
    reply: tuple[int, int, int, bytes] | None = None


def _failure(exc: Exception) -> str:
    """A :attr:`HostileResult.outcome` for what the back-end's reaction raised."""
    if isinstance(exc, VhostBackendError):
        return f"error {exc.status}"
    if isinstance(exc, VhostConnectionClosed):
        return "closed"
    if isinstance(exc, VhostTimeout):       # a TimeoutError, so before OSError
        return "no reply"
    if isinstance(exc, VhostProtocolError):
        return f"protocol: {exc}"
    return f"closed: {exc}"


class HostileFrontend(VhostUserFrontend):
    """:class:`VhostUserFrontend` with the hostile helpers (same constructor)."""

    #: Bytes of each backend-channel reply that are sent (None: all), see cut_call_replies.
    _backend_keep: int | None = None

    def _sendmsg(self, sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
        if self._backend_keep is not None and sock is self._req:
            data = data[:self._backend_keep]
        super()._sendmsg(sock, data, fds)

    # ------------------------------------------------------------------
    # hostile helpers: broken ring states
    # ------------------------------------------------------------------
    def _safe_kick(self, index: int, result: HostileResult, timeout: float | None) -> None:
        """Kick and record what happened; never raises for the back-end's reaction."""
        saved = self.timeout
        if timeout is not None:
            self.timeout = timeout
        vq = self.queues[index]
        try:
            if self.tt is not None:
                self.tt.propagate_time()
            self._set_vring_state(Request.VRING_KICK, index, 0)
            result.outcome = "ok"
        except (VhostBackendError, VhostProtocolError, VhostConnectionClosed, OSError) as exc:
            result.outcome = _failure(exc)
        finally:
            self.timeout = saved
        self.stats[f"kicks_q{index}"] += 1
        self.stats["hostile"] += 1
        if result.outcome != "ok":
            vq.mark_broken(f"hostile {result.name}: {result.outcome}")

    def hostile_chain(self, name: str, index: int, specs: Sequence[dict[str, int]], *,
                       kick: bool, timeout: float | None, **details: Any) -> HostileResult:
        """Write ``specs`` into free descriptors as one published chain and kick.

        Each spec has ``addr``, ``len``, ``flags`` and either ``to`` (position in this
        chain the ``next`` field points to) or ``next`` (raw value); default: the following
        position when NEXT is set, else Linux's free-list successor.
        """
        vq = self.queues[index]
        descs = vq.take_descs(len(specs))
        for pos, spec in enumerate(specs):
            if "to" in spec:
                nxt = descs[spec["to"]]
            elif "next" in spec:
                nxt = spec["next"]
            elif spec["flags"] & VRING_DESC_F_NEXT and pos + 1 < len(descs):
                nxt = descs[pos + 1]
            else:
                nxt = vq.extra_next[descs[pos]]
            vq.write_desc(descs[pos], spec["addr"], spec["len"], spec["flags"], nxt)
        # keep the driver's own free list consistent whatever the device does with it
        head = descs[0]
        vq.free_head = vq.extra_next[descs[-1]]
        vq.num_free -= len(descs)
        vq.state[head] = PostedChain("hostile", descs, list(details.pop("bufs", [])),
                                [s["len"] for s in specs], name)
        vq.publish(head)
        result = HostileResult(name, index, head, descs, dict(details))
        result.details["written"] = [vq.read_desc(d) for d in descs]
        if kick:
            self._safe_kick(index, result, timeout)
        return result

    def payload_buf(self, size: int = 64, fill: int = 0xAB) -> int:
        addr = self.mem.alloc(size)
        self.mem.write(addr, bytes([fill]) * size)
        return addr

    def corrupt_tx_out_of_memory(self, *, where: str = "above", kick: bool = True,
                                 timeout: float | None = None) -> HostileResult:
        """TX descriptor outside the region: ``above`` its end, ``below`` it (UML's kernel
        image, not shared), or at address 0."""
        addr = {"above": self.mem.region_end + PAGE_SIZE,
                "below": self.mem.region_start - PAGE_SIZE,
                "zero": 0}[where]
        return self.hostile_chain("tx_out_of_memory", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 64, "flags": 0}],
                                   kick=kick, timeout=timeout, addr=addr, where=where)

    def corrupt_tx_addr_overflow(self, *, kick: bool = True,
                                 timeout: float | None = None) -> HostileResult:
        """addr + len wraps past 2**64 (a naive ``addr + len <= end`` check passes)."""
        addr = U64_MASK - 15
        return self.hostile_chain("tx_addr_overflow", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 64, "flags": 0}],
                                   kick=kick, timeout=timeout, addr=addr)

    def corrupt_tx_zero_len(self, *, kick: bool = True,
                            timeout: float | None = None) -> HostileResult:
        """A single TX descriptor of length 0 (not even room for the header)."""
        addr = self.payload_buf()
        return self.hostile_chain("tx_zero_len", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 0, "flags": 0}],
                                   kick=kick, timeout=timeout, bufs=[(addr, 64)])

    def corrupt_tx_next_out_of_range(self, *, next_index: int | None = None, kick: bool = True,
                                     timeout: float | None = None) -> HostileResult:
        """NEXT set with ``next`` >= queue size (default: exactly the queue size)."""
        nxt = self.queue_size if next_index is None else next_index
        addr = self.payload_buf()
        return self.hostile_chain("tx_next_out_of_range", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 64, "flags": VRING_DESC_F_NEXT,
                                     "next": nxt}],
                                   kick=kick, timeout=timeout, bufs=[(addr, 64)], next=nxt)

    def corrupt_tx_chain_loop(self, *, kick: bool = True,
                              timeout: float | None = None) -> HostileResult:
        """a -> b -> a: both descriptors carry NEXT."""
        a, b = self.payload_buf(), self.payload_buf()
        return self.hostile_chain("tx_chain_loop", NET_TX_QUEUE,
                                   [{"addr": a, "len": 64, "flags": VRING_DESC_F_NEXT, "to": 1},
                                    {"addr": b, "len": 64, "flags": VRING_DESC_F_NEXT, "to": 0}],
                                   kick=kick, timeout=timeout, bufs=[(a, 64), (b, 64)])

    def corrupt_tx_chain_too_long(self, *, kick: bool = True,
                                  timeout: float | None = None) -> HostileResult:
        """Every descriptor of the queue in one cycle: a walk never ends by itself, and no
        visited-set smaller than the queue catches it (needs an idle TX queue)."""
        self.reclaim_tx()
        n = self.txq.num
        if self.txq.num_free != n:
            raise VhostFrontendError("TX queue must be idle for corrupt_tx_chain_too_long")
        buf = self.payload_buf(16)
        specs = [{"addr": buf, "len": 16, "flags": VRING_DESC_F_NEXT, "to": (i + 1) % n}
                 for i in range(n)]
        return self.hostile_chain("tx_chain_too_long", NET_TX_QUEUE, specs,
                                   kick=kick, timeout=timeout, bufs=[(buf, 16)], length=n)

    def corrupt_tx_indirect(self, *, kick: bool = True,
                            timeout: float | None = None) -> HostileResult:
        """INDIRECT flag although RING_INDIRECT_DESC was not negotiated; the table it points
        to is plausible (one readable descriptor with a header + frame)."""
        frame_addr = self.payload_buf(self.hdr_len + 60, 0)
        table = self.mem.alloc(VRING_DESC_SIZE, 16)
        self.mem.write(table, VRING_DESC.pack(frame_addr, self.hdr_len + 60, 0, 0))
        return self.hostile_chain("tx_indirect", NET_TX_QUEUE,
                                   [{"addr": table, "len": VRING_DESC_SIZE,
                                     "flags": VRING_DESC_F_INDIRECT}],
                                   kick=kick, timeout=timeout,
                                   bufs=[(frame_addr, self.hdr_len + 60),
                                         (table, VRING_DESC_SIZE)],
                                   table=table, frame_addr=frame_addr)

    def corrupt_tx_write_flag(self, *, kick: bool = True,
                              timeout: float | None = None) -> HostileResult:
        """A TX (driver->device) buffer marked device-writable."""
        addr = self.payload_buf(self.hdr_len + 60, 0)
        return self.hostile_chain("tx_write_flag", NET_TX_QUEUE,
                                   [{"addr": addr, "len": self.hdr_len + 60,
                                     "flags": VRING_DESC_F_WRITE}],
                                   kick=kick, timeout=timeout,
                                   bufs=[(addr, self.hdr_len + 60)])

    def corrupt_rx_readonly(self, *, kick: bool = True,
                            timeout: float | None = None) -> HostileResult:
        """An RX buffer the device may not write (WRITE flag missing); needs a free RX slot."""
        rq = self.rxq
        if rq.num_free == 0:
            raise VhostFrontendError("RX queue full: connect(open=False) or consume first")
        addr = self.payload_buf(self.rx_buf_len, 0)
        return self.hostile_chain("rx_readonly", NET_RX_QUEUE,
                                   [{"addr": addr, "len": self.rx_buf_len, "flags": 0}],
                                   kick=kick, timeout=timeout, bufs=[(addr, self.rx_buf_len)])

    def corrupt_avail_idx_jump(self, index: int = NET_TX_QUEUE, *, ahead: int | None = None,
                               kick: bool = True, timeout: float | None = None) -> HostileResult:
        """``avail.idx`` more than the queue size ahead of what was published."""
        vq = self.queues[index]
        jump = vq.num + 1 if ahead is None else ahead
        value = (vq.avail_idx_shadow + jump) & U16_MASK
        vq.write_avail_idx(value)
        result = HostileResult("avail_idx_jump", index, None, [],
                               {"avail_idx": value, "shadow": vq.avail_idx_shadow,
                                "ahead": jump})
        if kick:
            self._safe_kick(index, result, timeout)
        return result

    def repair_avail_idx(self, index: int) -> None:
        """Write the driver's own ``avail.idx`` back after :meth:`corrupt_avail_idx_jump`."""
        vq = self.queues[index]
        vq.write_avail_idx(vq.avail_idx_shadow)
        vq.broken = False

    def corrupt_avail_head_out_of_range(self, index: int = NET_TX_QUEUE, *,
                                        head: int | None = None, kick: bool = True,
                                        timeout: float | None = None) -> HostileResult:
        """Publish an avail ring entry naming a descriptor >= the queue size."""
        vq = self.queues[index]
        bad = vq.num if head is None else head
        slot = vq.avail_idx_shadow & (vq.num - 1)
        vq.publish(bad)
        result = HostileResult("avail_head_out_of_range", index, bad, [],
                               {"slot": slot, "avail_idx": vq.avail_idx_shadow})
        if kick:
            self._safe_kick(index, result, timeout)
        return result

    # ------------------------------------------------------------------
    # hostile helpers: broken messages
    # ------------------------------------------------------------------
    def send_raw(self, data: bytes, fds: Sequence[int] = (), *, expect_reply: bool = True,
                 timeout: float = 1.0, name: str = "raw") -> HostileResult:
        """Write arbitrary bytes (and fds) on the front socket; maybe read one reply.

        The reply is read without UML's checks: (request, flags, size, payload).
        """
        result = HostileResult(name)
        sock = self._require_sock()
        try:
            self._sendmsg(sock, data, fds)
        except OSError as exc:
            result.outcome = f"closed: {exc}"
            return result
        if len(data) >= HEADER_SIZE:
            r, f, s = HEADER.unpack_from(data)
            self._record("send", "front", r, f, s, data[HEADER_SIZE:], len(fds))
        self.stats["hostile"] += 1
        result.outcome = "sent"
        if not expect_reply:
            return result
        return self._read_reply(result, timeout)

    def _read_reply(self, result: HostileResult, timeout: float) -> HostileResult:
        """One reply into ``result``, read without UML's checks."""
        sock = self._require_sock()
        deadline = _wall.monotonic() + timeout
        try:
            self._wait_readable(sock, deadline)
            head = self._full_read(sock, HEADER_SIZE, deadline)
            r, f, s = HEADER.unpack(head)
            payload = self._full_read(sock, min(s, 1 << 16), deadline)
            self._record("recv", "front", r, f, s, payload, 0)
            result.reply = (r, f, s, payload)
            result.outcome = "reply"
            if s == U64.size and f == VHOST_USER_REPLY_FLAGS:
                status = U64.unpack(payload)[0]
                result.outcome = "ok" if status == 0 else f"error {status}"
        except (VhostConnectionClosed, OSError) as exc:
            result.outcome = _failure(exc)
        return result

    def raw_request(self, request: int, payload: bytes, *, flags: int | None = None,
                     size: int | None = None, fds: Sequence[int] = (),
                     expect_reply: bool = True, timeout: float = 1.0,
                     name: str = "raw") -> HostileResult:
        if flags is None:
            flags = VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY
        size = len(payload) if size is None else size
        result = self.send_raw(HEADER.pack(request & U32_MASK, flags, size) + payload, fds,
                               expect_reply=expect_reply, timeout=timeout, name=name)
        result.details.update(request=request, flags=flags, size=size,
                              payload_len=len(payload), nfds=len(fds))
        return result

    def send_vring_addr_outside(self, index: int = NET_TX_QUEUE, *, which: str = "desc",
                                addr: int | None = None, timeout: float = 1.0) -> HostileResult:
        """SET_VRING_ADDR with one ring area outside the shared region (NEED_REPLY)."""
        vq = self.queues[index]
        bad = self.mem.region_end + PAGE_SIZE if addr is None else addr
        areas = {"desc": vq.desc_addr, "used": vq.used_addr, "avail": vq.avail_addr}
        if which not in areas:
            raise ValueError("which must be desc, used or avail")
        areas[which] = bad
        payload = VRING_ADDR.pack(index, 0, areas["desc"], areas["used"], areas["avail"],
                                  VRING_LOG_NONE)
        result = self.raw_request(Request.SET_VRING_ADDR, payload, timeout=timeout,
                                   name="vring_addr_outside")
        result.queue = index
        result.details.update(which=which, addr=bad)
        return result

    def send_mem_table_too_many_regions(self, nregions: int = UML_MAX_MEM_REGIONS + 1, *,
                                        timeout: float = 1.0) -> HostileResult:
        """SET_MEM_TABLE announcing ``nregions`` (> 2), with that many regions and fds."""
        payload = mem_table_payload(self.mem.region(), nregions=nregions, copies=nregions,
                                    pad=False)
        result = self.raw_request(Request.SET_MEM_TABLE, payload,
                                   fds=[self.mem.fd] * nregions, timeout=timeout,
                                   name="mem_table_too_many_regions")
        result.details["nregions"] = nregions
        return result

    def send_mem_table_bad_fd_count(self, nfds: int = 0, *,
                                    timeout: float = 1.0) -> HostileResult:
        """SET_MEM_TABLE with one region but ``nfds`` (!= 1) descriptors, UML's 72 bytes."""
        payload = mem_table_payload(self.mem.region())
        result = self.raw_request(Request.SET_MEM_TABLE, payload, fds=[self.mem.fd] * nfds,
                                   timeout=timeout, name="mem_table_bad_fd_count")
        result.details["nregions"] = 1
        return result

    def send_truncated(self, request: int = Request.SET_VRING_NUM, *, keep: int = 6,
                       payload: bytes | None = None, shutdown: bool = True,
                       timeout: float = 1.0) -> HostileResult:
        """The first ``keep`` bytes of a message (header included), then (``shutdown``) EOF
        on our write side, so the back-end sees the connection end mid-message."""
        if payload is None:
            payload = VRING_STATE.pack(NET_TX_QUEUE, self.queue_size)
        full = HEADER.pack(request, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY,
                           len(payload)) + payload
        result = self.send_raw(full[:keep], expect_reply=False, name="truncated")
        if shutdown and result.outcome == "sent":
            try:
                self._require_sock().shutdown(socket.SHUT_WR)
            except OSError:
                pass
        result.details.update(request=request, keep=keep, full_len=len(full))
        if shutdown:
            # the back-end should now close: wait for EOF
            sock = self._require_sock()
            try:
                if select.select([sock], [], [], timeout)[0]:
                    result.outcome = "closed" if not sock.recv(4096) else "reply"
                else:
                    result.outcome = "no reply"
            except OSError:
                result.outcome = "closed"
        return result

    def send_slowly(self, request: int = Request.SET_VRING_NUM, *, piece: int = 1,
                    pause: float = 0.3, payload: bytes | None = None,
                    timeout: float = 1.0) -> HostileResult:
        """One message (NEED_REPLY) in pieces of ``piece`` bytes, ``pause`` s apart, then its
        reply; stops early if the back-end goes. ``details``: ``started`` (``time.time()``
        of the first piece), ``pieces`` sent, ``total`` pieces."""
        if payload is None:
            payload = VRING_STATE.pack(NET_TX_QUEUE, self.queue_size)
        data = HEADER.pack(request, VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY,
                           len(payload)) + payload
        chunks = [data[i:i + piece] for i in range(0, len(data), piece)]
        result = HostileResult("send_slowly", details={"total": len(chunks), "pieces": 0})
        sock = self._require_sock()
        for i, chunk in enumerate(chunks):
            if i:
                _wall.sleep(pause)
            else:
                result.details["started"] = _wall.time()
            try:
                sock.sendall(chunk)
            except OSError as exc:
                result.outcome = _failure(exc)
                return result
            result.details["pieces"] += 1
        return self._read_reply(result, timeout)

    def cut_call_replies(self, keep: int = 6) -> HostileResult:
        """From now on answer the device's calls with the first ``keep`` bytes of each reply
        only (the rest never comes)."""
        self._backend_keep = keep
        return HostileResult("cut_call_replies", outcome="ok", details={"keep": keep})

    def send_unknown_request(self, request: int = 0xDEAD, *, need_reply: bool = True,
                             payload: bytes = b"", timeout: float = 1.0) -> HostileResult:
        """A request id no spec defines."""
        flags = VHOST_USER_VERSION | (VHOST_USER_FLAG_NEED_REPLY if need_reply else 0)
        return self.raw_request(request, payload, flags=flags, expect_reply=need_reply,
                                 timeout=timeout, name="unknown_request")

    def send_size_mismatch(self, request: int = Request.SET_VRING_NUM, *,
                           claimed: int = 4096, payload: bytes | None = None,
                           timeout: float = 1.0) -> HostileResult:
        """Header ``size`` larger than the payload that follows (the connection stays open,
        so a back-end that trusts ``size`` swallows whatever comes next)."""
        if payload is None:
            payload = VRING_STATE.pack(NET_TX_QUEUE, self.queue_size)
        return self.raw_request(request, payload, size=claimed, timeout=timeout,
                                 name="size_mismatch")

    def send_oversized_payload(self, request: int = Request.SET_VRING_NUM, *,
                               size: int = 1 << 20, timeout: float = 1.0) -> HostileResult:
        """A well-framed message whose payload is far larger than any request needs."""
        return self.raw_request(request, bytes(size), timeout=timeout,
                                 name="oversized_payload")

    def send_mem_table_resized(self, size_delta: int) -> str:
        """SET_MEM_TABLE again, the region's size changed by ``size_delta``; returns "ok",
        "no reply" or the error."""
        guest, size, user, offset = self.mem.region()
        payload = mem_table_payload((guest, size + size_delta, user, offset))
        try:
            self._send(Request.SET_MEM_TABLE, payload, fds=[self.mem.fd])
        except VhostTimeout:
            return "no reply"
        except VhostFrontendError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "ok"

    def shrink_memory(self, size: int, *, kick: int | None = None,
                      timeout: float | None = None) -> HostileResult:
        """Truncate the memory file to ``size`` bytes after SET_MEM_TABLE (the device's
        mapping keeps its size), then kick queue ``kick`` (None: no kick) without touching
        the memory: whatever the device reads or writes past ``size`` is gone."""
        self.mem.truncate(size)
        result = HostileResult("shrink_memory", kick, None, [], {"size": size})
        if kick is not None:
            self._safe_kick(kick, result, timeout)
        else:
            result.outcome = "ok"
        return result

    def flood(self, count: int) -> int:
        """``count`` GET_FEATURES whose replies are never read, written without blocking on
        our side; returns how many went out whole."""
        data = HEADER.pack(Request.GET_FEATURES, VHOST_USER_VERSION, 0) * count
        sock = self._require_sock()
        sock.setblocking(False)
        sent = 0
        try:
            while sent < len(data):
                sent += sock.send(data[sent:])
        except BlockingIOError:
            pass
        sock.setblocking(True)
        return sent // HEADER.size

    def shutdown_front(self) -> None:
        """End our side of the front socket (EOF for the device)."""
        self._require_sock().shutdown(socket.SHUT_WR)
