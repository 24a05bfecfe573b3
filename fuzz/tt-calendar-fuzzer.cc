// libFuzzer target: a real ns3::UmlCalendar (ns-3's SimulatorImpl) serving one time-travel
// client whose messages are the input (docs/DESIGN.md section 10).
//
// Input: a configuration byte, then 16-byte messages as the client writes them (tt::Message;
// a recorded tt-*.bin with the byte in front). The client is this process, driven by the
// calendar's own waits: before each epoll_wait it reads what the calendar sent and writes its
// next message, so an input runs the same way every time. An ACK with seq 0 (a number the
// calendar never uses) answers the oldest message that wants one, so a recorded session
// replays whatever numbers the calendar gives. Ops from PSEUDO_BASE on are not sent: the
// client or ns-3 does them, then the client goes on to its next message:
//   SHM_REQUEST  its shared-memory slot asks to run at `time` (what UML writes there);
//   SHM_POKE     the page's 8 bytes at offset `seq` (rounded down to 8) become `time`;
//   SCHEDULE     an ns-3 event `time` ns from now (what a device or a model adds).
// Configuration bits: CFG_SHM_OFFERED (SharedMemory), CFG_SHM_TAKEN (the client sets
// CAP_TIME_SHARE in its slot), CFG_MAX_FREE_RUN (MaxFreeRun 1 ms).
//
// When its input ends the client closes its sending side, so the calendar never needs to wait
// for wall time: a "hang" or "timeout" error is a finding, as are a crash, undefined
// behaviour, an exception that is not a UmlError and a descriptor left open.
#include "fuzz-scratch.h"
#include "tt-protocol.h"
#include "uml-calendar.h"
#include "uml-error.h"

#include "ns3/boolean.h"
#include "ns3/double.h"
#include "ns3/nstime.h"
#include "ns3/simulator.h"
#include "ns3/string.h"

#include <cstring>
#include <deque>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

using namespace ns3;

namespace
{

constexpr uint32_t PSEUDO_BASE = 0x46550000; // "FU"
constexpr uint32_t SHM_REQUEST = PSEUDO_BASE + 0;
constexpr uint32_t SHM_POKE = PSEUDO_BASE + 1;
constexpr uint32_t SCHEDULE = PSEUDO_BASE + 2;
constexpr uint32_t PSEUDO_END = PSEUDO_BASE + 3;

constexpr uint8_t CFG_SHM_OFFERED = 1;
constexpr uint8_t CFG_SHM_TAKEN = 2;
constexpr uint8_t CFG_MAX_FREE_RUN = 4;

// Far enough for any run, short of ns-3's Time overflowing when added to now.
constexpr uint64_t MAX_DELAY_NS = 1ULL << 60;

void
Noop()
{
}

/** The client: one connected socket, the rest of the input, and what the calendar sent. */
class Client
{
  public:
    Client(int fd, const uint8_t* data, size_t size, bool takeShm)
        : m_fd(fd),
          m_next(data),
          m_end(data + size),
          m_takeShm(takeShm)
    {
    }

    ~Client()
    {
        if (m_page)
        {
            munmap(m_page, m_pageLen);
        }
        if (m_fd >= 0)
        {
            close(m_fd);
        }
    }

    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;

    /** Whether the client will send a byte: one that sends none is a readiness probe, and
     * admission rightly goes on waiting for a client (docs/DESIGN.md rule 7). */
    bool SendsAnything() const
    {
        for (const uint8_t* p = m_next; p < m_end; p += sizeof(tt::Message))
        {
            uint32_t op;
            if (static_cast<size_t>(m_end - p) < sizeof(tt::Message))
            {
                return true;
            }
            std::memcpy(&op, p, sizeof(op));
            if (op < PSEUDO_BASE || op >= PSEUDO_END)
            {
                return true;
            }
        }
        return false;
    }

    /** Read what the calendar sent; write the next message (or close, at the end). */
    void Step()
    {
        Receive();
        while (m_next < m_end)
        {
            size_t left = static_cast<size_t>(m_end - m_next);
            if (left < sizeof(tt::Message))
            {
                Send(m_next, left); // half a message, then the end
                m_next = m_end;
                break;
            }
            tt::Message m;
            std::memcpy(&m, m_next, sizeof(m));
            m_next += sizeof(m); // first: a pseudo-op may bring the calendar back here
            if (m.op >= PSEUDO_BASE && m.op < PSEUDO_END)
            {
                Pseudo(m);
                continue;
            }
            if (m.op == tt::OP_ACK)
            {
                if (m.seq == 0 && !m_owed.empty())
                {
                    m.seq = m_owed.front();
                }
                if (!m_owed.empty() && m.seq == m_owed.front())
                {
                    m_owed.pop_front();
                }
            }
            Send(&m, sizeof(m));
            return;
        }
        if (!m_shut)
        {
            shutdown(m_fd, SHUT_WR);
            m_shut = true;
        }
    }

