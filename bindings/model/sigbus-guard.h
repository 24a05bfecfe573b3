// The SIGBUS a guest causes by shrinking the file behind a mapping of its memory.
#ifndef NS3_UML_SIGBUS_GUARD_H
#define NS3_UML_SIGBUS_GUARD_H

#include <cstddef>
#include <cstdint>

namespace ns3
{

/**
 * Process-wide watch over shared file mappings whose file someone else may shrink: a guest's
 * memory, mapped from the file SET_MEM_TABLE handed over (UML's memory file is an unlinked
 * temporary file, not a memfd: it cannot be sealed). Touching a page past the file's end
 * raises SIGBUS, which would end the whole process and every guest in it.
 *
 * Once a mapping is watched, a SIGBUS the kernel raises for an address inside it replaces
 * the whole mapping with private zero pages (mmap MAP_FIXED over it), so the access
 * completes, and records the address; the owner asks FaultAddress after each batch of
 * accesses and turns a fault into an error naming its guest, discarding what it read
 * (docs/DESIGN.md rule 10). Every other SIGBUS goes to the handler installed before this
 * one (Python's faulthandler, cppyy's), or kills the process as it would have, so real bugs
 * still crash.
 *
 * The slots are lock-free (the handler may run on any thread while others watch and
 * unwatch); the handler is installed on the first Watch.
 */
class SigbusGuard
{
  public:
    /** Slots: mappings watched at once in one process (a guest maps at most 2 regions per
     * device). */
    static constexpr int MAX_WATCHED = 1024;

    /** Watch [base, base + len) (a mapping of the caller's); returns its slot, or -1 when
     * every slot is taken. */
    static int Watch(void* base, size_t len);
    /** Stop watching, before the mapping is unmapped. */
    static void Unwatch(int slot);
    /** The first address in the slot's mapping that faulted since Watch, or 0. Ordered after
     * every access the calling thread made before it. */
    static uintptr_t FaultAddress(int slot);
};

} // namespace ns3

#endif
