// libFuzzer target: a device's vhost-user back-end (a VirtioNetDevice, or a
// VirtioConsoleDevice) reading and dispatching a stream of front-end messages, with the
// kicks' work done in ns-3 events of the calendar's event list, as in a run (docs/DESIGN.md
// section 10).
//
// Input: a configuration byte, then records framed as vhost-user messages (vhost::Header,
// then `size` payload bytes): a recorded vhost-*.bin with the byte in front. A record that is
// a front-end request is sent on the device's socket, one at a time, with the descriptors a
// front-end would pass: SET_MEM_TABLE gets one per region (all the same memfd, owned here and
// grown to what the table asks, up to 1 GiB), SET_BACKEND_REQ_FD a socket whose other end
// answers the device's calls; flag bit 30 sends none, bit 31 one more. Then the loop serves
// the device and ns-3 runs the events that follow. Other records are done here:
//   recording::REQUEST_MEMORY   the guest writes its memory (addr:u64, bytes)
//   recording::REQUEST_RING     nothing (what the recorder saw)
//   DELIVER                     ns-3 hands the guest the payload (a frame, or agent bytes)
// Configuration bits: CFG_OFFLOADS, CFG_EVENT_IDX, CFG_RX_MERGE (with 50 us coalescing),
// CFG_CONSOLE (the agent's console device instead), CFG_CALL_REFUSED (calls answered with
// status 1), CFG_CALL_GONE (the backend channel closes at the first call).
// A UmlError ends the input, as it ends a run. Findings: a crash, undefined behaviour, an
// exception that is not a UmlError, a descriptor left open.
#include "fuzz-scratch.h"
#include "guest-scheduler.h"
#include "session-recorder.h"
#include "uml-calendar.h"
#include "uml-error.h"
#include "vhost-user-protocol.h"
#include "virtio-console-device.h"
#include "virtio-net-device.h"

#include "ns3/boolean.h"
#include "ns3/nstime.h"
#include "ns3/packet.h"
#include "ns3/simple-ref-count.h"
#include "ns3/simulator.h"
#include "ns3/string.h"
#include "ns3/uinteger.h"

#include <algorithm>
#include <cstring>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <vector>

using namespace ns3;

namespace
{

constexpr uint32_t DELIVER = 0x4e530101;
constexpr uint32_t FLAG_NO_FDS = 1U << 30;
constexpr uint32_t FLAG_EXTRA_FD = 1U << 31;

constexpr uint8_t CFG_OFFLOADS = 1;
constexpr uint8_t CFG_EVENT_IDX = 2;
constexpr uint8_t CFG_RX_MERGE = 4;
constexpr uint8_t CFG_CONSOLE = 8;
constexpr uint8_t CFG_CALL_REFUSED = 16;
constexpr uint8_t CFG_CALL_GONE = 32;

constexpr uint64_t MAX_MEMORY = 1ULL << 30;
constexpr uint64_t CLIENT_ID = 7;

class Frontend;

/** What the device gets instead of the calendar: the loop, and the guest's answers to its
 * calls, given by the front-end here. */
class Scheduler : public SimpleRefCount<Scheduler, UmlGuestScheduler>
{
  public:
    explicit Scheduler(Frontend& frontend)
        : m_frontend(frontend)
    {
    }

    EventLoop& GetEventLoop() override
    {
        return m_loop;
    }

    void WaitForReply(int fd, uint64_t clientId) override;

    void ReportDeparture(uint64_t clientId) override
    {
    }

    double GetReplyTimeout() const override
    {
        return 2.0;
    }

  private:
    Frontend& m_frontend;
    EventLoop m_loop;
};

/** The guest's side: its socket, its memory (one memfd), its backend channel. */
class Frontend
{
  public:
    explicit Frontend(uint8_t cfg)
        : m_cfg(cfg)
    {
        m_memfd = memfd_create("vhost-user-fuzzer", MFD_CLOEXEC);
        if (m_memfd < 0)
        {
            fuzz::Finding("memfd for the guest's memory");
        }
    }

    ~Frontend()
    {
        for (int fd : {m_fd, m_memfd, m_channel})
        {
            if (fd >= 0)
            {
                close(fd);
            }
        }
    }

    Frontend(const Frontend&) = delete;
    Frontend& operator=(const Frontend&) = delete;

