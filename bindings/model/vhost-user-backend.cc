#include "vhost-user-backend.h"

#include "session-recorder.h"
#include "uml-error.h"
#include "unix-socket.h"

#include "ns3/boolean.h"
#include "ns3/log.h"
#include "ns3/string.h"
#include "ns3/uinteger.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("VhostUserBackend");
NS_OBJECT_ENSURE_REGISTERED(VhostUserBackend);

namespace
{
constexpr uint64_t REQUIRED_PROTOCOL = vhost::PROTOCOL_F_REPLY_ACK |
                                       vhost::PROTOCOL_F_BACKEND_REQ | vhost::PROTOCOL_F_CONFIG |
                                       vhost::PROTOCOL_F_INBAND_NOTIFICATIONS;
constexpr double IO_TIMEOUT_S = 10; // a message that starts must finish

void
SetIoTimeout(int fd, double seconds)
{
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(seconds);
    tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
    {
        tv.tv_usec = 1000; // 0 would mean "forever"
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}
} // namespace

TypeId
VhostUserBackend::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::VhostUserBackend")
            .SetParent<Object>()
            .SetGroupName("Uml")
            .AddAttribute("SocketPath",
                          "Unix socket the guest's virtio_uml device connects to.",
                          StringValue(""),
                          MakeStringAccessor(&VhostUserBackend::m_socketPath),
                          MakeStringChecker())
            .AddAttribute("ClientId",
                          "The guest's time-travel client id (START id).",
                          UintegerValue(0),
                          MakeUintegerAccessor(&VhostUserBackend::m_clientId),
                          MakeUintegerChecker<uint64_t>())
            .AddAttribute("EventIdx",
                          "Offer VIRTIO_F_EVENT_IDX: the driver's used_event and the device's "
                          "avail_event decide when to call and when to kick, so a guest is "
                          "interrupted only when it asks and kicks only an idle queue.",
                          BooleanValue(true),
                          MakeBooleanAccessor(&VhostUserBackend::m_offerEventIdx),
                          MakeBooleanChecker());
    return tid;
}

VhostUserBackend::VhostUserBackend()
    : m_clientId(0),
      m_listenFd(-1),
      m_connFd(-1),
      m_backendFd(-1),
      m_features(0),
      m_protocolFeatures(0),
      m_offerEventIdx(true),
      m_negotiated(0),
      m_kicks(0),
      m_calls(0),
      m_context(Simulator::NO_CONTEXT)
{
}

VhostUserBackend::~VhostUserBackend()
{
    Close();
}

void
VhostUserBackend::DoDispose()
{
    Close();
    m_scheduler = nullptr;
    Object::DoDispose();
}

void
VhostUserBackend::GuestError(const std::string& what) const
{
    throw UmlError("device",
                   true,
                   m_clientId,
                   "client " + FormatClientId(m_clientId) + ": virtio device " + m_socketPath +
                       ": " + what);
}

void
VhostUserBackend::SetScheduler(Ptr<UmlGuestScheduler> scheduler)
{
    NS_LOG_FUNCTION(this);
    NS_ABORT_MSG_IF(m_listenFd >= 0, "set the scheduler before Listen");
    m_scheduler = scheduler;
}

Ptr<UmlGuestScheduler>
VhostUserBackend::GetScheduler() const
{
    return m_scheduler;
}

void
VhostUserBackend::Listen()
{
    if (m_listenFd >= 0)
    {
        return;
    }
    NS_LOG_FUNCTION(this << m_socketPath << m_clientId);
    if (!m_scheduler)
    {
        throw UmlError("setup",
                       false,
                       0,
                       "vhost-user device " + m_socketPath +
                           ": no scheduler (SetScheduler, or install it with UmlBridgeHelper)");
    }
    if (m_queues.empty())
    {
        m_queues.resize(GetNumQueues());
    }
    std::string error;
    int fd = ListenUnixSocket(m_socketPath, 4, error);
    if (fd < 0)
    {
        throw UmlError("setup", false, 0, "vhost-user device: " + error);
    }
    m_listenFd = fd;
    m_recorder = SessionRecorder::Open("vhost");
    m_scheduler->GetEventLoop().Watch(
        fd, [this](uint32_t) { OnListenReadable(); }, false, m_clientId);
    NS_LOG_INFO("guest " << FormatClientId(m_clientId) << ": vhost-user device at "
                         << m_socketPath);
}

