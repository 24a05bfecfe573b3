#include "tt-shared-memory.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <system_error>
#include <unistd.h>

namespace ns3
{

TtSharedMemory::TtSharedMemory(uint16_t maxClients, uint32_t version)
    : m_maxClients(maxClients),
      m_len(tt::SHM_HEADER_SIZE + tt::SHM_CLIENT_SIZE * (size_t{maxClients} + 1))
{
    m_fd = memfd_create("ns3-uml-schedshm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (m_fd < 0)
    {
        throw std::system_error(errno, std::generic_category(), "memfd_create");
    }
    if (ftruncate(m_fd, static_cast<off_t>(m_len)) != 0 ||
        fcntl(m_fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0)
    {
        int err = errno;
        close(m_fd);
        throw std::system_error(err, std::generic_category(), "sizing the schedule memfd");
    }
    void* p = mmap(nullptr, m_len, PROT_READ | PROT_WRITE, MAP_SHARED, m_fd, 0);
    if (p == MAP_FAILED)
    {
        int err = errno;
        close(m_fd);
        throw std::system_error(err, std::generic_category(), "mmap of the schedule memfd");
    }
    m_base = static_cast<unsigned char*>(p);
    std::memset(m_base, 0, m_len);
    auto* hdr = reinterpret_cast<tt::ShmHeader*>(m_base);
    hdr->version = version;
    hdr->len = static_cast<uint32_t>(m_len);
    hdr->max_clients = maxClients;
    hdr->free_until = tt::TIME_NEVER;
    // The calendar takes part in shared scheduling: a guest interrupted while the calendar
    // runs then posts its request here instead of sending a message.
    Client(0)->capa = tt::CAP_TIME_SHARE;
}

TtSharedMemory::~TtSharedMemory()
{
    munmap(m_base, m_len);
    close(m_fd);
}

int
TtSharedMemory::GetFd() const
{
    return m_fd;
}

uint16_t
TtSharedMemory::GetMaxClients() const
{
    return m_maxClients;
}

uint64_t
TtSharedMemory::GetFreeUntil() const
{
    return ShmLoad(&reinterpret_cast<const tt::ShmHeader*>(m_base)->free_until);
}

void
TtSharedMemory::SetFreeUntil(uint64_t t)
{
    ShmStore(&reinterpret_cast<tt::ShmHeader*>(m_base)->free_until, t);
}

uint64_t
TtSharedMemory::GetCurrentTime() const
{
    return ShmLoad(&reinterpret_cast<const tt::ShmHeader*>(m_base)->current_time);
}

void
TtSharedMemory::SetCurrentTime(uint64_t t)
{
    ShmStore(&reinterpret_cast<tt::ShmHeader*>(m_base)->current_time, t);
}

void
TtSharedMemory::SetRunningId(uint16_t slot)
{
    ShmStore(&reinterpret_cast<tt::ShmHeader*>(m_base)->running_id, slot);
}

tt::ShmClient*
TtSharedMemory::Client(uint16_t slot)
{
    return reinterpret_cast<tt::ShmClient*>(m_base + tt::SHM_HEADER_SIZE +
                                            tt::SHM_CLIENT_SIZE * size_t{slot});
}

void
TtSharedMemory::ResetClient(uint16_t slot, uint64_t name)
{
    tt::ShmClient* c = Client(slot);
    ShmStore(&c->flags, uint32_t{0});
    ShmStore(&c->capa, uint32_t{0});
    ShmStore(&c->req_time, uint64_t{0});
    ShmStore(&c->name, name);
}

} // namespace ns3
