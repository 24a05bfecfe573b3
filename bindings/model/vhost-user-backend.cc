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
constexpr size_t MAX_FDS = 8; // descriptors with one message, as the spec allows
constexpr char PROTOCOL[] = "vhost-user";
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
    const std::string damage = m_memory.Damage();
    throw UmlError("device",
                   true,
                   m_clientId,
                   "client " + FormatClientId(m_clientId) + ": virtio device " + m_socketPath +
                       ": " + (damage.empty() ? what : damage));
}

void
VhostUserBackend::CheckMemory() const
{
    if (!m_memory.IsIntact())
    {
        GuestError(m_memory.Damage());
    }
}

void
VhostUserBackend::CopyFromGuest(const Virtqueue::Chain& chain, std::vector<uint8_t>& out) const
{
    for (const auto& s : chain.segments)
    {
        if (!s.writable)
        {
            out.insert(out.end(), s.ptr, s.ptr + s.len);
        }
    }
    CheckMemory(); // a frame partly read from a shrunken file goes nowhere
}

void
VhostUserBackend::PushWritten(uint32_t queue, uint16_t head, uint32_t written)
{
    CheckMemory();
    Queue(queue).Push(head, written);
}

void
VhostUserBackend::EndBatch(uint32_t queue, bool used)
{
    const bool call = used && Queue(queue).NeedsInterrupt();
    CheckMemory();
    if (call)
    {
        CallGuest(queue);
    }
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
    m_connFd = fd;
    EventLoop& loop = m_scheduler->GetEventLoop();
    loop.Watch(fd, [this](uint32_t) { OnConnReadable(); }, false, m_clientId);
    m_rx = std::make_unique<MessageReader>(PROTOCOL,
                                           MAX_FDS,
                                           m_scheduler->GetMessageTimeout(),
                                           [this](const std::string& what) { GuestError(what); });
    m_rx->Guard(&loop, fd);
    m_rx->Start(sizeof(vhost::Header));
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
        m_rx.reset(); // with the descriptors of a message not read whole
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
VhostUserBackend::OnConnReadable()
{
    // Whatever has arrived, never more than one message: a message that comes in pieces
    // waits here while the loop serves everybody else, within one deadline (its reader's).
    MessageReader& rx = *m_rx;
    for (;;)
    {
        MessageReader::Status status = rx.Read(m_connFd);
        if (rx.HasTooManyFds())
        {
            GuestError("too many descriptors with one message");
        }
        switch (status)
        {
        case MessageReader::Status::PARTIAL:
            return;
        case MessageReader::Status::CLOSED:
            NS_LOG_INFO("guest " << FormatClientId(m_clientId) << " closed " << m_socketPath);
            Disconnect();
            return;
        case MessageReader::Status::CLOSED_MID_MESSAGE:
            GuestError(rx.GetNeed() == sizeof(vhost::Header) ? "truncated message header"
                                                             : "truncated message payload");
        case MessageReader::Status::WHOLE:
            break;
        }
        vhost::Header h{};
        std::memcpy(&h, rx.GetData(), sizeof(h));
        if (rx.GetNeed() == sizeof(h))
        {
            if ((h.flags & vhost::FLAG_VERSION_MASK) != vhost::FLAG_VERSION)
            {
                GuestError("message with protocol version " + std::to_string(h.flags & 3));
            }
            if (h.size > vhost::MAX_PAYLOAD)
            {
                GuestError("message " + std::to_string(h.request) + " with a payload of " +
                           std::to_string(h.size) + " bytes");
            }
            if (h.size > 0)
            {
                rx.Grow(sizeof(h) + h.size);
                continue;
            }
        }
        try
        {
            Dispatch(h, rx.GetData() + sizeof(h), rx.Fds());
        }
        catch (...)
        {
            rx.Start(sizeof(vhost::Header)); // closes the descriptors it did not take
            throw;
        }
        rx.Start(sizeof(vhost::Header)); // the next message
        return;
    }
}

void
VhostUserBackend::Reply(const vhost::Header& req, const void* payload, uint32_t size)
{
    uint8_t buf[sizeof(vhost::Header) + vhost::MAX_PAYLOAD];
    vhost::Header h{req.request, vhost::FLAG_VERSION | vhost::FLAG_REPLY, size};
    std::memcpy(buf, &h, sizeof(h));
    std::memcpy(buf + sizeof(h), payload, size);
    ssize_t n = send(m_connFd, buf, sizeof(h) + size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(sizeof(h) + size))
    {
        return;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
    {
        NS_LOG_INFO("guest " << FormatClientId(m_clientId) << " gone: reply not delivered");
        return; // the read side sees it leave
    }
    // A guest reads each reply before it sends its next request, so a reply that does not
    // fit is one that will never be read: waiting for room would only hold everybody up.
    GuestError("does not read its vhost-user socket (a reply did not fit in it)");
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
            CheckMemory(); // a device may use buffers during the kick (virtio-console)
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
    ssize_t sent = send(m_backendFd, &msg, sizeof(msg), MSG_NOSIGNAL | MSG_DONTWAIT);
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
    // Header and status back to back: 20 bytes, no padding between them; the rest of a
    // reply that came in part is waited for in the loop, within one deadline.
    MessageReader rx(PROTOCOL,
                     0,
                     m_scheduler->GetMessageTimeout(),
                     [this](const std::string& what) { GuestError(what); });
    rx.Start(sizeof(vhost::Header) + sizeof(uint64_t));
    MessageReader::Status status = rx.ReadWhole(m_scheduler->GetEventLoop(), m_backendFd);
    if (status == MessageReader::Status::CLOSED)
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
    std::memcpy(&reply.h, rx.GetData(), sizeof(reply.h));
    std::memcpy(&reply.status, rx.GetData() + sizeof(reply.h), sizeof(reply.status));
    if (status != MessageReader::Status::WHOLE || reply.h.request != vhost::BACKEND_VRING_CALL ||
        reply.h.flags != (vhost::FLAG_VERSION | vhost::FLAG_REPLY) || reply.h.size != 8)
    {
        GuestError("bad reply to VRING_CALL (" + std::to_string(rx.GetHave()) +
                   " bytes, request " + std::to_string(reply.h.request) + ", flags " +
                   std::to_string(reply.h.flags) + ", size " + std::to_string(reply.h.size) +
                   ")");
    }
    if (reply.status != 0)
    {
        GuestError("refused VRING_CALL for queue " + std::to_string(queue));
    }
}

} // namespace ns3
