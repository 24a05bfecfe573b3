#include "session-recorder.h"

#include "ns3/log.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("SessionRecorder");

std::unique_ptr<SessionRecorder>
SessionRecorder::Open(const char* prefix)
{
    const char* dir = std::getenv("NS3_UML_RECORD");
    if (!dir || !*dir)
    {
        return nullptr;
    }
    static std::atomic<unsigned> serial{0};
    std::string path = std::string(dir) + "/" + prefix + "-" + std::to_string(getpid()) + "-" +
                       std::to_string(serial++) + ".bin";
    std::FILE* file = std::fopen(path.c_str(), "wbe");
    if (!file)
    {
        NS_LOG_WARN("cannot record to " << path << ": " << std::strerror(errno));
        return nullptr;
    }
    NS_LOG_INFO("recording to " << path);
    return std::unique_ptr<SessionRecorder>(new SessionRecorder(file));
}

SessionRecorder::SessionRecorder(std::FILE* file)
    : m_file(file),
      m_written(0)
{
}

SessionRecorder::~SessionRecorder()
{
    std::fclose(m_file);
}

void
SessionRecorder::Write(const void* data, size_t len)
{
    if (m_written + len > MAX_BYTES)
    {
        return;
    }
    std::fwrite(data, 1, len, m_file);
    std::fflush(m_file); // a run that ends in a crash keeps what led to it
    m_written += len;
}

void
SessionRecorder::Record(uint32_t request,
                        uint32_t flags,
                        const void* head,
                        size_t headLen,
                        const void* data,
                        size_t len)
{
    // One write: a file cut at MAX_BYTES holds whole records.
    std::vector<uint8_t> rec(sizeof(vhost::Header) + headLen + len);
    vhost::Header h{request, flags, static_cast<uint32_t>(headLen + len)};
    std::memcpy(rec.data(), &h, sizeof(h));
    if (headLen)
    {
        std::memcpy(rec.data() + sizeof(h), head, headLen);
    }
    if (len)
    {
        std::memcpy(rec.data() + sizeof(h) + headLen, data, len);
    }
    Write(rec.data(), rec.size());
}

void
SessionRecorder::Memory(const GuestMemory& mem, uint64_t addr, uint64_t len)
{
    if (const uint8_t* p = mem.Translate(addr, len))
    {
        Record(recording::REQUEST_MEMORY, vhost::FLAG_VERSION, &addr, sizeof(addr), p, len);
    }
}

void
SessionRecorder::Ring(uint32_t index, const Virtqueue& q, const GuestMemory& mem)
{
    Virtqueue::Layout l = q.GetLayout();
    if (!l.placed)
    {
        return;
    }
    recording::Ring r{index, l.num, l.desc, l.avail, l.used, l.lastAvail, l.eventIdx, 0};
    Record(recording::REQUEST_RING, vhost::FLAG_VERSION, &r, sizeof(r), nullptr, 0);
    Memory(mem, l.desc, 16ULL * l.num);
    Memory(mem, l.avail, 6ULL + 2ULL * l.num);
    Memory(mem, l.used, 6ULL + 8ULL * l.num);
    // The device-readable buffers of the chains offered since the device's last one (what a
    // transmit carries); writable ones hold nothing yet. Placed rings translate (SetAddr).
    const auto* avail = reinterpret_cast<const uint16_t*>(mem.Translate(l.avail, 4 + 2 * l.num));
    const auto* desc = reinterpret_cast<const vhost::Desc*>(mem.Translate(l.desc, 16 * l.num));
    if (!avail || !desc)
    {
        return;
    }
    uint16_t pending = std::min<uint16_t>(avail[1] - l.lastAvail, l.num);
    for (uint16_t i = 0; i < pending; ++i)
    {
        uint16_t index = avail[2 + (l.lastAvail + i) % l.num] % l.num;
        for (uint32_t n = 0; n < l.num; ++n)
        {
            vhost::Desc d;
            std::memcpy(&d, &desc[index], sizeof(d));
            if (!(d.flags & vhost::VRING_DESC_F_WRITE))
            {
                Memory(mem, d.addr, std::min(d.len, MAX_BUFFER));
            }
            if (!(d.flags & vhost::VRING_DESC_F_NEXT))
            {
                break;
            }
            index = d.next % l.num;
        }
    }
}

void
SessionRecorder::Message(const vhost::Header& h,
                         const uint8_t* payload,
                         const std::vector<Virtqueue>& queues,
                         const GuestMemory& mem)
{
    if (h.request == vhost::VRING_KICK && h.size >= sizeof(vhost::VringState))
    {
        uint32_t index;
        std::memcpy(&index, payload, sizeof(index));
        if (index < queues.size())
        {
            Ring(index, queues[index], mem);
        }
    }
    Record(h.request, h.flags, nullptr, 0, payload, h.size);
}

} // namespace ns3
