#include "guest-memory.h"

#include <cerrno>
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
        m_regions.push_back(Region{r.userAddr, r.size, static_cast<uint8_t*>(p), r.size});
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

} // namespace ns3
