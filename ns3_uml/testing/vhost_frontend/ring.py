"""The driver's half of a split virtqueue, as Linux 6.12's ``virtio_ring.c`` keeps it.

The device's half (checked reads of the same rings) is ``bindings/model/virtqueue.h``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ns3_uml.vhost_protocol import (
    UML_VRING_ALIGN,
    VRING_AVAIL_F_NO_INTERRUPT,
    VRING_AVAIL_OFF_FLAGS,
    VRING_AVAIL_OFF_IDX,
    VRING_AVAIL_OFF_RING,
    VRING_DESC,
    VRING_DESC_F_NEXT,
    VRING_DESC_F_WRITE,
    VRING_DESC_SIZE,
    VRING_U16,
    VRING_USED_ELEM,
    VRING_USED_F_NO_NOTIFY,
    VRING_USED_OFF_FLAGS,
    VRING_USED_OFF_IDX,
    VRING_USED_OFF_RING,
    vring_layout,
    vring_need_event,
)
from ns3_uml.testing.vhost_frontend.errors import RingBroken
from ns3_uml.testing.vhost_frontend.memory import PAGE_SIZE, DriverMemory

__all__ = ["PostedChain", "SplitQueue", "U16_MASK", "U32_MASK", "U64_MASK"]

U16_MASK = 0xFFFF
U32_MASK = 0xFFFF_FFFF
U64_MASK = (1 << 64) - 1


@dataclass
class PostedChain:
    """``desc_state[head]`` plus what the buffers are, so they can be freed."""

    kind: str                               # "tx", "rx" or "hostile"
    descs: list[int]
    bufs: list[tuple[int, int]]             # (addr, allocated size) to free
    lengths: list[int]                      # descriptor lengths (RX: writable room)
    token: Any = None


class SplitQueue:
    """The driver half of a split virtqueue, as ``virtio_ring.c`` keeps it.

    Free descriptors form a LIFO list through a private ``next`` array (``desc_extra``), so
    descriptor numbers come out in the same order as Linux's; ``avail.idx`` is written after
    every added buffer, kicks are batched by the caller. ``event_idx``: VIRTIO_F_EVENT_IDX
    was negotiated (``vq->event``): kicks follow the device's avail_event, interrupts are
    asked for through used_event only (the flags word is left alone).
    """

    def __init__(self, mem: DriverMemory, index: int, num: int, *, initial_index: int = 0,
                 ring_base: int | None = None, event_idx: bool = False) -> None:
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
        self.event = event_idx
        self.event_triggered = False
        self.state: dict[int, PostedChain] = {}
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
    def avail_event(self) -> int:
        """The device's avail_event word (EVENT_IDX)."""
        return self._r16(self.used_addr + VRING_USED_OFF_RING + VRING_USED_ELEM.size * self.num)

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

    def add(self, segments: Sequence[tuple[int, int, bool]], chain: PostedChain) -> int:
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
        """``virtqueue_kick_prepare_split()``."""
        new = self.avail_idx_shadow
        old = (new - self.num_added) & U16_MASK
        self.num_added = 0
        if self.event:
            return vring_need_event(self.avail_event, new, old)
        return not (self.used_flags & VRING_USED_F_NO_NOTIFY)

    def more_used(self) -> bool:
        """Whether the device has used buffers not yet taken back."""
        return self.last_used_idx != self.used_idx

    def disable_cb(self) -> None:
        """``virtqueue_disable_cb_split()``: ask the device not to call."""
        if not self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow |= VRING_AVAIL_F_NO_INTERRUPT
            if self.event_triggered:
                return  # the device will not call again before it is re-enabled
            if self.event:
                self._write_used_event(0)  # Linux's "hack": used_event 0
            else:
                self.write_avail_flags(self.avail_flags_shadow)

    def enable_cb_prepare(self) -> None:
        """``virtqueue_enable_cb_prepare_split()``."""
        self.event_triggered = False
        if self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow &= ~VRING_AVAIL_F_NO_INTERRUPT
            if not self.event:
                self.write_avail_flags(self.avail_flags_shadow)
        self._write_used_event(self.last_used_idx)

    def enable_cb_delayed(self) -> None:
        """``virtqueue_enable_cb_delayed_split()`` (used_event only matters with EVENT_IDX)."""
        self.event_triggered = False
        if self.avail_flags_shadow & VRING_AVAIL_F_NO_INTERRUPT:
            self.avail_flags_shadow &= ~VRING_AVAIL_F_NO_INTERRUPT
            if not self.event:
                self.write_avail_flags(self.avail_flags_shadow)
        bufs = ((self.avail_idx_shadow - self.last_used_idx) & U16_MASK) * 3 // 4
        self._write_used_event(self.last_used_idx + bufs)

    def get_buf(self) -> tuple[PostedChain, int] | None:
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

    def _detach(self, head: int, chain: PostedChain) -> None:
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