void
VhostUserBackend::Close()
{
    Disconnect();
    if (m_listenFd >= 0)
    {
        if (m_scheduler)
        {
            m_scheduler->GetEventLoop().Unwatch(m_listenFd);
        }
        close(m_listenFd);
        m_listenFd = -1;
        unlink(m_socketPath.c_str());
    }
}

bool
VhostUserBackend::IsConnected() const
{
    return m_connFd >= 0;
}

uint64_t
VhostUserBackend::GetClientId() const
{
    return m_clientId;
}

uint64_t
VhostUserBackend::GetKickCount() const
{
    return m_kicks;
}

uint64_t
VhostUserBackend::GetCallCount() const
{
    return m_calls;
}

bool
VhostUserBackend::UsesEventIdx() const
{
    return m_negotiated & vhost::VIRTIO_F_EVENT_IDX;
}

uint64_t
VhostUserBackend::GetNegotiatedFeatures() const
{
    return m_negotiated;
}

void
VhostUserBackend::SetContext(uint32_t context)
{
    NS_LOG_FUNCTION(this << context);
    m_context = context;
}

uint32_t
VhostUserBackend::GetContext() const
{
    return m_context;
}

bool
VhostUserBackend::IsPending(const Ptr<EventImpl>& event)
{
    return event && !event->IsCancelled();
}

void
VhostUserBackend::Cancel(Ptr<EventImpl>& event)
{
    if (event)
    {
        event->Cancel();
        event = nullptr;
    }
}

uint64_t
VhostUserBackend::OfferedFeatures() const
{
    return GetDeviceFeatures() | vhost::F_PROTOCOL_FEATURES |
           (m_offerEventIdx ? vhost::VIRTIO_F_EVENT_IDX : 0);
}

void
VhostUserBackend::OnDisconnect()
{
}

Virtqueue&
VhostUserBackend::Queue(uint32_t i)
{
    return m_queues.at(i);
}

const GuestMemory&
VhostUserBackend::Memory() const
{
    return m_memory;
}

uint64_t
VhostUserBackend::GetAcceptedFeatures() const
{
    return m_features;
}

void
VhostUserBackend::OnListenReadable()
{
    int fd = accept4(m_listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
    {
        return;
    }
    if (m_connFd >= 0)
    {
        close(fd); // one front-end per device
        return;
    }
    SetIoTimeout(fd, IoTimeout());
    m_connFd = fd;
    m_scheduler->GetEventLoop().Watch(
        fd, [this](uint32_t) { OnConnReadable(); }, false, m_clientId);
    NS_LOG_INFO("guest " << FormatClientId(m_clientId) << " connected to " << m_socketPath);
}

void
VhostUserBackend::Disconnect()
{
    if (m_connFd >= 0)
    {
        if (m_scheduler)
        {
            m_scheduler->GetEventLoop().Unwatch(m_connFd);
        }
        close(m_connFd);
        m_connFd = -1;
        OnDisconnect();
    }
    if (m_backendFd >= 0)
    {
        close(m_backendFd);
        m_backendFd = -1;
    }
    m_memory.Unmap();
    for (auto& q : m_queues)
    {
        q.Reset();
    }
    m_features = 0;
    m_protocolFeatures = 0;
}

void
VhostUserBackend::ReadExact(int fd, void* buf, size_t len, const char* what)
{
    auto* p = static_cast<uint8_t*>(buf);
    while (len)
    {
        ssize_t n = recv(fd, p, len, MSG_WAITALL);
        if (n <= 0)
        {
            if (n < 0 && errno == EINTR)
            {
                continue;
            }
            GuestError(std::string("truncated ") + what);
        }
        p += n;
        len -= static_cast<size_t>(n);
    }
}

void
VhostUserBackend::OnConnReadable()
{
    vhost::Header h{};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{&h, sizeof(h)};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    ssize_t n = recvmsg(m_connFd, &mh, MSG_CMSG_CLOEXEC);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
    {
        NS_LOG_INFO("guest " << FormatClientId(m_clientId) << " closed " << m_socketPath);
        Disconnect();
        return;
    }
    if (n < 0)
    {
        return;
    }
    std::vector<int> fds;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
    {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
        {
            size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; ++i)
            {
                int fd;
                std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                fds.push_back(fd);
            }
        }
    }
    auto closeFds = [&fds] {
        for (int fd : fds)
        {
            close(fd);
        }
        fds.clear();
    };
    try
    {
        if (mh.msg_flags & MSG_CTRUNC)
        {
            GuestError("too many descriptors with one message");
        }
        if (static_cast<size_t>(n) < sizeof(h))
        {
            ReadExact(m_connFd, reinterpret_cast<uint8_t*>(&h) + n, sizeof(h) - n, "message header");
        }
        if ((h.flags & vhost::FLAG_VERSION_MASK) != vhost::FLAG_VERSION)
        {
            GuestError("message with protocol version " + std::to_string(h.flags & 3));
        }
        if (h.size > vhost::MAX_PAYLOAD)
        {
            GuestError("message " + std::to_string(h.request) + " with a payload of " +
                       std::to_string(h.size) + " bytes");
        }
        uint8_t payload[vhost::MAX_PAYLOAD];
        ReadExact(m_connFd, payload, h.size, "message payload");
        Dispatch(h, payload, fds);
    }
    catch (...)
    {
        closeFds();
        throw;
    }
    closeFds();
}

