// libFuzzer target: the virtqueue walk (Virtqueue over GuestMemory) on guest memory the input
// fills, and the transmit path's virtio-net header and segmenter on the chains it finds
// (docs/DESIGN.md section 10).
//
// Input: a Head (the queue, the region, the rings' addresses, the accepted features), then
// operations, each an opcode byte and its arguments (little-endian; what runs out reads as 0):
//   POKE addr:u64 len:u16 bytes   guest memory at addr (descriptors, rings, buffers)
//   POP                           the next chain; a transmit queue's goes to the segmenter
//   PUSH written:u32              the oldest chain popped goes back, used
//   UNPOP count:u8                the last chains popped are put back
//   INTERRUPT                     whether the driver wants a call
//   SETNUM num:u16, SETADDR desc:u64 avail:u64 used:u64, REMAP, SETBASE base:u16,
//   EVENTIDX on:u8                the set-up messages' effects, again
// fuzz/record_seeds.py makes seeds of this shape from the rings a real guest kicked. A
// VirtqueueError or GsoError ends the input, as the device's GuestError ends the session.
// Findings: a crash, undefined behaviour, a segment outside the guest's region, a wire
// frame longer than the MTU allows.
#include "fuzz-scratch.h"
#include "gso-segmenter.h"
#include "guest-memory.h"
#include "vhost-user-protocol.h"
#include "virtqueue.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <sys/mman.h>
#include <unistd.h>
#include <vector>

using namespace ns3;

namespace
{

enum Op : uint8_t
{
    POKE = 0,
    POP = 1,
    PUSH = 2,
    UNPOP = 3,
    INTERRUPT = 4,
    SETNUM = 5,
    SETADDR = 6,
    REMAP = 7,
    SETBASE = 8,
    EVENTIDX = 9,
};

constexpr uint8_t HEAD_EVENT_IDX = 1;
constexpr uint8_t HEAD_TRANSMIT = 2;

struct Head
{
    uint8_t flags;
    uint8_t reserved0;
    uint16_t num;
    uint16_t base;
    uint16_t reserved1;
    uint32_t size; // region bytes
    uint32_t reserved2;
    uint64_t start; // the region's guest address
    uint64_t desc;
    uint64_t avail;
    uint64_t used;
    uint64_t features;
};

static_assert(sizeof(Head) == 56);

constexpr uint64_t MAX_REGION = 16 << 20;
// An Ethernet header; a frame with an 802.1Q tag at the device's MTU.
constexpr size_t MIN_WIRE_FRAME = 14;
constexpr size_t MAX_WIRE_FRAME = 14 + 4 + vhost::NET_MTU;

class Reader
{
  public:
    Reader(const uint8_t* p, size_t n)
        : m_p(p),
          m_end(p + n)
    {
    }

    bool More() const
    {
        return m_p < m_end;
    }

    template <typename T>
    T Get()
    {
        T v{};
        size_t n = std::min(sizeof(T), static_cast<size_t>(m_end - m_p));
        std::memcpy(&v, m_p, n);
        m_p += n;
        return v;
    }

    const uint8_t* Take(size_t& len)
    {
        len = std::min(len, static_cast<size_t>(m_end - m_p));
        const uint8_t* p = m_p;
        m_p += len;
        return p;
    }

  private:
    const uint8_t* m_p;
    const uint8_t* m_end;
};

/** One queue over one region, as a device has it after the guest's set-up. */
class Session
{
  public:
    explicit Session(const Head& h)
        : m_head(h)
    {
    }

    /** False if the set-up itself is refused (the device's GuestError). */
    bool SetUp()
    {
        m_size = std::clamp<uint64_t>((m_head.size + 4095ULL) & ~4095ULL, 4096, MAX_REGION);
        int fd = memfd_create("virtqueue-fuzzer", MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, static_cast<off_t>(m_size)) != 0)
        {
            fuzz::Finding("memfd for the guest's memory");
        }
        vhost::MemTable t{};
        t.nregions = 1;
        t.regions[0] = vhost::MemRegion{m_head.start, m_size, m_head.start, 0};
        if (!m_mem.Map(t, {fd}).empty())
        {
            return false; // a region that wraps around
        }
        m_base = m_mem.Translate(m_head.start, m_size);
        m_q.SetEventIdx(m_head.flags & HEAD_EVENT_IDX);
        try
        {
            m_q.SetNum(m_mem, m_head.num);
            m_q.SetBase(m_head.base);
            m_q.SetAddr(m_mem, m_head.desc, m_head.avail, m_head.used);
        }
        catch (const VirtqueueError&)
        {
            return false;
        }
        m_q.SetEnabled(true);
        return true;
    }