  private:
    void Send(const void* p, size_t len)
    {
        // The calendar may have closed the socket already: then nobody reads this.
        (void)send(m_fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    }

    void Receive()
    {
        for (;;)
        {
            alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * tt::MAX_FDS)];
            iovec iov{m_rx + m_rxLen, sizeof(m_rx) - m_rxLen};
            msghdr mh{};
            mh.msg_iov = &iov;
            mh.msg_iovlen = 1;
            mh.msg_control = control;
            mh.msg_controllen = sizeof(control);
            ssize_t n = recvmsg(m_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
            if (n <= 0)
            {
                return;
            }
            for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
            {
                size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < count; ++i)
                {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                    if (i == 0 && m_startFd < 0 && !m_started)
                    {
                        m_startFd = fd; // the scheduling page
                    }
                    else
                    {
                        close(fd);
                    }
                }
            }
            m_rxLen += static_cast<size_t>(n);
            if (m_rxLen < sizeof(m_rx))
            {
                continue;
            }
            m_rxLen = 0;
            tt::Message msg;
            std::memcpy(&msg, m_rx, sizeof(msg));
            if (!m_started)
            {
                m_started = true;
                TakePage(static_cast<uint16_t>(msg.time & tt::START_ACK_ID_MASK));
                continue;
            }
            // What the calendar will want an ACK for, in order.
            if (msg.op == tt::OP_FREE_UNTIL || msg.op == tt::OP_BROADCAST ||
                (msg.op == tt::OP_RUN && !m_shm))
            {
                m_owed.push_back(msg.seq);
            }
        }
    }

    /** The START ACK named our slot (0: none): map the page as UML would. */
    void TakePage(uint16_t slot)
    {
        int fd = m_startFd;
        m_startFd = -1;
        if (fd < 0)
        {
            return;
        }
        struct stat st{};
        size_t need = tt::SHM_HEADER_SIZE + tt::SHM_CLIENT_SIZE * (size_t{slot} + 1);
        if (slot != 0 && fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) >= need)
        {
            void* p = mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED)
            {
                m_page = static_cast<uint8_t*>(p);
                m_pageLen = static_cast<size_t>(st.st_size);
                m_slot = slot;
                if (m_takeShm)
                {
                    SlotRecord()->capa = tt::CAP_TIME_SHARE;
                    m_shm = true;
                }
            }
        }
        close(fd);
    }

    tt::ShmClient* SlotRecord()
    {
        return reinterpret_cast<tt::ShmClient*>(m_page + tt::SHM_HEADER_SIZE +
                                                tt::SHM_CLIENT_SIZE * m_slot);
    }

    void Pseudo(const tt::Message& m)
    {
        switch (m.op)
        {
        case SHM_REQUEST:
            if (m_page)
            {
                tt::ShmClient* rec = SlotRecord();
                __atomic_store_n(&rec->req_time, m.time, __ATOMIC_RELEASE);
                __atomic_fetch_or(&rec->flags, tt::FLAG_REQ_RUN, __ATOMIC_RELEASE);
            }
            return;
        case SHM_POKE:
            if (m_page)
            {
                size_t offset = (m.seq % m_pageLen) & ~size_t{7};
                __atomic_store_n(reinterpret_cast<uint64_t*>(m_page + offset),
                                 m.time,
                                 __ATOMIC_RELEASE);
            }
            return;
        case SCHEDULE:
            Simulator::Schedule(NanoSeconds(static_cast<int64_t>(m.time % MAX_DELAY_NS)), &Noop);
            return;
        }
    }

    int m_fd;
    const uint8_t* m_next;
    const uint8_t* m_end;
    bool m_takeShm;
    bool m_shm = false;
    bool m_shut = false;
    bool m_started = false; // the START ACK came
    int m_startFd = -1;
    uint16_t m_slot = 0;
    uint8_t* m_page = nullptr;
    size_t m_pageLen = 0;
    std::deque<uint32_t> m_owed;
    uint8_t m_rx[sizeof(tt::Message)];
    size_t m_rxLen = 0;
};

Client* g_client = nullptr;

int
Connect(const std::string& path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0)
    {
        fuzz::Finding("cannot connect to the calendar at " + path);
    }
    return fd;
}

} // namespace

// The calendar waits only here (EventLoop::Serve): the client acts first, as a process would
// have meanwhile. Defined here, it takes the place of libc's for the core linked in.
extern "C" int
epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
{
    if (g_client)
    {
        g_client->Step();
    }
    return epoll_pwait(epfd, events, maxevents, timeout, nullptr);
}

extern "C" int
LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const uint8_t cfg = size ? data[0] : 0;
    if (size < 2 || !Client(-1, data + 1, size - 1, false).SendsAnything())
    {
        return 0;
    }
    const int fdsBefore = fuzz::OpenFds();
    const std::string path = fuzz::ScratchDir() + "/calendar.sock";
    {
        Ptr<UmlCalendar> cal = CreateObject<UmlCalendar>();
        cal->SetAttribute("SocketPath", StringValue(path));
        cal->SetAttribute("SharedMemory", BooleanValue(cfg & CFG_SHM_OFFERED));
        cal->SetAttribute("YieldTimeout", DoubleValue(2));
        cal->SetAttribute("ConnectTimeout", DoubleValue(2));
        if (cfg & CFG_MAX_FREE_RUN)
        {
            cal->SetAttribute("MaxFreeRun", TimeValue(MilliSeconds(1)));
        }
        Simulator::SetImplementation(cal);
        cal->ExpectClients(1);
        cal->Listen();
        Client client(Connect(path), data + 1, size - 1, cfg & CFG_SHM_TAKEN);
        g_client = &client;
        try
        {
            Simulator::Run();
        }
        catch (const UmlError& e)
        {
            if (e.GetKind() == "hang" || e.GetKind() == "timeout")
            {
                fuzz::Finding(std::string("the calendar waited for a client that had left: ") +
                              e.what());
            }
        }
        g_client = nullptr;
        cal = nullptr;
        Simulator::Destroy();
    }
    fuzz::CheckNoFdLeak(fdsBefore, "a time-travel session");
    return 0;
}