void
VhostUserBackend::Reply(const vhost::Header& req, const void* payload, uint32_t size)
{
    uint8_t buf[sizeof(vhost::Header) + vhost::MAX_PAYLOAD];
    vhost::Header h{req.request, vhost::FLAG_VERSION | vhost::FLAG_REPLY, size};
    std::memcpy(buf, &h, sizeof(h));
    std::memcpy(buf + sizeof(h), payload, size);
    ssize_t n = send(m_connFd, buf, sizeof(h) + size, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(h) + size))
    {
        return;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
    {
        NS_LOG_INFO("guest " << FormatClientId(m_clientId) << " gone: reply not delivered");
        return; // the read side sees it leave
    }
    // Blocking here would stop the calendar for good: no other timeout covers it.
    GuestError("does not read its vhost-user socket (a reply could not be sent within " +
               std::to_string(IoTimeout()) + " s)");
}

double
VhostUserBackend::IoTimeout() const
{
    // The scheduler's limit for a guest's replies, but a message that starts must finish soon.
    return std::min(m_scheduler->GetReplyTimeout(), IO_TIMEOUT_S);
}

void
VhostUserBackend::ReplyAck(const vhost::Header& req, uint64_t status)
{
    if (req.flags & vhost::FLAG_NEED_REPLY)
    {
        Reply(req, &status, sizeof(status));
    }
}