    /** False when the device would stop the session. */
    bool Do(Reader& in)
    {
        try
        {
            switch (in.Get<uint8_t>())
            {
            case POKE: {
                auto addr = in.Get<uint64_t>();
                size_t len = in.Get<uint16_t>();
                const uint8_t* bytes = in.Take(len);
                if (uint8_t* p = m_mem.Translate(addr, len))
                {
                    std::memcpy(p, bytes, len);
                }
                return true;
            }
            case PUSH: {
                auto written = in.Get<uint32_t>();
                if (!m_popped.empty())
                {
                    m_q.Push(m_popped.front(), written);
                    m_popped.pop_front();
                }
                return true;
            }
            case UNPOP: {
                size_t n = std::min<size_t>(in.Get<uint8_t>(), m_popped.size());
                m_q.Unpop(static_cast<uint16_t>(n));
                m_popped.resize(m_popped.size() - n);
                return true;
            }
            case INTERRUPT:
                (void)m_q.NeedsInterrupt();
                return true;
            case SETNUM:
                m_q.SetNum(m_mem, in.Get<uint16_t>());
                return true;
            case SETADDR: {
                auto desc = in.Get<uint64_t>();
                auto avail = in.Get<uint64_t>();
                auto used = in.Get<uint64_t>();
                m_q.SetAddr(m_mem, desc, avail, used);
                return true;
            }
            case REMAP:
                m_q.Detach();
                m_q.Remap(m_mem);
                return true;
            case SETBASE:
                m_q.SetBase(in.Get<uint16_t>());
                m_popped.clear();
                return true;
            case EVENTIDX:
                m_q.SetEventIdx(in.Get<uint8_t>() & 1);
                return true;
            default:
                return Pop();
            }
        }
        catch (const VirtqueueError&)
        {
            return false;
        }
        catch (const GsoError&)
        {
            return false;
        }
    }

  private:
    bool Pop()
    {
        Virtqueue::Chain chain;
        if (!m_q.Pop(m_mem, chain))
        {
            return true;
        }
        m_popped.push_back(chain.head);
        uint64_t readable = 0;
        uint64_t writable = 0;
        for (const auto& s : chain.segments)
        {
            if (s.ptr < m_base || s.len > m_size || s.ptr - m_base > m_size - s.len)
            {
                fuzz::Finding("Pop gave a segment outside the guest's memory");
            }
            (s.writable ? writable : readable) += s.len;
        }
        if (readable != chain.readable || writable != chain.writable)
        {
            fuzz::Finding("Pop's byte counts disagree with its segments");
        }
        if (!(m_head.flags & HEAD_TRANSMIT) || chain.writable ||
            chain.readable < vhost::NET_HDR_SIZE)
        {
            return true;
        }
        m_frame.clear();
        for (const auto& s : chain.segments)
        {
            m_frame.insert(m_frame.end(), s.ptr, s.ptr + s.len);
        }
        m_segmenter.Process(m_head.features,
                            m_frame.data(),
                            m_frame.data() + vhost::NET_HDR_SIZE,
                            m_frame.size() - vhost::NET_HDR_SIZE,
                            [](const uint8_t* frame, size_t len) {
                                if (len < MIN_WIRE_FRAME || len > MAX_WIRE_FRAME)
                                {
                                    fuzz::Finding("a wire frame of " + std::to_string(len) +
                                                  " bytes");
                                }
                                volatile uint8_t sink = frame[0] ^ frame[len - 1];
                                (void)sink;
                            });
        return true;
    }

    Head m_head;
    uint64_t m_size = 0;
    uint8_t* m_base = nullptr;
    GuestMemory m_mem;
    Virtqueue m_q;
    std::deque<uint16_t> m_popped;
    GsoSegmenter m_segmenter;
    std::vector<uint8_t> m_frame;
};

} // namespace

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < sizeof(Head))
    {
        return 0;
    }
    Head h;
    std::memcpy(&h, data, sizeof(h));
    const int fdsBefore = fuzz::OpenFds();
    {
        Session s(h);
        if (s.SetUp())
        {
            Reader in(data + sizeof(h), size - sizeof(h));
            while (in.More() && s.Do(in))
            {
            }
        }
    }
    fuzz::CheckNoFdLeak(fdsBefore, "a virtqueue session");
    return 0;
}
