#include "guest-memory.h"

#include "sigbus-guard.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ns3
{

GuestMemory::~GuestMemory()
{
    Unmap();
}

std::string
GuestMemory::Map(const vhost::MemTable& table, const std::vector<int>& fds)
{
    Unmap();
    std::string error;
    if (table.nregions == 0 || table.nregions > vhost::MAX_MEM_REGIONS)
    {
        error = "SET_MEM_TABLE with " + std::to_string(table.nregions) + " regions";
    }
    else if (fds.size() != table.nregions)
    {
        error = "SET_MEM_TABLE with " + std::to_string(table.nregions) + " regions but " +
                std::to_string(fds.size()) + " descriptors";
    }
    for (uint32_t i = 0; error.empty() && i < table.nregions; ++i)
    {
        const vhost::MemRegion& r = table.regions[i];
        if (r.size == 0 || r.userAddr + r.size < r.userAddr || r.guestAddr != r.userAddr ||
            r.mmapOffset + r.size < r.mmapOffset)
        {
            error = "memory region " + std::to_string(i) + " is malformed";
            break;
        }
        // Pages of a file mapping past the file's end raise SIGBUS when touched.
        struct stat st{};
        if (fstat(fds[i], &st) == 0 && S_ISREG(st.st_mode) &&
            r.mmapOffset + r.size > static_cast<uint64_t>(st.st_size))
        {
            error = "memory region " + std::to_string(i) + " ends past its file (" +
                    std::to_string(r.mmapOffset + r.size) + " > " +
                    std::to_string(st.st_size) + " bytes)";
            break;
        }
        void* p = mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i],
                       static_cast<off_t>(r.mmapOffset));
        if (p == MAP_FAILED)
        {
            error = "cannot map memory region " + std::to_string(i) + ": " + std::strerror(errno);
            break;
        }
        // Watched, because the file may shrink later all the same (an access past its end
        // would raise SIGBUS and end every guest of the process).
        int slot = SigbusGuard::Watch(p, r.size);
        if (slot < 0)
        {
            munmap(p, r.size);
            error = "memory region " + std::to_string(i) + ": more than " +
                    std::to_string(SigbusGuard::MAX_WATCHED) +
                    " guest memory regions mapped in this process";
            break;
        }
        m_regions.push_back(
            Region{r.userAddr, r.size, r.mmapOffset, static_cast<uint8_t*>(p), r.size, slot});
    }
    for (int fd : fds)
    {
        close(fd); // the mapping stays valid
    }
    if (!error.empty())
    {
        Unmap();
    }
    return error;
}

void
GuestMemory::Unmap()
{
    for (const Region& r : m_regions)
    {
        SigbusGuard::Unwatch(r.guardSlot);
        munmap(r.base, r.mapLen);
    }
    m_regions.clear();
}

bool
GuestMemory::IsMapped() const
{
    return !m_regions.empty();
}

uint8_t*
GuestMemory::Translate(uint64_t addr, uint64_t len) const
{
    if (len == 0)
    {
        return nullptr;
    }
    for (const Region& r : m_regions)
    {
        // Written so that no sum can overflow.
        if (addr >= r.start && addr - r.start < r.size && len <= r.size - (addr - r.start))
        {
            return r.base + (addr - r.start);
        }
    }
    return nullptr;
}

bool
GuestMemory::IsIntact() const
{
    for (const Region& r : m_regions)
    {
        if (SigbusGuard::FaultAddress(r.guardSlot))
        {
            return false;
        }
    }
    return true;
}

std::string
GuestMemory::Damage() const
{
    for (size_t i = 0; i < m_regions.size(); ++i)
    {
        const Region& r = m_regions[i];
        const uintptr_t fault = SigbusGuard::FaultAddress(r.guardSlot);
        if (!fault)
        {
            continue;
        }
        const uint64_t at = r.fileOffset + (fault - reinterpret_cast<uintptr_t>(r.base));
        char text[256];
        std::snprintf(text,
                      sizeof(text),
                      "its memory file shrank under the device (region %zu: guest address "
                      "0x%llx, 0x%llx bytes from file offset 0x%llx; file offset 0x%llx is "
                      "past the file's end now)",
                      i,
                      static_cast<unsigned long long>(r.start),
                      static_cast<unsigned long long>(r.size),
                      static_cast<unsigned long long>(r.fileOffset),
                      static_cast<unsigned long long>(at));
        return text;
    }
    return "";
}

} // namespace ns3