void
VhostUserBackend::Dispatch(const vhost::Header& h, const uint8_t* p, std::vector<int>& fds)
{
    auto need = [&](size_t size) {
        if (h.size < size)
        {
            GuestError("message " + std::to_string(h.request) + " is " + std::to_string(h.size) +
                       " bytes, needs " + std::to_string(size));
        }
    };
    auto u64 = [&] {
        need(8);
        uint64_t v;
        std::memcpy(&v, p, 8);
        return v;
    };
    auto state = [&] {
        need(sizeof(vhost::VringState));
        vhost::VringState s;
        std::memcpy(&s, p, sizeof(s));
        if (s.index >= m_queues.size())
        {
            GuestError("queue " + std::to_string(s.index) + " does not exist");
        }
        return s;
    };
    if (m_recorder)
    {
        m_recorder->Message(h, p, m_queues, m_memory);
    }
    if (h.request != vhost::VRING_KICK) // set-up only: kicks are the per-packet path
    {
        NS_LOG_LOGIC("guest " << FormatClientId(m_clientId) << ": request " << h.request
                              << ", " << h.size << " bytes, " << fds.size() << " fds");
    }
    try
    {
        switch (h.request)
        {
        case vhost::GET_FEATURES: {
            uint64_t f = OfferedFeatures();
            Reply(h, &f, sizeof(f));
            return;
        }
        case vhost::SET_FEATURES: {
            uint64_t f = u64();
            if (f & ~OfferedFeatures())
            {
                GuestError("accepted features that were not offered");
            }
            m_features = f;
            m_negotiated = f;
            for (auto& q : m_queues)
            {
                q.SetEventIdx(UsesEventIdx());
            }
            ReplyAck(h, 0);
            return;
        }
        case vhost::GET_PROTOCOL_FEATURES: {
            uint64_t f = REQUIRED_PROTOCOL;
            Reply(h, &f, sizeof(f));
            return;
        }
        case vhost::SET_PROTOCOL_FEATURES: {
            uint64_t f = u64();
            // Calls and kicks must be synchronous (acknowledged, in-band) to be ordered in
            // simulated time: nothing else can work under the calendar.
            if ((f & REQUIRED_PROTOCOL) != REQUIRED_PROTOCOL)
            {
                GuestError("front-end refused REPLY_ACK, BACKEND_REQ, CONFIG or in-band "
                           "notifications, without which time cannot be kept");
            }
            m_protocolFeatures = f;
            ReplyAck(h, 0);
            return;
        }
        case vhost::SET_OWNER:
        case vhost::RESET_OWNER:
        case vhost::RESET_DEVICE:
            ReplyAck(h, 0);
            return;
        case vhost::SET_BACKEND_REQ_FD:
            if (fds.size() != 1)
            {
                GuestError("SET_BACKEND_REQ_FD without exactly one descriptor");
            }
            if (m_backendFd >= 0)
            {
                close(m_backendFd);
            }
            m_backendFd = fds[0];
            fds.clear();
            SetIoTimeout(m_backendFd, IoTimeout());
            ReplyAck(h, 0);
            return;
        case vhost::GET_CONFIG: {
            need(sizeof(vhost::ConfigHeader));
            vhost::ConfigHeader c;
            std::memcpy(&c, p, sizeof(c));
            if (c.size > 256 || h.size != sizeof(c) + c.size)
            {
                GuestError("GET_CONFIG of " + std::to_string(c.size) + " bytes in a message of " +
                           std::to_string(h.size));
            }
            uint8_t out[sizeof(vhost::ConfigHeader) + 256];
            std::memcpy(out, &c, sizeof(c));
            if (!ReadConfig(c.offset, out + sizeof(c), c.size))
            {
                GuestError("GET_CONFIG past the config space (offset " + std::to_string(c.offset) +
                           ", size " + std::to_string(c.size) + ")");
            }
            Reply(h, out, sizeof(c) + c.size);
            return;
        }
        case vhost::SET_MEM_TABLE: {
            need(8);
            vhost::MemTable t{};
            std::memcpy(&t, p, std::min<size_t>(h.size, sizeof(t)));
            if (t.nregions > vhost::MAX_MEM_REGIONS || h.size < 8 + 32 * t.nregions)
            {
                GuestError("SET_MEM_TABLE with " + std::to_string(t.nregions) + " regions");
            }
            // Rings placed before point into the mapping that goes away: translate them
            // again, or a later kick reads whatever is mapped there by then.
            for (auto& q : m_queues)
            {
                q.Detach();
            }
            std::string err = m_memory.Map(t, fds);
            fds.clear(); // taken (closed) by Map
            if (!err.empty())
            {
                GuestError(err);
            }
            for (auto& q : m_queues)
            {
                q.Remap(m_memory);
            }
            ReplyAck(h, 0);
            return;
        }
        case vhost::SET_VRING_NUM: {
            auto s = state();
            Queue(s.index).SetNum(m_memory, s.num);
            ReplyAck(h, 0);
            return;
        }
        case vhost::SET_VRING_BASE: {
            auto s = state();
            if (s.num > 0xffff)
            {
                GuestError("ring base " + std::to_string(s.num));
            }
            Queue(s.index).SetBase(static_cast<uint16_t>(s.num));
            ReplyAck(h, 0);
            return;
        }
        case vhost::GET_VRING_BASE: {
            auto s = state();
            Queue(s.index).SetEnabled(false);
            vhost::VringState r{s.index, Queue(s.index).GetBase()};
            Reply(h, &r, sizeof(r));
            return;
        }
        case vhost::SET_VRING_ADDR: {
            need(sizeof(vhost::VringAddr));
            vhost::VringAddr a;
            std::memcpy(&a, p, sizeof(a));
            if (a.index >= m_queues.size())
            {
                GuestError("queue " + std::to_string(a.index) + " does not exist");
            }
            Queue(a.index).SetAddr(m_memory, a.desc, a.avail, a.used);
            if (!(m_features & vhost::F_PROTOCOL_FEATURES))
            {
                // Without VHOST_USER_F_PROTOCOL_FEATURES no SET_VRING_ENABLE comes: a ring
                // is enabled once it is started (UML re-sends SET_FEATURES without bit 30
                // when driver validation changed the features).
                Queue(a.index).SetEnabled(true);
            }
            ReplyAck(h, 0);
            return;
        }
        case vhost::SET_VRING_ENABLE: {
            auto s = state();
            Queue(s.index).SetEnabled(s.num != 0);
            ReplyAck(h, 0);
            return;
        }
        case vhost::SET_VRING_KICK:
        case vhost::SET_VRING_CALL:
        case vhost::SET_VRING_ERR: {
            uint64_t v = u64();
            if (!(v & vhost::VRING_NOFD_MASK) || !fds.empty())
            {
                GuestError("notification descriptors are not supported: use in-band "
                           "notifications");
            }
            ReplyAck(h, 0);
            return;
        }
        case vhost::VRING_KICK: {
            auto s = state();
            m_kicks++;
            OnKick(s.index);
            ReplyAck(h, 0);
            return;
        }
        default:
            GuestError("unsupported request " + std::to_string(h.request));
        }
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
}

void
VhostUserBackend::CallGuest(uint32_t queue)
{
    if (m_backendFd < 0)
    {
        return; // not set up (or gone): nobody to interrupt
    }
    struct
    {
        vhost::Header h;
        vhost::VringState s;
    } msg{{vhost::BACKEND_VRING_CALL, vhost::FLAG_VERSION | vhost::FLAG_NEED_REPLY, 8},
          {queue, 0}};
    m_calls++;
    ssize_t sent = send(m_backendFd, &msg, sizeof(msg), MSG_NOSIGNAL);
    if (sent < 0 && (errno == EPIPE || errno == ECONNRESET))
    {
        NS_LOG_INFO("guest " << FormatClientId(m_clientId) << " gone: call not delivered");
        m_scheduler->ReportDeparture(m_clientId); // a crash is an error, a power-off is not
        return;
    }
    if (sent != static_cast<ssize_t>(sizeof(msg)))
    {
        GuestError("does not read its backend channel (VRING_CALL not sent)");
    }
    m_scheduler->WaitForReply(m_backendFd, m_clientId);
    // Header and status back to back: 20 bytes, no padding between them.
    uint8_t buf[sizeof(vhost::Header) + sizeof(uint64_t)];
    ssize_t n = recv(m_backendFd, buf, sizeof(buf), MSG_WAITALL);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
    {
        // Gone meanwhile: powered off, or died (then its owner's verdict stops the run).
        m_scheduler->ReportDeparture(m_clientId);
        return;
    }
    struct
    {
        vhost::Header h;
        uint64_t status;
    } reply{};
    std::memcpy(&reply.h, buf, sizeof(reply.h));
    std::memcpy(&reply.status, buf + sizeof(reply.h), sizeof(reply.status));
    if (n != static_cast<ssize_t>(sizeof(buf)) || reply.h.request != vhost::BACKEND_VRING_CALL ||
        reply.h.flags != (vhost::FLAG_VERSION | vhost::FLAG_REPLY) || reply.h.size != 8)
    {
        GuestError("bad reply to VRING_CALL (" + std::to_string(n) + " bytes, request " +
                   std::to_string(reply.h.request) + ", flags " + std::to_string(reply.h.flags) +
                   ", size " + std::to_string(reply.h.size) + ")");
    }
    if (reply.status != 0)
    {
        GuestError("refused VRING_CALL for queue " + std::to_string(queue));
    }
}

} // namespace ns3