    void Connect(const std::string& path)
    {
        m_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
        if (connect(m_fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
        {
            fuzz::Finding("cannot connect to the device at " + path);
        }
    }

    /** Send one front-end message (payload cut at the input's end: then the end). */
    void Send(const vhost::Header& h, const uint8_t* payload, size_t len, bool last)
    {
        std::vector<int> fds;
        if (!(h.flags & FLAG_NO_FDS))
        {
            if (h.request == vhost::SET_MEM_TABLE && len >= 8)
            {
                uint32_t n = std::min<uint32_t>(TakeTable(payload, len), vhost::MAX_MEM_REGIONS);
                for (uint32_t i = 0; i < n; ++i)
                {
                    fds.push_back(dup(m_memfd));
                }
            }
            else if (h.request == vhost::SET_BACKEND_REQ_FD)
            {
                int pair[2];
                socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
                if (m_channel >= 0)
                {
                    close(m_channel);
                }
                m_channel = pair[0];
                fds.push_back(pair[1]);
            }
        }
        if (h.flags & FLAG_EXTRA_FD)
        {
            fds.push_back(dup(m_memfd));
        }
        std::vector<uint8_t> buf(sizeof(h) + len);
        std::memcpy(buf.data(), &h, sizeof(h));
        std::memcpy(buf.data() + sizeof(h), payload, len);
        iovec iov{buf.data(), buf.size()};
        msghdr mh{};
        mh.msg_iov = &iov;
        mh.msg_iovlen = 1;
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
        if (!fds.empty())
        {
            mh.msg_control = control;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
            cmsghdr* cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
            std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
        }
        (void)sendmsg(m_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        for (int fd : fds)
        {
            close(fd); // in flight: the device has its own now
        }
        if (last)
        {
            shutdown(m_fd, SHUT_WR); // a message cut short is the guest leaving
        }
    }

    /** Bytes sent that the device has not read yet. */
    int Unread() const
    {
        int n = 0;
        ioctl(m_fd, SIOCOUTQ, &n);
        return n;
    }

    /** Throw away the device's replies (a guest reads them; nothing here needs them). */
    void Drain()
    {
        uint8_t buf[4096];
        while (recv(m_fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        {
        }
    }

    /** The guest writes its memory at a guest address, where the last table put it. */
    void Poke(const uint8_t* payload, size_t len)
    {
        uint64_t addr;
        if (len < sizeof(addr))
        {
            return;
        }
        std::memcpy(&addr, payload, sizeof(addr));
        payload += sizeof(addr);
        len -= sizeof(addr);
        for (const vhost::MemRegion& r : m_regions)
        {
            if (addr >= r.userAddr && addr - r.userAddr < r.size && len <= r.size - (addr - r.userAddr))
            {
                uint64_t at = r.mmapOffset + (addr - r.userAddr);
                if (at + len <= m_memSize)
                {
                    (void)pwrite(m_memfd, payload, len, static_cast<off_t>(at));
                }
                return;
            }
        }
    }

    /** Answer the device's call on the backend channel, as the guest would. */
    void AnswerCall(int fd)
    {
        if (m_channel < 0)
        {
            return;
        }
        uint8_t buf[256];
        while (recv(m_channel, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        {
        }
        if (m_cfg & CFG_CALL_GONE)
        {
            close(m_channel);
            m_channel = -1;
            return;
        }
        struct
        {
            vhost::Header h;
            uint64_t status;
        } __attribute__((packed)) reply{
            {vhost::BACKEND_VRING_CALL, vhost::FLAG_VERSION | vhost::FLAG_REPLY, 8},
            (m_cfg & CFG_CALL_REFUSED) ? 1ULL : 0ULL};
        (void)send(m_channel, &reply, sizeof(reply), MSG_NOSIGNAL | MSG_DONTWAIT);
    }

  private:
    /** The regions of a table being sent; the memfd grows to hold them. Returns nregions. */
    uint32_t TakeTable(const uint8_t* payload, size_t len)
    {
        vhost::MemTable t{};
        std::memcpy(&t, payload, std::min(len, sizeof(t)));
        m_regions.clear();
        for (uint32_t i = 0; i < std::min<uint32_t>(t.nregions, vhost::MAX_MEM_REGIONS); ++i)
        {
            const vhost::MemRegion& r = t.regions[i];
            if (8 + 32 * (i + 1) > len || r.mmapOffset > MAX_MEMORY || r.size > MAX_MEMORY ||
                r.mmapOffset + r.size > MAX_MEMORY)
            {
                continue;
            }
            if (r.mmapOffset + r.size > m_memSize)
            {
                m_memSize = r.mmapOffset + r.size;
                (void)ftruncate(m_memfd, static_cast<off_t>(m_memSize));
            }
            m_regions.push_back(r);
        }
        return t.nregions;
    }

    uint8_t m_cfg;
    int m_fd = -1;
    int m_memfd = -1;
    uint64_t m_memSize = 0;
    int m_channel = -1; // our end of the backend channel
    std::vector<vhost::MemRegion> m_regions;
};

void
Scheduler::WaitForReply(int fd, uint64_t clientId)
{
    m_frontend.AnswerCall(fd);
}

/** Serve the device until it has read what was sent (or stopped reading). */
void
Serve(EventLoop& loop, const Frontend& frontend, const Ptr<VhostUserBackend>& device)
{
    // Bounded: a device that has let the guest go reads nothing more.
    for (int i = 0; i < 64 && (!device->IsConnected() || frontend.Unread() > 0); ++i)
    {
        loop.ServeUntil([] { return false; }, 0);
    }
}

Ptr<VhostUserBackend>
MakeDevice(uint8_t cfg)
{
    if (cfg & CFG_CONSOLE)
    {
        return CreateObject<VirtioConsoleDevice>();
    }
    Ptr<VirtioNetDevice> net = CreateObject<VirtioNetDevice>();
    net->SetAttribute("Offloads", BooleanValue(cfg & CFG_OFFLOADS));
    if (cfg & CFG_RX_MERGE)
    {
        net->SetAttribute("RxMerge", BooleanValue(true));
        net->SetAttribute("RxCoalesceTime", TimeValue(MicroSeconds(50)));
    }
    return net;
}

void
Deliver(const Ptr<VhostUserBackend>& device, const uint8_t* payload, size_t len)
{
    if (auto net = DynamicCast<VirtioNetDevice>(device))
    {
        net->DeliverToGuest(Create<Packet>(payload, static_cast<uint32_t>(len)));
    }
    else if (auto con = DynamicCast<VirtioConsoleDevice>(device))
    {
        con->Send(payload, static_cast<uint32_t>(len));
    }
}

void
RunSession(uint8_t cfg, const uint8_t* p, const uint8_t* end)
{
    Frontend frontend(cfg);
    Ptr<Scheduler> scheduler = Create<Scheduler>(frontend);
    Ptr<VhostUserBackend> device = MakeDevice(cfg);
    device->SetAttribute("SocketPath", StringValue(fuzz::ScratchDir() + "/vhost.sock"));
    device->SetAttribute("ClientId", UintegerValue(CLIENT_ID));
    device->SetAttribute("EventIdx", BooleanValue(cfg & CFG_EVENT_IDX));
    device->SetScheduler(scheduler);
    try
    {
        device->Listen();
        frontend.Connect(fuzz::ScratchDir() + "/vhost.sock");
        Serve(scheduler->GetEventLoop(), frontend, device);
        while (p + sizeof(vhost::Header) <= end)
        {
            vhost::Header h;
            std::memcpy(&h, p, sizeof(h));
            p += sizeof(h);
            size_t len = std::min<size_t>(h.size, static_cast<size_t>(end - p));
            const uint8_t* payload = p;
            p += len;
            if (h.request == recording::REQUEST_MEMORY)
            {
                frontend.Poke(payload, len);
                continue;
            }
            if (h.request == recording::REQUEST_RING)
            {
                continue;
            }
            if (h.request == DELIVER)
            {
                Deliver(device, payload, len);
            }
            else
            {
                frontend.Send(h, payload, len, len < h.size);
                Serve(scheduler->GetEventLoop(), frontend, device);
            }
            frontend.Drain();
            Simulator::Run();
        }
    }
    catch (const UmlError&)
    {
        // The run would stop here with the guest named.
    }
    device->Dispose();
}

} // namespace

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size < 1)
    {
        return 0;
    }
    const int fdsBefore = fuzz::OpenFds();
    {
        // The events run in the calendar's event list, as in a run (no client connects).
        Ptr<UmlCalendar> cal = CreateObject<UmlCalendar>();
        cal->SetAttribute("SocketPath", StringValue(fuzz::ScratchDir() + "/calendar.sock"));
        Simulator::SetImplementation(cal);
    }
    RunSession(data[0], data + 1, data + size);
    Simulator::Destroy();
    fuzz::CheckNoFdLeak(fdsBefore, "a vhost-user session");
    return 0;
}
