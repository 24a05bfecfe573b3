// The shared scheduling page of the time-travel protocol, version 2 (um_timetravel_schedshm).
#ifndef NS3_UML_TT_SHARED_MEMORY_H
#define NS3_UML_TT_SHARED_MEMORY_H

#include "tt-protocol.h"

#include <cstdint>

namespace ns3
{

/**
 * A sealed memfd holding the header and one entry per client slot (slot 0 is the calendar).
 * Fields are accessed with relaxed atomics: the clients write them from other processes.
 */
class TtSharedMemory
{
  public:
    /** A page of the given version: 2 for real shared scheduling, 0 to tell clients to use
     * messages (UML 6.12 needs a memfd in every START ACK). */
    TtSharedMemory(uint16_t maxClients, uint32_t version);
    ~TtSharedMemory();
    TtSharedMemory(const TtSharedMemory&) = delete;
    TtSharedMemory& operator=(const TtSharedMemory&) = delete;

    int GetFd() const;
    uint16_t GetMaxClients() const;

    uint64_t GetFreeUntil() const;
    void SetFreeUntil(uint64_t t);
    uint64_t GetCurrentTime() const;
    void SetCurrentTime(uint64_t t);
    void SetRunningId(uint16_t slot);

    /** Slot entry; slot must be <= GetMaxClients(). */
    tt::ShmClient* Client(uint16_t slot);
    /** Zero an entry for reuse. */
    void ResetClient(uint16_t slot, uint64_t name);

  private:
    int m_fd;
    uint16_t m_maxClients;
    size_t m_len;
    unsigned char* m_base;
};

/** Atomic access to a field another process writes. */
template <typename T>
inline T
ShmLoad(const T* p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

template <typename T>
inline void
ShmStore(T* p, T v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

} // namespace ns3

#endif
