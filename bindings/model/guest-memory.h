// A guest's memory as the vhost-user front-end shared it: every address is checked here.
#ifndef NS3_UML_GUEST_MEMORY_H
#define NS3_UML_GUEST_MEMORY_H

#include "vhost-user-protocol.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ns3
{

/** The regions of SET_MEM_TABLE, mapped; translation refuses anything outside them. */
class GuestMemory
{
  public:
    GuestMemory() = default;
    ~GuestMemory();
    GuestMemory(const GuestMemory&) = delete;
    GuestMemory& operator=(const GuestMemory&) = delete;

    /** Map the table's regions from their fds (takes ownership of the fds).
     * Returns an empty string or why the table is unusable. */
    std::string Map(const vhost::MemTable& table, const std::vector<int>& fds);
    void Unmap();
    bool IsMapped() const;

    /** Host pointer for [addr, addr+len) if it lies wholly inside one region, else nullptr.
     * len 0 is refused: no descriptor of a working driver is empty. */
    uint8_t* Translate(uint64_t addr, uint64_t len) const;

    /**
     * Whether every region still has its file behind it. The guest may shrink its memory
     * file (UML's cannot be sealed): an access past the file's end then read zeros or wrote
     * where the guest never looks (SigbusGuard), and all read since the last check is void.
     * Ask after each batch of accesses and before acting on anything read.
     */
    bool IsIntact() const;
    /** Why it is not intact (the first region that lost pages), or an empty string. */
    std::string Damage() const;

  private:
    struct Region
    {
        uint64_t start; // front-end address (UML: guest_addr == user_addr)
        uint64_t size;
        uint64_t fileOffset;
        uint8_t* base;
        size_t mapLen;
        int guardSlot; // SigbusGuard's
    };

    std::vector<Region> m_regions;
};

} // namespace ns3

#endif
