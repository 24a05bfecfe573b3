"""The shared-memory page of scheduling v2, as a UML 6.12 client maps and uses it.

``time_travel_setup_shm`` maps the memfd that came with the START ACK, checks the version and
that the page has room for its own slot, and from then on reads and writes the header
(``current_time``, ``free_until``, ``running_id``) and its own ``um_timetravel_schedshm_client``
entry (``capa``, ``flags``, ``req_time``) in place.  :class:`ShmPage` is that view; every access
outside the mapping raises :class:`TTPanic` where UML would read past it and crash.  The
calendar's end is ``TtSharedMemory`` (``bindings/model/tt-shared-memory.h``).
"""

from __future__ import annotations

import mmap
import struct

from ns3_uml.protocol import (
    SHM_CLIENT_OFF_CAPA,
    SHM_CLIENT_OFF_FLAGS,
    SHM_CLIENT_OFF_REQ_TIME,
    SHM_HEADER_SIZE,
    SHM_OFF_CURRENT_TIME,
    SHM_OFF_FREE_UNTIL,
    SHM_OFF_LEN,
    SHM_OFF_RUNNING_ID,
    SHM_OFF_VERSION,
    SHM_VERSION,
    client_offset,
)
from ns3_uml.testing.tt_client.errors import TTPanic

__all__ = ["ShmMapFailed", "ShmPage", "ShmRefused"]

_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_RW = mmap.PROT_READ | mmap.PROT_WRITE


class ShmMapFailed(Exception):
    """mmap() of the page failed (UML warns and goes on in message mode)."""


class ShmRefused(Exception):
    """The page is of another version, or too short for our slot (UML goes on without it)."""

    def __init__(self, version: int, length: int) -> None:
        super().__init__(f"shm version {version}, len {length}")
        self.version = version
        self.length = length


class _Field:
    """One integer of the page: in the header, or (``own``) in our client entry."""

    def __init__(self, fmt: struct.Struct, off: int, own: bool = False) -> None:
        self.fmt = fmt
        self.off = off
        self.own = own

    def _offset(self, page: ShmPage) -> int:
        return page._client + self.off if self.own else self.off

    def __get__(self, page: ShmPage, owner: type | None = None) -> int:
        return page._get(self.fmt, self._offset(page))

    def __set__(self, page: ShmPage, value: int) -> None:
        page._put(self.fmt, self._offset(page), value)


class ShmPage:
    """One client's view of the page: the header and its own client entry (``slot``).

    The fields are read and written in place, like UML's pointers into the mapping.
    """

    # the header
    current_time = _Field(_U64, SHM_OFF_CURRENT_TIME)
    free_until = _Field(_U64, SHM_OFF_FREE_UNTIL)
    running_id = _Field(_U16, SHM_OFF_RUNNING_ID)
    # our own client entry
    capa = _Field(_U32, SHM_CLIENT_OFF_CAPA, own=True)
    flags = _Field(_U32, SHM_CLIENT_OFF_FLAGS, own=True)
    req_time = _Field(_U64, SHM_CLIENT_OFF_REQ_TIME, own=True)

    def __init__(self, mm: mmap.mmap, slot: int) -> None:
        self._mm = mm
        self.slot = slot
        self._client = client_offset(slot)      # byte offset of our own entry

    @classmethod
    def map(cls, fd: int, slot: int) -> ShmPage:
        """The mapping part of time_travel_setup_shm(); the caller closes ``fd``.

        Raises :class:`ShmMapFailed` or :class:`ShmRefused`.
        """
        try:
            head = mmap.mmap(fd, SHM_HEADER_SIZE, mmap.MAP_SHARED, _RW)
        except (OSError, ValueError) as exc:
            raise ShmMapFailed(f"shm mmap failed: {exc}") from exc
        version = _U32.unpack_from(head, SHM_OFF_VERSION)[0]
        length = _U32.unpack_from(head, SHM_OFF_LEN)[0]
        head.close()
        if version != SHM_VERSION or length < client_offset(slot + 1):
            raise ShmRefused(version, length)
        try:
            # os_mremap_rw_shared(): the whole length the page announces
            return cls(mmap.mmap(fd, length, mmap.MAP_SHARED, _RW), slot)
        except (OSError, ValueError) as exc:
            raise ShmMapFailed(f"shm remap to {length} bytes failed: {exc}") from exc

    @property
    def length(self) -> int:
        """Bytes mapped (what the page announced)."""
        return len(self._mm)

    def close(self) -> None:
        self._mm.close()

    def _get(self, fmt: struct.Struct, off: int) -> int:
        try:
            return fmt.unpack_from(self._mm, off)[0]
        except struct.error as exc:
            # UML would read past its mapping and crash
            raise TTPanic(f"shared memory access out of range at {off}") from exc

    def _put(self, fmt: struct.Struct, off: int, value: int) -> None:
        try:
            fmt.pack_into(self._mm, off, value)
        except struct.error as exc:
            raise TTPanic(f"shared memory access out of range at {off}") from exc

    def capa_of(self, slot: int) -> int:
        """The ``capa`` of any client's entry (e.g. the running one's)."""
        return self._get(_U32, client_offset(slot) + SHM_CLIENT_OFF_CAPA)
