"""Reference vhost-user front-end behaving like a UML 6.12 guest's virtio-net interface.

:class:`VhostUserFrontend` plays ``arch/um/drivers/virtio_uml.c`` (the vhost-user transport)
together with what ``drivers/virtio/virtio_ring.c`` (split rings) and ``drivers/net/virtio_net.c``
(small RX buffers, TX chains, NAPI refill) do with the rings, so that tests can drive our
vhost-user back-end exactly the way a real guest would, and hold one side still.

=====================================  =============================================
Linux 6.12                             here
=====================================  =============================================
setup_physmem / create_mem_file        :class:`GuestMemory`
vhost_user_send / vhost_user_recv_*    ``_send`` / ``_recv_resp`` / ``_recv_u64``
time_travel_wait_readable              ``_wait_readable``
vhost_user_init                        ``connect`` (first half)
virtio_dev_probe + vu_finalize_features ``_negotiate``
vhost_user_get_config (vu_get)         :meth:`VhostUserFrontend.read_config`
virtnet_validate / virtnet_probe       ``_virtnet_validate`` / ``_virtnet_probe``
vhost_user_set_mem_table               ``_set_mem_table``
vu_find_vqs / vu_setup_vq              ``_find_vqs``
virtnet_open / try_fill_recv           :meth:`VhostUserFrontend.open` / ``_try_fill_recv``
vu_notify                              :meth:`VhostUserFrontend.kick`
vu_req_read_message                    ``_read_backend_messages``
vu_req_interrupt / vring_interrupt     ``_deliver_interrupt`` / ``_vring_interrupt``
virtnet_poll / receive_buf             ``_rx_napi_poll`` / ``_receive_buf``
start_xmit / xmit_skb / free_old_xmit  :meth:`VhostUserFrontend.send_frames` / ``reclaim_tx``
vu_del_vqs + virtio_uml_release_dev    :meth:`VhostUserFrontend.close`
virtqueue_add_split, get_buf_ctx_split :class:`SplitQueue`
=====================================  =============================================

Where UML would just log and go on (e.g. a malformed GET_CONFIG reply) this class does the
same and records the problem in :attr:`VhostUserFrontend.errors`; with ``strict=True`` (the
default) it raises instead, because for a test a silent UML-style fallback hides back-end bugs.
Hostile helpers (``corrupt_*``, ``send_*``) build broken ring states and messages for
robustness tests of the back-end; they never raise for what the back-end does in response.

Not thread-safe: one thread drives a front-end, like UML's single CPU.  Never imports ns-3.
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import tempfile
import time as _wall
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from ns3_uml.vhost_protocol import (
    CONFIG_HEAD,
    ETH_ALEN,
    ETH_DATA_LEN,
    ETH_HLEN,
    ETH_MIN_MTU,
    GOOD_PACKET_LEN,
    HEADER,
    HEADER_SIZE,
    LINUX_NAPI_BUDGET,
    LINUX_NET_DRIVER_FEATURES,
    LINUX_NET_DRIVER_FEATURES_LEGACY,
    LINUX_RING_TRANSPORT_FEATURES,
    MEM_REGION,
    MEM_REGIONS_HEAD,
    MEM_TABLE_PAYLOAD_SIZE,
    NET_CONFIG_OFF_MAC,
    NET_CONFIG_OFF_MTU,
    NET_CONFIG_OFF_STATUS,
    NET_RX_QUEUE,
    NET_TX_QUEUE,
    U64,
    UML_BACKEND_MAX_PAYLOAD,
    UML_MAX_MEM_REGIONS,
    UML_PROTOCOL_FEATURES,
    UML_QUEUE_SIZE,
    UML_SUPPORTED_FEATURES,
    UML_VRING_ALIGN,
    VHOST_USER_F_PROTOCOL_FEATURES,
    VHOST_USER_FLAG_NEED_REPLY,
    VHOST_USER_FLAG_REPLY,
    VHOST_USER_REPLY_FLAGS,
    VHOST_USER_VERSION,
    VIRTIO_NET_HDR,
    VIRTIO_NET_HDR_LEN,
    VIRTIO_NET_HDR_LEN_LEGACY,
    VIRTIO_NET_HDR_MRG,
    VIRTIO_NET_S_LINK_UP,
    VIRTIO_TRANSPORT_F_END,
    VIRTIO_TRANSPORT_F_START,
    VRING_ADDR,
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_AVAIL_OFF_FLAGS,
    VRING_AVAIL_OFF_IDX,
    VRING_AVAIL_OFF_RING,
    VRING_DESC,
    VRING_DESC_F_INDIRECT,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    VRING_DESC_SIZE,
    VRING_LOG_NONE,
    VRING_STATE,
    VRING_U16,
    VRING_USED_ELEM,
    VRING_USED_F_NO_NOTIFY,
    VRING_USED_OFF_FLAGS,
    VRING_USED_OFF_IDX,
    VRING_USED_OFF_RING,
    BackendRequest,
    NetFeature,
    ProtocolFeature,
    Request,
    VirtioFeature,
    backend_request_name,
    request_name,
    vring_layout,
)

if TYPE_CHECKING:
    from ns3_uml.testing.tt_client import TTClient

__all__ = [
    "DEFAULT_ACCEPTED_FEATURES",
    "GuestMemory",
    "HostileResult",
    "RingBroken",
    "SplitQueue",
    "VhostBackendError",
    "VhostConnectionClosed",
    "VhostFrontendError",
    "VhostMessage",
    "VhostProtocolError",
    "VhostTimeout",
    "VhostUnsupported",
    "VhostUserFrontend",
]

U16_MASK = 0xFFFF
U32_MASK = 0xFFFF_FFFF
U64_MASK = (1 << 64) - 1
PAGE_SIZE = 4096

#: Device features this reference front-end implements the data path for.  Linux would
#: accept more (offloads, MRG_RXBUF, CTRL_VQ, EVENT_IDX, INDIRECT...); what it would have
#: accepted and we did not is reported in ``declined_features``.
DEFAULT_ACCEPTED_FEATURES = (
    (1 << VirtioFeature.VERSION_1)
    | (1 << NetFeature.MAC)
    | (1 << NetFeature.STATUS)
    | (1 << NetFeature.MTU)
)
#: Physical bytes below the shared region: UML's kernel image lives there and is *not*
#: file-backed, so it is left out of the memory table (``uml_reserved - uml_physmem``).
#: Observed on our 6.12 build run with ADDR_NO_RANDOMIZE and mem=64M: guest_addr ==
#: user_addr == mmap_offset == 0x946000, size 0x36ba000.  With address randomisation
#: the value moves run to run (seen: 0xdcb8000, 0x20cd4000, 0x365b9000).
DEFAULT_RESERVED = 0x946000
_TRANSPORT_MASK = ((1 << VIRTIO_TRANSPORT_F_END) - 1) & ~((1 << VIRTIO_TRANSPORT_F_START) - 1)
#: ``MAX_SKB_FRAGS + 2``: free descriptors virtio-net wants before it stops the TX queue.
_TX_STOP_THRESHOLD = 19

# recv status codes, named like the errnos UML's helpers return
_OK = "OK"
_EAGAIN = "EAGAIN"
_EPROTO = "EPROTO"
_ECONNRESET = "ECONNRESET"


# ----------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------
class VhostFrontendError(RuntimeError):
    """Base class of everything this front-end raises about the back-end."""


class VhostProtocolError(VhostFrontendError):
    """Where UML's vhost-user helpers return ``-EPROTO`` (bad flags, sizes)."""


class VhostBackendError(VhostFrontendError):
    """A REPLY_ACK carried a non-zero status ("slave reports error", ``-EIO`` in UML)."""

    def __init__(self, request: int, status: int) -> None:
        super().__init__(f"back-end reports error {status} for {request_name(request)}")
        self.request = request
        self.status = status


class VhostConnectionClosed(VhostFrontendError):
    """The back-end closed a socket (``-ECONNRESET``)."""


class VhostUnsupported(VhostFrontendError):
    """A negotiation outcome this reference does not model (UML would fall back)."""


class VhostTimeout(TimeoutError):
    """Our own guard: UML would block forever."""


class RingBroken(VhostFrontendError):
    """``BAD_RING()`` in virtio_ring.c: the queue is marked broken and stops."""


# ----------------------------------------------------------------------
# records
# ----------------------------------------------------------------------
@dataclass
class VhostMessage:
    """One vhost-user message as it went over a socket."""

    direction: str          # "send" (we wrote it) or "recv"
    channel: str            # "front" (UML's socket) or "backend" (the backend channel)
    request: int
    flags: int
    size: int               # the header's size field
    payload: bytes = b""    # what actually travelled after the header
    nfds: int = 0

    @property
    def name(self) -> str:
        """The request's protocol name, e.g. "SET_MEM_TABLE"."""
        if self.channel == "backend":
            return backend_request_name(self.request)
        return request_name(self.request)

    def brief(self) -> tuple[str, int, int]:
        """(request name, flags, size): what tests compare with a real UML trace."""
        return self.name, self.flags, self.size


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


