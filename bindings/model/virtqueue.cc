#include "virtqueue.h"

#include <cstring>

namespace ns3
{

void
Virtqueue::Reset()
{
    *this = Virtqueue();
}

void
Virtqueue::SetNum(const GuestMemory& mem, uint32_t num)
{
    if (num == 0 || num > vhost::MAX_QUEUE_SIZE || (num & (num - 1)) != 0)
    {
        throw VirtqueueError("queue size " + std::to_string(num) +
                             " is not a power of two up to " +
                             std::to_string(vhost::MAX_QUEUE_SIZE));
    }
    m_num = num;
    // Rings checked for a smaller size would be read and written past what was checked.
    Remap(mem);
}

void
Virtqueue::SetBase(uint16_t base)
{
    m_lastAvail = base;
    m_usedIdx = base;
    m_signalledValid = false;
}

void
Virtqueue::SetEventIdx(bool on)
{
    m_eventIdx = on;
    m_signalledValid = false;
}

uint16_t
Virtqueue::GetBase() const
{
    return m_lastAvail;
}

void
Virtqueue::SetAddr(const GuestMemory& mem, uint64_t desc, uint64_t avail, uint64_t used)
{
    if (m_num == 0)
    {
        throw VirtqueueError("SET_VRING_ADDR before SET_VRING_NUM");
    }
    m_placed = true;
    m_descAddr = desc;
    m_availAddr = avail;
    m_usedAddr = used;
    Remap(mem);
}

void
Virtqueue::Detach()
{
    m_desc = nullptr;
    m_avail = nullptr;
    m_used = nullptr;
}

void
Virtqueue::Remap(const GuestMemory& mem)
{
    Detach();
    if (!m_placed)
    {
        return;
    }
    auto* desc = reinterpret_cast<vhost::Desc*>(mem.Translate(m_descAddr, 16ULL * m_num));
    auto* avail = reinterpret_cast<uint16_t*>(mem.Translate(m_availAddr, 6ULL + 2ULL * m_num));
    auto* used = reinterpret_cast<uint16_t*>(mem.Translate(m_usedAddr, 6ULL + 8ULL * m_num));
    if (!desc || !avail || !used || m_descAddr % 16 || m_availAddr % 2 || m_usedAddr % 4)
    {
        m_placed = false;
        throw VirtqueueError("ring addresses outside the guest's memory or misaligned (queue "
                             "size " +
                             std::to_string(m_num) + ")");
    }
    m_desc = desc;
    m_avail = avail;
    m_used = used;
}

void
Virtqueue::SetEnabled(bool enabled)
{
    m_enabled = enabled;
}

bool
Virtqueue::IsReady() const
{
    return m_enabled && m_desc && m_avail && m_used;
}

uint32_t
Virtqueue::GetNum() const
{
    return m_num;
}

Virtqueue::Layout
Virtqueue::GetLayout() const
{
    return Layout{m_num, m_placed && m_desc, m_descAddr, m_availAddr, m_usedAddr, m_lastAvail,
                  m_eventIdx};
}

bool
Virtqueue::Pop(const GuestMemory& mem, Chain& chain)
{
    if (!IsReady())
    {
        return false;
    }
    uint16_t availIdx = __atomic_load_n(&m_avail[1], __ATOMIC_ACQUIRE);
    uint16_t pending = static_cast<uint16_t>(availIdx - m_lastAvail);
    if (pending == 0)
    {
        if (m_eventIdx)
        {
            // avail_event: "kick me for the next buffer". Only written once the ring is
            // empty, so a driver that adds while the device has work pending does not kick
            // (the drain picks those up). The rings were checked for 6 + 8 * num bytes.
            __atomic_store_n(&m_used[2 + 4 * m_num], m_lastAvail, __ATOMIC_RELEASE);
        }
        return false;
    }
    if (pending > m_num)
    {
        throw VirtqueueError("available index moved " + std::to_string(pending) +
                             " entries ahead of a queue of " + std::to_string(m_num));
    }
    uint16_t head = __atomic_load_n(&m_avail[2 + m_lastAvail % m_num], __ATOMIC_RELAXED);
    if (head >= m_num)
    {
        throw VirtqueueError("available ring names descriptor " + std::to_string(head) +
                             " of a queue of " + std::to_string(m_num));
    }
    m_lastAvail++;
    chain.head = head;
    chain.segments.clear();
    chain.readable = 0;
    chain.writable = 0;
    uint16_t index = head;
    for (uint32_t n = 0;; ++n)
    {
        if (n >= m_num)
        {
            throw VirtqueueError("descriptor chain longer than the queue (a loop)");
        }
        vhost::Desc d;
        std::memcpy(&d, &m_desc[index], sizeof(d)); // one copy: the driver may change it
        if (d.flags & vhost::VRING_DESC_F_INDIRECT)
        {
            throw VirtqueueError("indirect descriptor, which was not negotiated");
        }
        uint8_t* p = mem.Translate(d.addr, d.len);
        if (!p)
        {
            throw VirtqueueError("descriptor " + std::to_string(index) + " (addr 0x" +
                                 [&] {
                                     char b[20];
                                     std::snprintf(b, sizeof(b), "%llx",
                                                   static_cast<unsigned long long>(d.addr));
                                     return std::string(b);
                                 }() +
                                 ", len " + std::to_string(d.len) +
                                 ") is empty or outside the guest's memory");
        }
        bool writable = d.flags & vhost::VRING_DESC_F_WRITE;
        if (!writable && chain.writable)
        {
            throw VirtqueueError("readable descriptor after a writable one");
        }
        chain.segments.push_back(Segment{p, d.len, writable});
        (writable ? chain.writable : chain.readable) += d.len;
        if (!(d.flags & vhost::VRING_DESC_F_NEXT))
        {
            break;
        }
        if (d.next >= m_num)
        {
            throw VirtqueueError("descriptor " + std::to_string(index) + " chains to " +
                                 std::to_string(d.next) + ", past the queue");
        }
        index = d.next;
    }
    return true;
}

void
Virtqueue::Unpop(uint16_t count)
{
    m_lastAvail = static_cast<uint16_t>(m_lastAvail - count);
}

void
Virtqueue::Push(uint16_t head, uint32_t written)
{
    auto* ring = reinterpret_cast<vhost::UsedElem*>(m_used + 2);
    vhost::UsedElem e{head, written};
    std::memcpy(&ring[m_usedIdx % m_num], &e, sizeof(e));
    m_usedIdx++;
    __atomic_store_n(&m_used[1], m_usedIdx, __ATOMIC_RELEASE);
}

bool
Virtqueue::NeedsInterrupt()
{
    if (!m_eventIdx)
    {
        return !(__atomic_load_n(&m_avail[0], __ATOMIC_ACQUIRE) &
                 vhost::VRING_AVAIL_F_NO_INTERRUPT);
    }
    // Linux ignores the flags word with EVENT_IDX (virtqueue_disable_cb_split writes
    // used_event instead), so only used_event counts.
    uint16_t old = m_signalledUsed;
    bool valid = m_signalledValid;
    m_signalledUsed = m_usedIdx;
    m_signalledValid = true;
    uint16_t event = __atomic_load_n(&m_avail[2 + m_num], __ATOMIC_ACQUIRE);
    return !valid || vhost::VringNeedEvent(event, m_usedIdx, old);
}

} // namespace ns3
