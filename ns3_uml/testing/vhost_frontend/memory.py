"""The driver's memory: what UML owns and hands to the device in SET_MEM_TABLE.

The device side of the same memory (mapped from the fd, every address checked) is
``bindings/model/guest-memory.h``; this is the other end, the one that allocates.
"""

from __future__ import annotations

import mmap
import os
import tempfile

from ns3_uml.vhost_protocol import MEM_REGION, MEM_REGIONS_HEAD, MEM_TABLE_PAYLOAD_SIZE

__all__ = ["DEFAULT_RESERVED", "PAGE_SIZE", "DriverMemory", "mem_table_payload"]

PAGE_SIZE = 4096
#: Physical bytes below the shared region: UML's kernel image lives there and is *not*
#: file-backed, so it is left out of the memory table (``uml_reserved - uml_physmem``).
#: Observed on our 6.12 build run with ADDR_NO_RANDOMIZE and mem=64M: guest_addr ==
#: user_addr == mmap_offset == 0x946000, size 0x36ba000.  With address randomisation
#: the value moves run to run (seen: 0xdcb8000, 0x20cd4000, 0x365b9000).
DEFAULT_RESERVED = 0x946000


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


class DriverMemory:
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
        #: Bytes the file holds (``size`` unless :meth:`truncate` shrank it).
        self.file_size = size
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

    def truncate(self, size: int) -> None:
        """Shrink the memory file to ``size`` bytes behind the device's back, as a hostile
        guest may after SET_MEM_TABLE (UML's file is no memfd and cannot be sealed): the
        pages past it are gone for every mapping of the file, and touching them raises
        SIGBUS, so this memory refuses accesses there from now on."""
        os.ftruncate(self.fd, size)
        self.file_size = size

    def _check(self, addr: int, length: int) -> None:
        if addr < 0 or length < 0 or addr + length > min(self.size, self.file_size):
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


def mem_table_payload(region: tuple[int, int, int, int], *, nregions: int = 1,
                      copies: int = 1, pad: bool = True) -> bytes:
    """SET_MEM_TABLE's payload: the ``nregions`` count, ``copies`` of ``region``
    (guest_addr, size, user_addr, mmap_offset) and, with ``pad``, zeros up to the size UML
    always sends (room for two regions)."""
    payload = MEM_REGIONS_HEAD.pack(nregions, 0) + MEM_REGION.pack(*region) * copies
    if pad:
        payload += bytes(max(0, MEM_TABLE_PAYLOAD_SIZE - len(payload)))
    return payload