@dataclass
class _Chain:
    """``desc_state[head]`` plus what the buffers are, so they can be freed."""

    kind: str                               # "tx", "rx" or "hostile"
    descs: list[int]
    bufs: list[tuple[int, int]]             # (addr, allocated size) to free
    lengths: list[int]                      # descriptor lengths (RX: writable room)
    token: Any = None


# ----------------------------------------------------------------------
# guest memory
# ----------------------------------------------------------------------
def _create_mem_file(size: int) -> int:
    """UML's ``create_mem_file``: an unlinked file on tmpfs ($TMPDIR or /dev/shm).

    Not a memfd: back-ends must not rely on seals or memfd-only fcntls.
    """
    dirs = [d for d in (os.environ.get("TMPDIR"), "/dev/shm", tempfile.gettempdir()) if d]
    for d in dirs:
        try:
            fd = os.open(d, os.O_TMPFILE | os.O_RDWR | os.O_EXCL | os.O_CLOEXEC, 0o700)
        except (OSError, AttributeError):
            try:
                fd, name = tempfile.mkstemp(prefix="vm_file-", dir=d)
                os.unlink(name)
            except OSError:
                continue
        os.ftruncate(fd, size)
        return fd
    fd = os.memfd_create("vm_file", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    return fd


class GuestMemory:
    """UML's physical memory: one file of ``size`` bytes, guest physical address = file offset.

    The first ``reserved`` bytes stand for UML's kernel image, which is not backed by the
    file and therefore not in the memory table; the shared region is
    ``[reserved, size)`` with guest_addr == user_addr == mmap_offset == ``reserved``, exactly
    as ``vhost_user_init_mem_region`` builds it.  A bump allocator with per-size free lists
    hands out buffers inside the region (deterministic addresses).
    """

    def __init__(self, size: int, reserved: int = DEFAULT_RESERVED) -> None:
        if size % PAGE_SIZE or reserved % PAGE_SIZE:
            raise ValueError("memory size and reserved area must be page multiples")
        if not 0 <= reserved < size:
            raise ValueError("reserved area must be smaller than the memory")
        self.size = size
        self.reserved = reserved
        self.fd = _create_mem_file(size)
        self.mm = mmap.mmap(self.fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._next = reserved
        self._free: dict[tuple[int, int], list[int]] = {}
        self.allocated = 0

    # the one region UML announces
    @property
    def region_start(self) -> int:
        """First guest address of the shared region (after the reserved part)."""
        return self.reserved

    @property
    def region_size(self) -> int:
        """Bytes of the shared region."""
        return self.size - self.reserved

    @property
    def region_end(self) -> int:
        """One past the last guest address of the region."""
        return self.size

    def region(self) -> tuple[int, int, int, int]:
        """(guest_addr, size, user_addr, mmap_offset) of the memory-table entry."""
        return self.reserved, self.region_size, self.reserved, self.reserved

    def in_region(self, addr: int, length: int = 1) -> bool:
        """True if ``[addr, addr + length)`` lies inside the shared region."""
        return self.reserved <= addr and addr + length <= self.size and length >= 0

    def alloc(self, size: int, align: int = 64) -> int:
        """Allocate ``size`` bytes in the shared region; returns the guest physical address."""
        if size <= 0:
            raise ValueError("allocation size must be positive")
        key = (size, align)
        free = self._free.get(key)
        if free:
            addr = free.pop()
        else:
            addr = (self._next + align - 1) & ~(align - 1)
            if addr + size > self.size:
                raise MemoryError(f"guest memory exhausted ({size} bytes wanted)")
            self._next = addr + size
        self.allocated += size
        return addr

    def free(self, addr: int, size: int, align: int = 64) -> None:
        """Return a block from ``alloc`` for reuse."""
        self._free.setdefault((size, align), []).append(addr)
        self.allocated -= size

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > self.size:
            raise IndexError(f"guest access {addr:#x}+{length} outside memory")

    def read(self, addr: int, length: int) -> bytes:
        """Bytes at a guest address (checked against the region)."""
        self._check(addr, length)
        return bytes(self.mm[addr:addr + length])

    def write(self, addr: int, data: bytes) -> None:
        """Write bytes at a guest address (checked against the region)."""
        self._check(addr, len(data))
        self.mm[addr:addr + len(data)] = data

    def close(self) -> None:
        """Unmap the memory."""
        if not self.mm.closed:
            self.mm.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# ----------------------------------------------------------------------
# split ring, driver side
# ----------------------------------------------------------------------
class SplitQueue:
    """The driver half of a split virtqueue, as ``virtio_ring.c`` keeps it.

    Free descriptors form a LIFO list through a private ``next`` array (``desc_extra``), so
    descriptor numbers come out in the same order as Linux's; ``avail.idx`` is written after
    every added buffer, kicks are batched by the caller.
    """

    def __init__(self, mem: GuestMemory, index: int, num: int, *, initial_index: int = 0,
                 ring_base: int | None = None) -> None:
        if num & (num - 1) or not 0 < num <= 32768:
            raise ValueError("queue size must be a power of two <= 32768")
        self.mem = mem
        self.index = index
        self.num = num
        d, a, u, total = vring_layout(num, UML_VRING_ALIGN)
        if ring_base is None:
            # alloc_pages_exact(): page-aligned, zeroed, contiguous
            total = (total + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
            ring_base = mem.alloc(total, PAGE_SIZE)
            mem.write(ring_base, bytes(total))
        self.ring_size = total
        self.desc_addr = ring_base + d
        self.avail_addr = ring_base + a
        self.used_addr = ring_base + u
        self.extra_next = [(i + 1) % num if i < num - 1 else 0 for i in range(num)]
        self.free_head = 0
        self.num_free = num
        self.avail_idx_shadow = initial_index & U16_MASK
        self.last_used_idx = initial_index & U16_MASK
        self.num_added = 0
        self.avail_flags_shadow = 0
        self.state: dict[int, _Chain] = {}
        self.broken = False
        self.broken_reason = ""
        self.reported = False
        if initial_index:
            # test-only start point: both indices agree with SET_VRING_BASE
            self._w16(self.avail_addr + VRING_AVAIL_OFF_IDX, self.avail_idx_shadow)
            self._w16(self.used_addr + VRING_USED_OFF_IDX, self.last_used_idx)

    # --- raw accessors --------------------------------------------------
    def _r16(self, addr: int) -> int:
        return VRING_U16.unpack(self.mem.read(addr, 2))[0]

    def _w16(self, addr: int, value: int) -> None:
        self.mem.write(addr, VRING_U16.pack(value & U16_MASK))

    def read_desc(self, i: int) -> tuple[int, int, int, int]:
        """(addr, len, flags, next) of descriptor ``i``."""
        return VRING_DESC.unpack(self.mem.read(self.desc_addr + VRING_DESC_SIZE * i,
                                               VRING_DESC_SIZE))

    def write_desc(self, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        """Fill descriptor ``i`` of the table."""
        self.mem.write(self.desc_addr + VRING_DESC_SIZE * i,
                       VRING_DESC.pack(addr & U64_MASK, length & U32_MASK, flags & U16_MASK,
                                       nxt & U16_MASK))

    @property
    def avail_flags(self) -> int:
        """The available ring's flags word."""
        return self._r16(self.avail_addr + VRING_AVAIL_OFF_FLAGS)

    @property
    def avail_idx(self) -> int:
        """The available ring's index, as the device sees it."""
        return self._r16(self.avail_addr + VRING_AVAIL_OFF_IDX)

    def avail_ring(self, slot: int) -> int:
        """The head in slot ``slot`` of the available ring."""
        return self._r16(self.avail_addr + VRING_AVAIL_OFF_RING + 2 * (slot % self.num))

    @property
    def used_event(self) -> int:
        """The driver's used_event word (EVENT_IDX)."""
        return self._r16(self.avail_addr + VRING_AVAIL_OFF_RING + 2 * self.num)

    @property
    def used_flags(self) -> int:
        """The used ring's flags word."""
        return self._r16(self.used_addr + VRING_USED_OFF_FLAGS)

    @property
    def used_idx(self) -> int:
        """The used ring's index, as the device wrote it."""
        return self._r16(self.used_addr + VRING_USED_OFF_IDX)

    def used_elem(self, slot: int) -> tuple[int, int]:
        """(id, len) of used ring slot ``slot % num``."""
        off = self.used_addr + VRING_USED_OFF_RING + VRING_USED_ELEM.size * (slot % self.num)
        return VRING_USED_ELEM.unpack(self.mem.read(off, VRING_USED_ELEM.size))

    def write_avail_flags(self, flags: int) -> None:
        """Set the available ring's flags word."""
        self._w16(self.avail_addr + VRING_AVAIL_OFF_FLAGS, flags)

    def write_avail_idx(self, idx: int) -> None:
        """Publish the available ring's index."""
        self._w16(self.avail_addr + VRING_AVAIL_OFF_IDX, idx)

    def write_avail_ring(self, slot: int, head: int) -> None:
        """Put ``head`` in slot ``slot`` of the available ring."""
        self._w16(self.avail_addr + VRING_AVAIL_OFF_RING + 2 * (slot % self.num), head)

    def _write_used_event(self, value: int) -> None:
        self._w16(self.avail_addr + VRING_AVAIL_OFF_RING + 2 * self.num, value)

    # --- driver operations ----------------------------------------------
    def take_descs(self, count: int) -> list[int]:
        """Descriptor numbers the next ``count``-long chain gets (free-list order)."""
        if count > self.num_free:
            raise ValueError(f"queue {self.index}: {count} descriptors wanted, "
                             f"{self.num_free} free")
        out, i = [], self.free_head
        for _ in range(count):
            out.append(i)
            i = self.extra_next[i]
        return out

    def add(self, segments: Sequence[tuple[int, int, bool]], chain: _Chain) -> int:
        """``virtqueue_add_split()`` without indirect tables: returns the head.

        ``segments`` are (addr, len, device_writable); readable ones must come first.
        """
        if self.broken:
            raise RingBroken(f"queue {self.index} is broken: {self.broken_reason}")
        if not segments:
            raise ValueError("empty chain")
        if len(segments) > self.num_free:
            raise ValueError(f"queue {self.index} full ({self.num_free} free)")
        head = self.free_head
        i = head
        prev = head
        descs = []
        for addr, length, writable in segments:
            flags = VRING_DESC_F_NEXT | (VRING_DESC_F_WRITE if writable else 0)
            prev = i
            nxt = self.extra_next[i]
            # Linux stores the free-list successor even in the last descriptor
            self.write_desc(i, addr, length, flags, nxt)
            descs.append(i)
            i = nxt
        a, ln, fl, nx = self.read_desc(prev)
        self.write_desc(prev, a, ln, fl & ~VRING_DESC_F_NEXT, nx)
        self.num_free -= len(segments)
        self.free_head = i
        chain.descs = descs
        self.state[head] = chain
        self.publish(head)
        return head

    def publish(self, head: int) -> None:
        """Ring entry, then (after the write barrier) ``avail.idx``: one buffer exposed."""
        self.write_avail_ring(self.avail_idx_shadow & (self.num - 1), head)
        self.avail_idx_shadow = (self.avail_idx_shadow + 1) & U16_MASK
        self.write_avail_idx(self.avail_idx_shadow)
        self.num_added += 1

    def kick_prepare(self) -> bool:
        """``virtqueue_kick_prepare_split()`` without EVENT_IDX."""
        self.num_added = 0
        return not (self.used_flags & VRING_USED_F_NO_NOTIFY)

    def more_used(self) -> bool:
        """Whether the device has used buffers not yet taken back."""
        return self.last_used_idx != self.used_idx

    def disable_cb(self) -> None:
        """``virtqueue_disable_cb_split()``: ask the device not to call."""
        if not self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow |= VRING_AVAIL_F_NO_INTERRUPT
            self.write_avail_flags(self.avail_flags_shadow)

    def enable_cb_prepare(self) -> None:
        """``virtqueue_enable_cb_prepare_split()``."""
        if self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow &= ~VRING_AVAIL_F_NO_INTERRUPT
            self.write_avail_flags(self.avail_flags_shadow)
        self._write_used_event(self.last_used_idx)

    def enable_cb_delayed(self) -> None:
        """``virtqueue_enable_cb_delayed_split()`` (used_event only matters with EVENT_IDX)."""
        if self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow &= ~VRING_AVAIL_F_NO_INTERRUPT
            self.write_avail_flags(self.avail_flags_shadow)
        bufs = ((self.avail_idx_shadow - self.last_used_idx) & U16_MASK) * 3 // 4
        self._write_used_event(self.last_used_idx + bufs)

    def get_buf(self) -> tuple[_Chain, int] | None:
        """``virtqueue_get_buf_ctx_split()``: next used chain and its ``len``, or None."""
        if self.broken or not self.more_used():
            return None
        slot = self.last_used_idx & (self.num - 1)
        head, length = self.used_elem(slot)
        if head >= self.num:
            self.mark_broken(f"id {head} out of range")
            return None
        chain = self.state.pop(head, None)
        if chain is None:
            self.mark_broken(f"id {head} is not a head!")
            return None
        self._detach(head, chain)
        self.last_used_idx = (self.last_used_idx + 1) & U16_MASK
        if not self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self._write_used_event(self.last_used_idx)
        return chain, length

    def _detach(self, head: int, chain: _Chain) -> None:
        """``detach_buf_split()``: the chain goes back on the front of the free list."""
        descs = chain.descs
        for a, b in zip(descs, descs[1:], strict=False):
            self.extra_next[a] = b
        self.extra_next[descs[-1]] = self.free_head
        self.free_head = head
        self.num_free += len(set(descs))
        for addr, size in chain.bufs:
            self.mem.free(addr, size)

    def mark_broken(self, reason: str) -> None:
        """Stop using the queue, as virtio_uml does after a failed kick or call."""
        self.broken = True
        self.broken_reason = reason


# ----------------------------------------------------------------------
# the front-end
# ----------------------------------------------------------------------
class VhostUserFrontend:
    """UML 6.12's virtio_uml + virtio-net, reduced to what touches the back-end.

    ``socket_path``: the back-end's listening socket (UML connects).  ``mem_size``: UML's
    ``mem=``; ``reserved``: physical bytes below the shared region (UML's kernel image).
    ``queue_size``: 256 in UML (other values only to test the back-end).  ``tt``: a started
    :class:`~ns3_uml.testing.tt_client.TTClient` to couple with the time protocol as UML does.
    ``features``: device features we accept on top of Linux's choice (see
    :data:`DEFAULT_ACCEPTED_FEATURES`); ``protocol_features``: mask applied after UML's own.
    ``timeout``: seconds any wait may take (UML has none).  ``strict``: raise where UML would
    log and continue.  ``initial_index``: test-only start value of every ring's indices, sent
    in SET_VRING_BASE (UML always sends 0).
    """

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *,
                 sock: socket.socket | None = None,
                 mem_size: int = 64 << 20,
                 reserved: int = DEFAULT_RESERVED,
                 queue_size: int = UML_QUEUE_SIZE,
                 tt: TTClient | None = None,
                 features: int = DEFAULT_ACCEPTED_FEATURES,
                 protocol_features: int = UML_PROTOCOL_FEATURES,
                 timeout: float | None = 10.0,
                 strict: bool = True,
                 initial_index: int = 0) -> None:
        if socket_path is None and sock is None:
            raise ValueError("need socket_path or sock")
        self.socket_path = None if socket_path is None else os.fspath(socket_path)
        self.mem = GuestMemory(mem_size, reserved)
        self.queue_size = queue_size
        self.tt = tt
        self.accept_features = features
        self.protocol_mask = protocol_features
        self.timeout = timeout
        self.strict = strict
        self.initial_index = initial_index & U16_MASK
        self._sock = sock
        self._req: socket.socket | None = None      # our end of the backend channel
        self._kick_fds: dict[int, int] = {}          # fallback without INBAND
        self._call_socks: dict[int, socket.socket] = {}  # fallback without BACKEND_REQ

        # --- what negotiation produced ------------------------------------
        self.device_features = 0        # GET_FEATURES answer
        self.features = 0               # what SET_FEATURES carried (vu_dev->features)
        self._vdev_features = 0         # vdev->features (the driver's view)
        self.linux_features = 0         # what Linux 6.12 would have sent instead
        self.declined_features = 0      # Linux would accept, we did not
        self.backend_protocol_features = 0
        self.protocol_features = 0      # vu_dev->protocol_features
        self.mac: bytes | None = None
        self.mtu: int | None = None
        self.status: int | None = None  # virtio-net config status (None: no STATUS)
        self.hdr_len = VIRTIO_NET_HDR_LEN
        self.queues: list[SplitQueue] = []
        self.connected = False
        self.opened = False
        self.registered = False         # vu_dev->registered
        self.closed = False

        # --- interrupt state (vu_dev fields) --------------------------------
        self._vq_irq_map = 0
        self._config_changed_irq = False
        self._recv_rc = _OK
        self._irq_pending = False
        self._in_backend_read = False
        self._in_interrupt = False

        # --- bookkeeping ----------------------------------------------------
        self.log: list[VhostMessage] = []
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.config_reads: list[tuple[int, int]] = []
        self.rx_headers: list[tuple[int, ...]] = []
        self._rx_frames: list[bytes] = []

    # ------------------------------------------------------------------
    # small helpers
    # ------------------------------------------------------------------
    @property
    def rx_buf_len(self) -> int:
        """Writable bytes per RX buffer, as ``add_recvbuf_small`` posts them."""
        return self.hdr_len + GOOD_PACKET_LEN

    def has_feature(self, bit: int) -> bool:
        """``virtio_has_feature()``: looks at ``vdev->features`` (bit 30 not in it)."""
        return bool(self._vdev_features >> bit & 1)

    def has_protocol(self, bit: int) -> bool:
        """Whether the negotiated protocol features include ``bit``."""
        return bool(self.protocol_features >> bit & 1)

    @property
    def rxq(self) -> SplitQueue:
        """The receive queue (0)."""
        return self.queues[NET_RX_QUEUE]

    @property
    def txq(self) -> SplitQueue:
        """The transmit queue (1)."""
        return self.queues[NET_TX_QUEUE]

    def _error(self, text: str, exc: type[Exception] = VhostProtocolError) -> None:
        """UML logs and goes on; in strict mode we raise."""
        self.errors.append(text)
        if self.strict:
            raise exc(text)

    def _warn(self, text: str) -> None:
        self.warnings.append(text)

    def _deadline(self, timeout: float | None = None) -> float | None:
        t = self.timeout if timeout is None else timeout
        return None if t is None else _wall.monotonic() + t

    @staticmethod
    def _remaining_ms(deadline: float | None) -> float | None:
        if deadline is None:
            return None
        return max(0.0, (deadline - _wall.monotonic()) * 1000.0)

    def _require_sock(self) -> socket.socket:
        if self._sock is None:
            raise VhostFrontendError("front-end not connected")
        return self._sock

    def sequence(self, channel: str = "front",
                 direction: str | None = "send") -> list[tuple[str, int, int]]:
        """(name, flags, size) of every logged message on ``channel`` (and ``direction``)."""
        return [m.brief() for m in self.log
                if m.channel == channel and (direction is None or m.direction == direction)]

    def _record(self, direction: str, channel: str, request: int, flags: int, size: int,
                payload: bytes, nfds: int) -> VhostMessage:
        msg = VhostMessage(direction, channel, request, flags, size, payload, nfds)
        self.log.append(msg)
        (self.sent if direction == "send" else self.received)[msg.name] += 1
        return msg

    # ------------------------------------------------------------------
    # raw I/O
    # ------------------------------------------------------------------
    def _sendmsg(self, sock: socket.socket, data: bytes, fds: Sequence[int] = ()) -> None:
        """``full_sendmsg_fds()``: the fds ride on the first chunk only."""
        view = memoryview(data)
        first = True
        while view:
            if first and fds:
                n = socket.send_fds(sock, [view], list(fds))
            else:
                n = sock.send(view)
            first = False
            view = view[n:]

    def _wait_readable(self, sock: socket.socket, deadline: float | None) -> None:
        """``time_travel_wait_readable()`` plus the SIGIO path of the backend channel.

        With ``tt``: poll the socket and the time socket (vhost socket first, like
        ``os_poll``); time messages are handled like TTMH_READ.  Backend-channel messages
        are taken at once, because UML runs time-travel IRQ handlers even with interrupts
        off (the vring work itself waits until the request is done).  Without ``tt`` UML
        defers the backend channel until interrupts are on again, so it is not watched.
        """
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        tt_fd = req_fd = -1
        if self.tt is not None:
            tt_sock = self.tt._require_sock()
            tt_fd = tt_sock.fileno()
            poller.register(tt_fd, select.POLLIN)
            if self._req is not None and not self._in_backend_read:
                req_fd = self._req.fileno()
                poller.register(req_fd, select.POLLIN)
        while True:
            ready = poller.poll(self._remaining_ms(deadline))
            if not ready:
                raise VhostTimeout(f"no reply from the back-end in {self.timeout} s")
            fds = {fd for fd, _ev in ready}
            if req_fd in fds:
                # the SIGIO handler runs first: the signal interrupts the poll
                self._read_backend_messages(ev=True)
                if self._recv_rc == _ECONNRESET:
                    poller.unregister(req_fd)     # at EOF it would stay readable
                    req_fd = -1
            if sock.fileno() in fds:
                return
            if tt_fd in fds and self.tt is not None:
                from ns3_uml.testing.tt_client import TTMH_READ
                # TTClient has no public "handle one message" call; this is what
                # time_travel_wait_readable() does with it
                self.tt._handle_message(TTMH_READ)

    def _full_read(self, sock: socket.socket, n: int, deadline: float | None) -> bytes:
        buf = b""
        while len(buf) < n:
            if not select.select([sock], [], [], None if deadline is None else
                                 max(0.0, deadline - _wall.monotonic()))[0]:
                raise VhostTimeout(f"message incomplete after {self.timeout} s")
            try:
                chunk = sock.recv(n - len(buf))
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise VhostConnectionClosed("back-end closed the connection")
            buf += chunk
        return buf

    # ------------------------------------------------------------------
    # vhost_user_send and friends
    # ------------------------------------------------------------------
    def _send(self, request: int, payload: bytes = b"", *, need_response: bool = False,
              fds: Sequence[int] = ()) -> None:
        """``vhost_user_send()``: NEED_REPLY when REPLY_ACK is on and no reply is natural."""
        sock = self._require_sock()
        flags = VHOST_USER_VERSION
        request_ack = not need_response and self.has_protocol(ProtocolFeature.REPLY_ACK)
        if request_ack:
            flags |= VHOST_USER_FLAG_NEED_REPLY
        data = HEADER.pack(request, flags, len(payload)) + payload
        try:
            self._sendmsg(sock, data, fds)
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise VhostConnectionClosed(f"sending {request_name(request)}: {exc}") from exc
        self._record("send", "front", request, flags, len(payload), payload, len(fds))
        if request_ack:
            status = self._recv_u64(request)
            if status:
                self.errors.append(f"slave reports error: {status} ({request_name(request)})")
                raise VhostBackendError(request, status)
            self._after_request()

    def _recv_resp(self, max_payload: int, expect: int) -> tuple[int, int, bytes]:
        """``vhost_user_recv_resp()``: (request, size, payload); flags must be exactly 0x5.

        UML never compares the reply's request id with what it asked: a stray reply is
        taken as the answer to the next request.  We do the same but count it.
        """
        sock = self._require_sock()
        deadline = self._deadline()
        self._wait_readable(sock, deadline)
        head = self._full_read(sock, HEADER_SIZE, deadline)
        request, flags, size = HEADER.unpack(head)
        if size > max_payload:
            # UML returns -EPROTO and leaves the payload in the socket (stream now desynced)
            self._record("recv", "front", request, flags, size, b"", 0)
            raise VhostProtocolError(
                f"reply to {request_name(request)} announces {size} bytes, "
                f"at most {max_payload} expected (UML leaves them unread)")
        payload = self._full_read(sock, size, deadline)
        self._record("recv", "front", request, flags, size, payload, 0)
        if request != expect:
            self.stats["reply_request_mismatch"] += 1
            self._warn(f"reply carries request {request_name(request)}, "
                       f"expected {request_name(expect)} (UML does not check)")
        if flags != VHOST_USER_REPLY_FLAGS:
            raise VhostProtocolError(
                f"reply to {request_name(request)} has flags {flags:#x}, UML wants "
                f"exactly {VHOST_USER_REPLY_FLAGS:#x}")
        return request, size, payload

    def _recv_u64(self, expect: int) -> int:
        _req, size, payload = self._recv_resp(U64.size, expect)
        if size != U64.size:
            raise VhostProtocolError(f"u64 reply has size {size}")
        return U64.unpack(payload)[0]

    def _send_u64(self, request: int, value: int) -> None:
        self._send(request, U64.pack(value & U64_MASK))

    def _set_vring_state(self, request: int, index: int, num: int) -> None:
        self._send(request, VRING_STATE.pack(index & U32_MASK, num & U32_MASK))

    def _get_u64(self, request: int) -> int:
        self._send(request, need_response=True)
        value = self._recv_u64(request)
        self._after_request()
        return value

    def _after_request(self) -> None:
        """Interrupts are on again (spin_unlock_irqrestore): deliver what came meanwhile."""
        if self._irq_pending:
            self._deliver_interrupt()

    # ------------------------------------------------------------------
    # start-up
    # ------------------------------------------------------------------
    def connect(self, *, open: bool = True) -> None:  # noqa: A002 - mirrors ndo_open
        """Probe like UML 6.12 + virtio-net, then (``open``) bring the interface up."""
        if self.connected:
            raise VhostFrontendError("already connected")
        if self.tt is not None:
            self.tt.propagate_time()            # virtio_uml_probe()
        if self._sock is None:
            assert self.socket_path is not None
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.socket_path)
            except OSError:
                sock.close()
                raise
            self._sock = sock
        self._vhost_user_init()
        self.registered = True                  # register_virtio_device()
        self._negotiate()
        self._virtnet_probe()
        self.connected = True
        if open:
            self.open()

    def _vhost_user_init(self) -> None:
        self._send(Request.SET_OWNER)
        self.device_features = self._get_u64(Request.GET_FEATURES)
        if self.device_features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            self.backend_protocol_features = self._get_u64(Request.GET_PROTOCOL_FEATURES)
            # UML stores the mask first, so SET_PROTOCOL_FEATURES itself asks for an ack
            self.protocol_features = (self.backend_protocol_features & UML_PROTOCOL_FEATURES
                                      & self.protocol_mask)
            self._send_u64(Request.SET_PROTOCOL_FEATURES, self.protocol_features)
        if self.has_protocol(ProtocolFeature.BACKEND_REQ):
            # os_pipe(stream): an AF_UNIX stream socketpair, UML keeps [0], sends [1]
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            ours.setblocking(False)
            self._req = ours
            try:
                self._send(Request.SET_BACKEND_REQ_FD, fds=[theirs.fileno()])
            finally:
                theirs.close()
        missing = [p.name for p in (ProtocolFeature.REPLY_ACK, ProtocolFeature.BACKEND_REQ,
                                    ProtocolFeature.CONFIG,
                                    ProtocolFeature.INBAND_NOTIFICATIONS)
                   if not self.has_protocol(p)]
        if missing:
            text = ("back-end lacks protocol features " + ", ".join(missing) +
                    " (UML would fall back to eventfd kicks / pipe calls / random MAC, "
                    "losing the synchronous REPLY_ACK coupling)")
            self.warnings.append(text)
            if self.strict:
                raise VhostUnsupported(text)

    def _vu_finalize_features(self) -> None:
        """``vu_finalize_features()``: vring_transport_features, bit 30 back on, SET_FEATURES.

        Bit 30 is taken from ``vdev->features``, which the first call already cleared: a
        second finalize (after validate changed something) sends SET_FEATURES *without*
        bit 30, and then no SET_VRING_ENABLE follows.  Mirrored on purpose.
        """
        supported = self._vdev_features & UML_SUPPORTED_FEATURES
        self._vdev_features &= ~(_TRANSPORT_MASK & ~LINUX_RING_TRANSPORT_FEATURES)
        self.features = self._vdev_features | supported
        self._send_u64(Request.SET_FEATURES, self.features)

    def _negotiate(self) -> None:
        """``virtio_dev_probe()``: driver table & device, transport bits kept, finalize,
        validate, finalize again if validate changed anything."""
        dev = self.device_features
        if dev >> VirtioFeature.VERSION_1 & 1:
            driver = LINUX_NET_DRIVER_FEATURES
        else:
            driver = LINUX_NET_DRIVER_FEATURES_LEGACY
        linux = (driver & dev) | (dev & _TRANSPORT_MASK)
        # the one deliberate deviation: keep only what this reference implements
        self._vdev_features = linux & (self.accept_features | UML_SUPPORTED_FEATURES)
        keep = ~(_TRANSPORT_MASK & ~LINUX_RING_TRANSPORT_FEATURES)
        self.linux_features = (linux & keep) | (linux & UML_SUPPORTED_FEATURES)
        self._vu_finalize_features()
        self.declined_features = self.linux_features & ~self.features
        before = self._vdev_features
        self._virtnet_validate()
        if self._vdev_features != before:
            # "Did validation change any features? Then write them again."
            self._vu_finalize_features()

    def _virtnet_validate(self) -> None:
        if not self.has_feature(NetFeature.CTRL_VQ):
            for bit in (NetFeature.CTRL_RX, NetFeature.CTRL_VLAN, NetFeature.GUEST_ANNOUNCE,
                        NetFeature.MQ, NetFeature.CTRL_MAC_ADDR, NetFeature.RSS,
                        NetFeature.HASH_REPORT, NetFeature.NOTF_COAL,
                        NetFeature.VQ_NOTF_COAL):
                if self.has_feature(bit):
                    raise VhostUnsupported(f"{bit.name} without CTRL_VQ: virtio-net probe "
                                           "fails with -EINVAL")
        if self.has_feature(NetFeature.MTU):
            mtu = self._cread16(NET_CONFIG_OFF_MTU)
            if mtu is not None and mtu < ETH_MIN_MTU:
                self._vdev_features &= ~(1 << NetFeature.MTU)

    def _cread16(self, offset: int) -> int | None:
        data = self.read_config(offset, 2)
        return None if data is None else int.from_bytes(data, "little")

    def _virtnet_probe(self) -> None:
        if self.has_feature(NetFeature.MAC):
            # virtio_cread_bytes(): one config get per byte -> GET_CONFIG sizes 1..6
            mac = bytearray(ETH_ALEN)
            complete = True
            for i in range(ETH_ALEN):
                b = self.read_config(NET_CONFIG_OFF_MAC + i, 1)
                if b is None:
                    complete = False
                else:
                    mac[i] = b[0]
            # a failed read leaves UML's on-stack buffer as it was: undefined bytes
            self.mac = bytes(mac) if complete else None
            if not complete:
                self._warn("MAC read failed: UML would use uninitialised stack bytes")
        if self.has_feature(VirtioFeature.VERSION_1) or self.has_feature(NetFeature.MRG_RXBUF):
            self.hdr_len = VIRTIO_NET_HDR_LEN
        else:
            self.hdr_len = VIRTIO_NET_HDR_LEN_LEGACY
        if self.has_feature(NetFeature.MTU):
            self.mtu = self._cread16(NET_CONFIG_OFF_MTU)
            if self.mtu is not None and self.mtu > ETH_DATA_LEN:
                raise VhostUnsupported(f"MTU {self.mtu} > {ETH_DATA_LEN}: Linux would post "
                                       "big-packet RX chains, not modelled here")
        self._find_vqs()

    def read_config(self, offset: int, length: int) -> bytes | None:
        """``vhost_user_get_config()``: always from offset 0, ``offset + length`` bytes.

        Returns None where UML would leave the caller's buffer untouched.
        """
        if not self.has_protocol(ProtocolFeature.CONFIG):
            return None
        cfg_size = offset + length
        payload_size = CONFIG_HEAD.size + cfg_size
        self.config_reads.append((offset, length))
        self._send(Request.GET_CONFIG, CONFIG_HEAD.pack(0, cfg_size, 0) + bytes(cfg_size),
                   need_response=True)
        try:
            # UML passes the whole message size as the payload limit
            _req, size, payload = self._recv_resp(HEADER_SIZE + payload_size,
                                                  Request.GET_CONFIG)
        except VhostProtocolError as exc:
            self._error(f"receiving VHOST_USER_GET_CONFIG response failed: {exc}")
            return None
        got_cfg = CONFIG_HEAD.unpack_from(payload)[1] if len(payload) >= CONFIG_HEAD.size else -1
        if size != payload_size or got_cfg != cfg_size:
            self._error(f"Invalid VHOST_USER_GET_CONFIG sizes (payload {size} expected "
                        f"{payload_size}, config {got_cfg} expected {cfg_size})")
            return None
        data = payload[CONFIG_HEAD.size + offset:CONFIG_HEAD.size + offset + length]
        self._after_request()
        return data

    def _set_mem_table(self) -> None:
        """One region (``highmem`` is 0 on x86-64 UML), payload always sized for two."""
        guest, size, user, offset = self.mem.region()
        payload = MEM_REGIONS_HEAD.pack(1, 0) + MEM_REGION.pack(guest, size, user, offset)
        payload += bytes(MEM_TABLE_PAYLOAD_SIZE - len(payload))
        self._send(Request.SET_MEM_TABLE, payload, fds=[self.mem.fd])

    def _find_vqs(self) -> None:
        """``vu_find_vqs()``: memory table, per queue NUM/BASE/ADDR, then per queue ENABLE."""
        self._set_mem_table()
        inband = self.has_protocol(ProtocolFeature.INBAND_NOTIFICATIONS)
        backend_req = self.has_protocol(ProtocolFeature.BACKEND_REQ)
        for index in (NET_RX_QUEUE, NET_TX_QUEUE):
            vq = SplitQueue(self.mem, index, self.queue_size, initial_index=self.initial_index)
            self.queues.append(vq)
            if not inband:
                self._kick_fds[index] = os.eventfd(0, 0)
            if not (inband and backend_req):
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                ours.setblocking(False)
                self._call_socks[index] = ours
                try:
                    self._send(Request.SET_VRING_CALL, U64.pack(index), fds=[theirs.fileno()])
                finally:
                    theirs.close()
            self._set_vring_state(Request.SET_VRING_NUM, index, vq.num)
            self._set_vring_state(Request.SET_VRING_BASE, index, self.initial_index)
            self._send(Request.SET_VRING_ADDR,
                       VRING_ADDR.pack(index, 0, vq.desc_addr, vq.used_addr, vq.avail_addr,
                                       VRING_LOG_NONE))
        for vq in self.queues:
            if vq.index in self._kick_fds:
                self._send(Request.SET_VRING_KICK, U64.pack(vq.index),
                           fds=[self._kick_fds[vq.index]])
            self._set_vring_enable(vq.index, True)

    def _set_vring_enable(self, index: int, enable: bool) -> None:
        if self.features >> VHOST_USER_F_PROTOCOL_FEATURES & 1:
            self._set_vring_state(Request.SET_VRING_ENABLE, index, int(enable))

    def open(self) -> None:
        """``virtnet_open()``: fill the RX ring, kick it, then the deferred status read."""
        if self.opened:
            return
        self._try_fill_recv()
        self.opened = True
        if self.has_feature(NetFeature.STATUS):
            # virtio_config_driver_enable() runs the config change deferred in probe
            self._config_changed()
        else:
            self.status = VIRTIO_NET_S_LINK_UP

    def _config_changed(self) -> None:
        """``virtnet_config_changed_work()``: read the status word."""
        if not self.has_feature(NetFeature.STATUS):
            return
        self.stats["config_changes_handled"] += 1
        value = self._cread16(NET_CONFIG_OFF_STATUS)
        if value is not None:
            self.status = value

    # ------------------------------------------------------------------
    # kicks
    # ------------------------------------------------------------------
    def kick(self, index: int, *, force: bool = False) -> bool:
        """``virtqueue_kick_prepare`` + ``vu_notify``; False if not sent or it failed.

        A kick whose reply is an error or malformed breaks the queue, like Linux's
        ``virtqueue_notify()`` does when ``vu_notify`` returns false.
        """
        vq = self.queues[index]
        if not vq.kick_prepare() and not force:
            self.stats["kicks_suppressed"] += 1
            return False
        return self._notify(vq)

    def _notify(self, vq: SplitQueue) -> bool:
        if vq.broken:
            return False
        if self.tt is not None:
            self.tt.propagate_time()            # UPDATE before every kick
        self.stats[f"kicks_q{vq.index}"] += 1
        if vq.index in self._kick_fds:
            os.eventfd_write(self._kick_fds[vq.index], 1)
            return True
        try:
            self._set_vring_state(Request.VRING_KICK, vq.index, 0)
        except (VhostBackendError, VhostProtocolError) as exc:
            # vu_notify() returns false -> virtqueue_notify() marks the queue broken
            vq.mark_broken(f"kick failed: {exc}")
            vq.reported = True
            self.errors.append(f"queue {vq.index} broken: kick failed: {exc}")
            if self.strict:
                raise
            return False
        self._after_request()
        return True

    # ------------------------------------------------------------------
    # TX
    # ------------------------------------------------------------------
    def _net_header(self) -> bytes:
        # no offloads: all zero; num_buffers is 0 on TX (only set by the device on RX)
        if self.hdr_len == VIRTIO_NET_HDR_LEN:
            return VIRTIO_NET_HDR_MRG.pack(0, 0, 0, 0, 0, 0, 0)
        return VIRTIO_NET_HDR.pack(0, 0, 0, 0, 0, 0)

    def reclaim_tx(self) -> int:
        """``free_old_xmit()``: take back every used TX chain; returns how many."""
        n = 0
        while True:
            got = self.txq.get_buf()
            if got is None:
                break
            n += 1
            self.stats["tx_completed"] += 1
        self._check_broken(self.txq)
        return n

    def _add_tx(self, frame: bytes, chain: Sequence[int] | None) -> int:
        data = self._net_header() + bytes(frame)
        lengths = list(chain) if chain is not None else [len(data)]
        if sum(lengths) != len(data) or any(n <= 0 for n in lengths):
            raise ValueError(f"chain lengths {lengths} must be positive and add up to "
                             f"{len(data)} (header {self.hdr_len} + frame {len(frame)})")
        segments, bufs, pos = [], [], 0
        for n in lengths:
            addr = self.mem.alloc(n)
            self.mem.write(addr, data[pos:pos + n])
            bufs.append((addr, n))
            segments.append((addr, n, False))
            pos += n
        return self.txq.add(segments, _Chain("tx", [], bufs, lengths, frame))

    def send_frames(self, frames: Iterable[bytes], *,
                    chain: Sequence[int] | None = None, kick: bool = True) -> list[int]:
        """``start_xmit()`` for several frames with xmit_more: one kick at the end.

        ``chain`` splits each [header + frame] byte stream over descriptors of these
        lengths (default: one descriptor, the driver's ``can_push`` case).  Returns heads.
        """
        if not self.connected:
            raise VhostFrontendError("not connected")
        txq = self.txq
        heads = []
        for frame in frames:
            # napi_tx: disable callbacks, free old buffers, re-enable (delayed)
            txq.disable_cb()
            self.reclaim_tx()
            txq.enable_cb_delayed()
            needed = len(chain) if chain is not None else 1
            if txq.num_free < needed:
                raise VhostFrontendError(f"TX queue full ({txq.num_free} free): the back-end "
                                         "does not return TX buffers")
            heads.append(self._add_tx(frame, chain))
            self.stats["tx_frames"] += 1
            self.stats["tx_bytes"] += len(frame)
        if kick and heads:
            self.kick(NET_TX_QUEUE)
        self.reclaim_tx()
        return heads

    def send_frame(self, frame: bytes, *, chain: Sequence[int] | None = None,
                   kick: bool = True) -> int:
        """Post one frame on the TX queue (see :meth:`send_frames`); returns the head."""
        return self.send_frames([frame], chain=chain, kick=kick)[0]

    # ------------------------------------------------------------------
    # RX
    # ------------------------------------------------------------------
    def _add_rx(self, size: int) -> int:
        addr = self.mem.alloc(size)
        return self.rxq.add([(addr, size, True)], _Chain("rx", [], [(addr, size)], [size]))

    def _try_fill_recv(self) -> int:
        """``try_fill_recv()``: small buffers until the ring is full, then one kick."""
        n = 0
        while self.rxq.num_free:
            self._add_rx(self.rx_buf_len)
            n += 1
        self.stats["rx_posted"] += n
        self.kick(NET_RX_QUEUE)
        return n

    def post_rx_buffers(self, n: int | None = None, size: int | None = None, *,
                        kick: bool = True) -> int:
        """Post ``n`` writable one-descriptor buffers of ``size`` bytes and kick queue 0.

        Defaults: as many as fit, ``hdr_len + 1518`` bytes each (what the driver posts).
        """
        size = self.rx_buf_len if size is None else size
        count = self.rxq.num_free if n is None else min(n, self.rxq.num_free)
        for _ in range(count):
            self._add_rx(size)
        self.stats["rx_posted"] += count
        if kick and count:
            self.kick(NET_RX_QUEUE)
        return count

    def _receive_buf(self, chain: _Chain, length: int) -> None:
        """``receive_buf()`` + ``receive_small()`` for one used RX buffer."""
        hdr_len = self.hdr_len
        room = sum(chain.lengths)
        if length < hdr_len + ETH_HLEN:
            self.stats["rx_length_errors"] += 1
            self._warn(f"short packet {length}")
            return
        frame_len = length - hdr_len
        if frame_len > GOOD_PACKET_LEN or length > room:
            self.stats["rx_length_errors"] += 1
            self._warn(f"rx error: len {frame_len} exceeds max size {GOOD_PACKET_LEN}")
            return
        addr = chain.bufs[0][0]
        raw_hdr = self.mem.read(addr, hdr_len)
        if hdr_len == VIRTIO_NET_HDR_LEN:
            hdr = VIRTIO_NET_HDR_MRG.unpack(raw_hdr)
            # Linux ignores num_buffers without MRG_RXBUF; a device should still write 1
            if hdr[6] != 1:
                self.stats["rx_bad_num_buffers"] += 1
                self._warn(f"RX header num_buffers {hdr[6]} != 1")
        else:
            hdr = VIRTIO_NET_HDR.unpack(raw_hdr)
        self.rx_headers.append(hdr)
        self._rx_frames.append(self.mem.read(addr + hdr_len, frame_len))
        self.stats["rx_frames"] += 1
        self.stats["rx_bytes"] += frame_len

    def _rx_napi_poll(self) -> None:
        """``virtnet_poll()``: budgeted receive, refill when over half the budget is free."""
        rq = self.rxq
        rq.disable_cb()
        while True:
            received = 0
            while received < LINUX_NAPI_BUDGET:
                got = rq.get_buf()
                if got is None:
                    break
                self._receive_buf(*got)
                received += 1
            if rq.num_free > min(LINUX_NAPI_BUDGET, rq.num) // 2:
                self._try_fill_recv()
            # virtnet_poll_cleantx(): the RX NAPI also frees finished TX buffers
            self.reclaim_tx()
            if received < LINUX_NAPI_BUDGET:
                rq.enable_cb_prepare()
                if not rq.more_used() or rq.broken:
                    break
                rq.disable_cb()
        self._check_broken(rq)

    def received_frames(self, timeout: float = 0.0, *, poll_ring: bool = False) -> list[bytes]:
        """Frames received so far (header stripped), after serving the backend channel.

        Like Linux, used RX entries are only looked at after a VRING_CALL; ``poll_ring``
        also drains the used ring without one (a back-end that forgets to call).
        """
        self.poll(timeout)
        if poll_ring:
            self._rx_napi_poll()
        frames, self._rx_frames = self._rx_frames, []
        return frames

    def wait_frames(self, count: int, timeout: float | None = None) -> list[bytes]:
        """Serve the backend channel until ``count`` frames arrived; returns them all."""
        deadline = self._deadline(timeout)
        while len(self._rx_frames) < count:
            left = None if deadline is None else deadline - _wall.monotonic()
            if left is not None and left <= 0:
                raise VhostTimeout(f"{len(self._rx_frames)} of {count} frames arrived")
            self.poll(left if left is not None else 3600.0)
        frames, self._rx_frames = self._rx_frames, []
        return frames

    def _check_broken(self, vq: SplitQueue) -> None:
        if vq.broken and not vq.reported:
            vq.reported = True
            self.errors.append(f"queue {vq.index} broken: {vq.broken_reason}")
            raise RingBroken(f"queue {vq.index}: {vq.broken_reason}")

    # ------------------------------------------------------------------
    # backend channel (interrupts)
    # ------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> int:
        """Wait up to ``timeout`` s for backend messages, handle them all; returns how many.

        One wake-up = UML's SIGIO: ``vu_req_read_message`` drains the channel (with ``tt``:
        GET + REQUEST per message before the ack), then ``vu_req_interrupt`` runs the vring
        callbacks.  Without BACKEND_REQ the call sockets are read instead.
        """
        if self._req is None and not self._call_socks:
            return 0
        socks = [self._req] if self._req is not None else list(self._call_socks.values())
        ready = select.select(socks, [], [], max(0.0, timeout))[0]
        if not ready:
            if self._irq_pending:
                self._deliver_interrupt()
            return 0
        before = self.stats["backend_messages"]
        if self._req is not None:
            self._read_backend_messages(ev=self.tt is not None)
        else:
            self._read_call_fds()
        self._deliver_interrupt()
        return self.stats["backend_messages"] - before

    handle_backend_messages = poll

    def _recv_backend_one(self) -> tuple[str, tuple[int, int, int], bytes]:
        """``vhost_user_recv_req()`` on the non-blocking channel."""
        req = self._req
        assert req is not None
        head = b""
        while len(head) < HEADER_SIZE:
            try:
                chunk = req.recv(HEADER_SIZE - len(head))
            except BlockingIOError:
                if head:
                    # full_read(abortable): the partial header is simply lost
                    self.stats["backend_partial_header_lost"] += 1
                    self._warn(f"partial header ({len(head)} bytes) lost on EAGAIN")
                return _EAGAIN, (0, 0, 0), b""
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return _ECONNRESET, (0, 0, 0), b""
            head += chunk
        request, flags, size = HEADER.unpack(head)
        if size > UML_BACKEND_MAX_PAYLOAD:
            self._record("recv", "backend", request, flags, size, b"", 0)
            return _EPROTO, (request, flags, size), b""
        payload = b""
        deadline = self._deadline()
        while len(payload) < size:
            # not abortable: UML spins on EAGAIN until the payload is there
            try:
                chunk = req.recv(size - len(payload))
            except BlockingIOError:
                wait = None if deadline is None else max(0.0, deadline - _wall.monotonic())
                if not select.select([req], [], [], wait)[0]:
                    raise VhostTimeout("backend message payload incomplete") from None
                continue
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return _ECONNRESET, (request, flags, size), payload
            payload += chunk
        self._record("recv", "backend", request, flags, size, payload, 0)
        if flags & ~VHOST_USER_FLAG_NEED_REPLY != VHOST_USER_VERSION:
            return _EPROTO, (request, flags, size), payload
        return _OK, (request, flags, size), payload

    def _read_backend_messages(self, ev: bool) -> None:
        """``vu_req_read_message()``, quirks included.

        ``response`` starts at 1 once per drain and is never reset: after one good message,
        a later unknown one in the same drain is acked with 0.  A VRING_CALL payload shorter
        than 4 bytes reuses stale bytes in UML; here they read as zero.
        """
        if self._req is None or self._in_backend_read:
            return
        self._in_backend_read = True
        try:
            response = 1
            while True:
                rc, (request, flags, _size), payload = self._recv_backend_one()
                if rc != _OK:
                    break
                self.stats["backend_messages"] += 1
                if request == BackendRequest.CONFIG_CHANGE_MSG:
                    self._config_changed_irq = True
                    self.stats["config_change_msgs"] += 1
                    response = 0
                elif request == BackendRequest.VRING_CALL:
                    index = int.from_bytes(payload[:4].ljust(4, b"\0"), "little")
                    self.stats["calls"] += 1
                    for vq in self.queues:
                        if vq.index == index:
                            response = 0
                            self._vq_irq_map |= 1 << vq.index
                            self.stats[f"calls_q{vq.index}"] += 1
                            break
                    else:
                        self._warn(f"VRING_CALL for unknown queue {index}")
                else:
                    self._warn(f"unexpected slave request {request}")
                    self.stats["unexpected_backend_requests"] += 1
                if ev and self.tt is not None:
                    self.tt.add_irq_event()     # GET, then REQUEST(now) -- before the ack
                if flags & VHOST_USER_FLAG_NEED_REPLY:
                    self._backend_reply(request, flags, response)
                self._irq_pending = True
            if rc == _EPROTO:
                self.stats["backend_eproto"] += 1
                self._warn(f"malformed backend message {request_name(request)} flags "
                           f"{flags:#x} size {_size}")
            self._recv_rc = _OK if rc == _EAGAIN else rc
            if self._recv_rc != _OK:
                self._irq_pending = True
        finally:
            self._in_backend_read = False

    def _backend_reply(self, request: int, flags: int, response: int) -> None:
        """``vhost_user_reply()``: same header, NEED_REPLY off, REPLY on, u64 status."""
        req = self._req
        assert req is not None
        rflags = (flags & ~VHOST_USER_FLAG_NEED_REPLY) | VHOST_USER_FLAG_REPLY
        payload = U64.pack(response)
        data = HEADER.pack(request, rflags, len(payload)) + payload
        try:
            req.setblocking(True)
            self._sendmsg(req, data)
        except OSError as exc:
            self._warn(f"sending reply to slave request failed: {exc}")
        finally:
            req.setblocking(False)
        self._record("send", "backend", request, rflags, len(payload), payload, 0)
        self.stats["acks_sent"] += 1

    def _read_call_fds(self) -> None:
        """``vu_interrupt()`` for the pipe call fds of the non-INBAND fallback."""
        for index, s in self._call_socks.items():
            while True:
                try:
                    data = s.recv(8)
                except BlockingIOError:
                    break
                if not data:
                    break
                self.stats["backend_messages"] += 1
                self.stats[f"calls_q{index}"] += 1
                self._vq_irq_map |= 1 << index
                self._irq_pending = True

    def _deliver_interrupt(self) -> None:
        """``vu_req_interrupt()``: one of connection error / vring callbacks / config change.

        Not re-entered: an interrupt that arrives while one is handled (e.g. during the
        refill kick of the RX poll) runs right after it, as UML's IRQ code does.
        """
        if self._in_interrupt:
            return
        self._in_interrupt = True
        try:
            while self._irq_pending:
                self._irq_pending = False
                self._vu_req_interrupt()
        finally:
            self._in_interrupt = False

    def _vu_req_interrupt(self) -> None:
        if self._recv_rc != _OK:
            rc, self._recv_rc = self._recv_rc, _OK
            if rc == _ECONNRESET and self.registered:
                self.registered = False
                self._close_req()
                raise VhostConnectionClosed("back-end closed the backend channel")
            return
        if self._vq_irq_map:
            vq_map, self._vq_irq_map = self._vq_irq_map, 0
            for vq in self.queues:
                if vq_map >> vq.index & 1:
                    self._vring_interrupt(vq)
        elif self._config_changed_irq:
            # note the elif: a config change drained together with a call waits for the
            # next interrupt
            self._config_changed_irq = False
            if self.opened:
                # before ndo_open the driver defers it; open() reads the status anyway
                self._config_changed()

    def _vring_interrupt(self, vq: SplitQueue) -> None:
        if not vq.more_used():
            self.stats["spurious_calls"] += 1
            return
        if vq.broken:
            return
        if vq.index == NET_RX_QUEUE:
            if self.opened:
                self._rx_napi_poll()
        elif vq.index == NET_TX_QUEUE:
            self.reclaim_tx()

    def _close_req(self) -> None:
        if self._req is not None:
            self._req.close()
            self._req = None

    # ------------------------------------------------------------------
    # teardown
    # ------------------------------------------------------------------
    def close(self, *, teardown: bool = True) -> None:
        """``vu_del_vqs()`` (disable rings in reverse order, GET_FEATURES barrier) + release."""
        if self.closed:
            return
        self.closed = True
        try:
            if teardown and self.connected and self.registered and self._sock is not None:
                try:
                    for vq in reversed(self.queues):
                        self._set_vring_enable(vq.index, False)
                    self._get_u64(Request.GET_FEATURES)
                except (VhostFrontendError, VhostTimeout, OSError) as exc:
                    self._warn(f"teardown: {exc}")
            if self.tt is not None and not self.tt.closed and teardown and self.connected:
                try:
                    self.tt.propagate_time()    # virtio_uml_release_dev()
                except Exception as exc:  # noqa: BLE001 - the calendar may be gone
                    self._warn(f"release propagate_time: {exc}")
        finally:
            self._close_req()
            for s in self._call_socks.values():
                s.close()
            self._call_socks.clear()
            for fd in self._kick_fds.values():
                os.close(fd)
            self._kick_fds.clear()
            if self._sock is not None:
                self._sock.close()
                self._sock = None
            self.mem.close()

    def __enter__(self) -> VhostUserFrontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def result(self) -> dict[str, Any]:
        """Counters and negotiation outcome, JSON-ready."""
        return {
            "device_features": self.device_features,
            "features": self.features,
            "linux_features": self.linux_features,
            "declined_features": self.declined_features,
            "protocol_features": self.protocol_features,
            "mac": None if self.mac is None else self.mac.hex(":"),
            "mtu": self.mtu,
            "status": self.status,
            "hdr_len": self.hdr_len,
            "stats": dict(self.stats),
            "sent": dict(self.sent),
            "received": dict(self.received),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }

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
        except VhostBackendError as exc:
            result.outcome = f"error {exc.status}"
        except VhostConnectionClosed:
            result.outcome = "closed"
        except VhostTimeout:
            result.outcome = "no reply"
        except VhostProtocolError as exc:
            result.outcome = f"protocol: {exc}"
        except OSError as exc:
            result.outcome = f"closed: {exc}"
        finally:
            self.timeout = saved
        self.stats[f"kicks_q{index}"] += 1
        self.stats["hostile"] += 1
        if result.outcome != "ok":
            vq.mark_broken(f"hostile {result.name}: {result.outcome}")

    def _hostile_chain(self, name: str, index: int, specs: Sequence[dict[str, int]], *,
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
        vq.state[head] = _Chain("hostile", descs, list(details.pop("bufs", [])),
                                [s["len"] for s in specs], name)
        vq.publish(head)
        result = HostileResult(name, index, head, descs, dict(details))
        result.details["written"] = [vq.read_desc(d) for d in descs]
        if kick:
            self._safe_kick(index, result, timeout)
        return result

    def _payload_buf(self, size: int = 64, fill: int = 0xAB) -> int:
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
        return self._hostile_chain("tx_out_of_memory", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 64, "flags": 0}],
                                   kick=kick, timeout=timeout, addr=addr, where=where)

    def corrupt_tx_addr_overflow(self, *, kick: bool = True,
                                 timeout: float | None = None) -> HostileResult:
        """addr + len wraps past 2**64 (a naive ``addr + len <= end`` check passes)."""
        addr = U64_MASK - 15
        return self._hostile_chain("tx_addr_overflow", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 64, "flags": 0}],
                                   kick=kick, timeout=timeout, addr=addr)

    def corrupt_tx_zero_len(self, *, kick: bool = True,
                            timeout: float | None = None) -> HostileResult:
        """A single TX descriptor of length 0 (not even room for the header)."""
        addr = self._payload_buf()
        return self._hostile_chain("tx_zero_len", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 0, "flags": 0}],
                                   kick=kick, timeout=timeout, bufs=[(addr, 64)])

    def corrupt_tx_next_out_of_range(self, *, next_index: int | None = None, kick: bool = True,
                                     timeout: float | None = None) -> HostileResult:
        """NEXT set with ``next`` >= queue size (default: exactly the queue size)."""
        nxt = self.queue_size if next_index is None else next_index
        addr = self._payload_buf()
        return self._hostile_chain("tx_next_out_of_range", NET_TX_QUEUE,
                                   [{"addr": addr, "len": 64, "flags": VRING_DESC_F_NEXT,
                                     "next": nxt}],
                                   kick=kick, timeout=timeout, bufs=[(addr, 64)], next=nxt)

    def corrupt_tx_chain_loop(self, *, kick: bool = True,
                              timeout: float | None = None) -> HostileResult:
        """a -> b -> a: both descriptors carry NEXT."""
        a, b = self._payload_buf(), self._payload_buf()
        return self._hostile_chain("tx_chain_loop", NET_TX_QUEUE,
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
        buf = self._payload_buf(16)
        specs = [{"addr": buf, "len": 16, "flags": VRING_DESC_F_NEXT, "to": (i + 1) % n}
                 for i in range(n)]
        return self._hostile_chain("tx_chain_too_long", NET_TX_QUEUE, specs,
                                   kick=kick, timeout=timeout, bufs=[(buf, 16)], length=n)

    def corrupt_tx_indirect(self, *, kick: bool = True,
                            timeout: float | None = None) -> HostileResult:
        """INDIRECT flag although RING_INDIRECT_DESC was not negotiated; the table it points
        to is plausible (one readable descriptor with a header + frame)."""
        frame_addr = self._payload_buf(self.hdr_len + 60, 0)
        table = self.mem.alloc(VRING_DESC_SIZE, 16)
        self.mem.write(table, VRING_DESC.pack(frame_addr, self.hdr_len + 60, 0, 0))
        return self._hostile_chain("tx_indirect", NET_TX_QUEUE,
                                   [{"addr": table, "len": VRING_DESC_SIZE,
                                     "flags": VRING_DESC_F_INDIRECT}],
                                   kick=kick, timeout=timeout,
                                   bufs=[(frame_addr, self.hdr_len + 60),
                                         (table, VRING_DESC_SIZE)],
                                   table=table, frame_addr=frame_addr)

    def corrupt_tx_write_flag(self, *, kick: bool = True,
                              timeout: float | None = None) -> HostileResult:
        """A TX (driver->device) buffer marked device-writable."""
        addr = self._payload_buf(self.hdr_len + 60, 0)
        return self._hostile_chain("tx_write_flag", NET_TX_QUEUE,
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
        addr = self._payload_buf(self.rx_buf_len, 0)
        return self._hostile_chain("rx_readonly", NET_RX_QUEUE,
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
        except VhostConnectionClosed:
            result.outcome = "closed"
        except VhostTimeout:
            result.outcome = "no reply"
        except OSError as exc:
            result.outcome = f"closed: {exc}"
        return result

    def _raw_request(self, request: int, payload: bytes, *, flags: int | None = None,
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
        result = self._raw_request(Request.SET_VRING_ADDR, payload, timeout=timeout,
                                   name="vring_addr_outside")
        result.queue = index
        result.details.update(which=which, addr=bad)
        return result

    def _mem_table_payload(self, nregions: int, regions: int) -> bytes:
        guest, size, user, offset = self.mem.region()
        payload = MEM_REGIONS_HEAD.pack(nregions, 0)
        for _ in range(regions):
            payload += MEM_REGION.pack(guest, size, user, offset)
        return payload

    def send_mem_table_too_many_regions(self, nregions: int = UML_MAX_MEM_REGIONS + 1, *,
                                        timeout: float = 1.0) -> HostileResult:
        """SET_MEM_TABLE announcing ``nregions`` (> 2), with that many regions and fds."""
        payload = self._mem_table_payload(nregions, nregions)
        result = self._raw_request(Request.SET_MEM_TABLE, payload,
                                   fds=[self.mem.fd] * nregions, timeout=timeout,
                                   name="mem_table_too_many_regions")
        result.details["nregions"] = nregions
        return result

    def send_mem_table_bad_fd_count(self, nfds: int = 0, *,
                                    timeout: float = 1.0) -> HostileResult:
        """SET_MEM_TABLE with one region but ``nfds`` (!= 1) descriptors, UML's 72 bytes."""
        payload = self._mem_table_payload(1, 1)
        payload += bytes(MEM_TABLE_PAYLOAD_SIZE - len(payload))
        result = self._raw_request(Request.SET_MEM_TABLE, payload, fds=[self.mem.fd] * nfds,
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

    def send_unknown_request(self, request: int = 0xDEAD, *, need_reply: bool = True,
                             payload: bytes = b"", timeout: float = 1.0) -> HostileResult:
        """A request id no spec defines."""
        flags = VHOST_USER_VERSION | (VHOST_USER_FLAG_NEED_REPLY if need_reply else 0)
        return self._raw_request(request, payload, flags=flags, expect_reply=need_reply,
                                 timeout=timeout, name="unknown_request")

    def send_size_mismatch(self, request: int = Request.SET_VRING_NUM, *,
                           claimed: int = 4096, payload: bytes | None = None,
                           timeout: float = 1.0) -> HostileResult:
        """Header ``size`` larger than the payload that follows (the connection stays open,
        so a back-end that trusts ``size`` swallows whatever comes next)."""
        if payload is None:
            payload = VRING_STATE.pack(NET_TX_QUEUE, self.queue_size)
        return self._raw_request(request, payload, size=claimed, timeout=timeout,
                                 name="size_mismatch")

    def send_oversized_payload(self, request: int = Request.SET_VRING_NUM, *,
                               size: int = 1 << 20, timeout: float = 1.0) -> HostileResult:
        """A well-framed message whose payload is far larger than any request needs."""
        return self._raw_request(request, bytes(size), timeout=timeout,
                                 name="oversized_payload")
