#include "uml-calendar.h"

#include "unix-socket.h"

#include "ns3/boolean.h"
#include "ns3/double.h"
#include "ns3/event-impl.h"
#include "ns3/log.h"
#include "ns3/make-event.h"
#include "ns3/pointer.h"
#include "ns3/simulator.h"
#include "ns3/string.h"
#include "ns3/nstime.h"
#include "ns3/trace-source-accessor.h"
#include "ns3/uinteger.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlCalendar");
NS_OBJECT_ENSURE_REGISTERED(UmlCalendar);

UmlCalendarError::UmlCalendarError(const std::string& kind,
                                   bool hasClient,
                                   uint64_t clientId,
                                   const std::string& what)
    : std::runtime_error(what),
      m_kind(kind),
      m_hasClient(hasClient),
      m_clientId(clientId)
{
}

const std::string&
UmlCalendarError::GetKind() const
{
    return m_kind;
}

bool
UmlCalendarError::HasClient() const
{
    return m_hasClient;
}

uint64_t
UmlCalendarError::GetClientId() const
{
    return m_clientId;
}

namespace
{
uint64_t
TsToNs(uint64_t ts)
{
    return static_cast<uint64_t>(TimeStep(ts).GetNanoSeconds());
}

uint64_t
NsToTs(uint64_t ns)
{
    if (ns >= tt::TIME_NEVER)
    {
        return tt::TIME_NEVER;
    }
    return static_cast<uint64_t>(NanoSeconds(static_cast<int64_t>(ns)).GetTimeStep());
}

std::string
Hex(uint64_t v)
{
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
    return buf;
}
} // namespace

TypeId
UmlCalendar::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::UmlCalendar")
            .SetParent<SimulatorImpl>()
            .SetGroupName("Uml")
            .AddConstructor<UmlCalendar>()
            .AddAttribute("SocketPath",
                          "Unix socket the time-travel clients connect to.",
                          StringValue(""),
                          MakeStringAccessor(&UmlCalendar::m_socketPath),
                          MakeStringChecker())
            .AddAttribute("SharedMemory",
                          "Offer shared-memory scheduling (version 2) to clients.",
                          BooleanValue(true),
                          MakeBooleanAccessor(&UmlCalendar::m_sharedMemory),
                          MakeBooleanChecker())
            .AddAttribute("MaxClients",
                          "Slots in the shared scheduling page; clients beyond use messages.",
                          UintegerValue(64),
                          MakeUintegerAccessor(&UmlCalendar::m_maxClients),
                          MakeUintegerChecker<uint16_t>(1, 4000))
            .AddAttribute("TodEpoch",
                          "Time of day (ns since 1970) at simulated time 0, answered to "
                          "GET_TOD; fixed so that guests' clocks repeat.",
                          UintegerValue(1704067200ULL * 1000000000ULL),
                          MakeUintegerAccessor(&UmlCalendar::m_todEpoch),
                          MakeUintegerChecker<uint64_t>())
            .AddAttribute("YieldTimeout",
                          "Wall-clock seconds a running client (or a guest's reply) may "
                          "take before the run stops with a hang error.",
                          DoubleValue(120.0),
                          MakeDoubleAccessor(&UmlCalendar::m_yieldTimeout),
                          MakeDoubleChecker<double>(0.001))
            .AddAttribute("ConnectTimeout",
                          "Wall-clock seconds to wait for expected clients to connect.",
                          DoubleValue(60.0),
                          MakeDoubleAccessor(&UmlCalendar::m_connectTimeout),
                          MakeDoubleChecker<double>(0.001))
            .AddAttribute("MaxFreeRun",
                          "If positive, no client runs more than this far ahead without "
                          "coming back to the calendar, so that the calendar's clock (and a "
                          "progress display) follows lone guests; 0: up to the next event.",
                          TimeValue(Time(0)),
                          MakeTimeAccessor(&UmlCalendar::m_maxFreeRun),
                          MakeTimeChecker(Time(0)))
            .AddAttribute("LogFile",
                          "If set, every protocol message is logged there with its "
                          "simulated time.",
                          StringValue(""),
                          MakeStringAccessor(&UmlCalendar::m_logPath),
                          MakeStringChecker())
            .AddTraceSource("ClientRun",
                            "A client was granted run time: (client id, time).",
                            MakeTraceSourceAccessor(&UmlCalendar::m_clientRunTrace),
                            "ns3::UmlCalendar::ClientRunCallback")
            .AddTraceSource("ClientDeparted",
                            "A client left: (client id, how).",
                            MakeTraceSourceAccessor(&UmlCalendar::m_clientDepartedTrace),
                            "ns3::UmlCalendar::ClientDepartedCallback")
            .AddTraceSource("Message",
                            "A protocol message: (client id, from client, op, seq, time).",
                            MakeTraceSourceAccessor(&UmlCalendar::m_messageTrace),
                            "ns3::UmlCalendar::MessageCallback");
    return tid;
}

UmlCalendar::UmlCalendar()
    : m_eventsWithContextEmpty(true),
      m_stop(false),
      m_uid(EventId::UID::VALID),
      m_currentUid(EventId::UID::INVALID),
      m_currentTs(0),
      m_currentContext(Simulator::NO_CONTEXT),
      m_eventCount(0),
      m_unscheduledEvents(0),
      m_mainThreadId(std::this_thread::get_id()),
      m_sharedMemory(true),
      m_maxClients(64),
      m_todEpoch(0),
      m_yieldTimeout(120.0),
      m_connectTimeout(60.0),
      m_listenFd(-1),
      m_logFd(-1),
      m_interruptFd(-1),
      m_log(nullptr),
      m_running(nullptr),
      m_grantedFreeUntil(tt::TIME_NEVER),
      m_expected(0),
      m_admitted(0),
      m_handoffs(0),
      m_msgCount{},
      m_wallSeconds(0)
{
    NS_LOG_FUNCTION(this);
}

UmlCalendar::~UmlCalendar()
{
    Shutdown();
}

Ptr<UmlCalendar>
UmlCalendar::Get()
{
    Ptr<UmlCalendar> cal = DynamicCast<UmlCalendar>(Simulator::GetImplementation());
    if (!cal)
    {
        throw UmlCalendarError("setup",
                               false,
                               0,
                               "ns-3's SimulatorImpl is not ns3::UmlCalendar: bind "
                               "SimulatorImplementationType before the first Simulator call");
    }
    return cal;
}

// ---------------------------------------------------------------- the event queue

void
UmlCalendar::DoDispose()
{
    ProcessEventsWithContext();
    while (m_events && !m_events->IsEmpty())
    {
        Scheduler::Event next = m_events->RemoveNext();
        next.impl->Unref();
    }
    m_events = nullptr;
    Shutdown();
    SimulatorImpl::DoDispose();
}

void
UmlCalendar::Destroy()
{
    while (!m_destroyEvents.empty())
    {
        Ptr<EventImpl> ev = m_destroyEvents.front().PeekEventImpl();
        m_destroyEvents.pop_front();
        if (!ev->IsCancelled())
        {
            ev->Invoke();
        }
    }
    Shutdown();
}

void
UmlCalendar::SetScheduler(ObjectFactory schedulerFactory)
{
    Ptr<Scheduler> scheduler = schedulerFactory.Create<Scheduler>();
    if (m_events)
    {
        while (!m_events->IsEmpty())
        {
            scheduler->Insert(m_events->RemoveNext());
        }
    }
    m_events = scheduler;
}

uint32_t
UmlCalendar::GetSystemId() const
{
    return 0;
}

bool
UmlCalendar::IsFinished() const
{
    return m_events->IsEmpty() || m_stop;
}

void
UmlCalendar::ProcessEventsWithContext()
{
    if (m_eventsWithContextEmpty)
    {
        return;
    }
    std::list<EventWithContext> events;
    {
        std::unique_lock lock{m_eventsWithContextMutex};
        events.swap(m_eventsWithContext);
        m_eventsWithContextEmpty = true;
    }
    for (const auto& ev : events)
    {
        Time delay = TimeStep(ev.timestamp) - TimeStep(m_currentTs);
        Insert(m_currentTs + delay.GetTimeStep(), ev.event, ev.context);
    }
}

void
UmlCalendar::ProcessOneEvent()
{
    Scheduler::Event next = m_events->RemoveNext();
    PreEventHook(EventId(next.impl, next.key.m_ts, next.key.m_context, next.key.m_uid));
    NS_ASSERT(next.key.m_ts >= m_currentTs);
    m_unscheduledEvents--;
    m_eventCount++;
    m_currentTs = next.key.m_ts;
    m_currentContext = next.key.m_context;
    m_currentUid = next.key.m_uid;
    if (m_shm)
    {
        // A guest interrupted during this event reads "now" from the page.
        m_shm->SetCurrentTime(TsToNs(m_currentTs));
    }
    next.impl->Invoke();
    next.impl->Unref();
    ProcessEventsWithContext();
}

void
UmlCalendar::Run()
{
    NS_LOG_FUNCTION(this);
    m_mainThreadId = std::this_thread::get_id();
    auto wallStart = std::chrono::steady_clock::now();
    m_stop = false;
    try
    {
        Listen();
        ProcessEventsWithContext();
        if (m_admitted < m_expected)
        {
            ServeClientsUntilAdmitted(m_expected);
        }
        SyncRequests();
        while (!m_stop)
        {
            if (m_events->IsEmpty())
            {
                AcceptLateClients();
                if (m_events->IsEmpty())
                {
                    break;
                }
            }
            ProcessOneEvent();
        }
    }
    catch (const UmlCalendarError& e)
    {
        NS_LOG_WARN("run stopped: " << e.what());
        m_wallSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                                       wallStart)
                             .count();
        Shutdown();
        throw;
    }
    catch (...)
    {
        Shutdown();
        throw;
    }
    m_wallSeconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wallStart).count();
    if (m_log)
    {
        fflush(m_log);
    }
}

void
UmlCalendar::Stop()
{
    m_stop = true;
}

EventId
UmlCalendar::Stop(const Time& delay)
{
    return Simulator::Schedule(delay, &Simulator::Stop);
}

EventId
UmlCalendar::Insert(uint64_t ts, EventImpl* event, uint32_t context)
{
    Scheduler::Event ev;
    ev.impl = event;
    ev.key.m_ts = ts;
    ev.key.m_context = context;
    ev.key.m_uid = m_uid;
    m_uid++;
    m_unscheduledEvents++;
    m_events->Insert(ev);
    // Rule 2: the running client must not run past an event it just caused.
    LowerFreeUntilNs(TsToNs(ts));
    return EventId(event, ev.key.m_ts, ev.key.m_context, ev.key.m_uid);
}

EventId
UmlCalendar::Schedule(const Time& delay, EventImpl* event)
{
    NS_ASSERT_MSG(std::this_thread::get_id() == m_mainThreadId,
                  "Simulator::Schedule from another thread: use ScheduleWithContext");
    NS_ASSERT_MSG(delay.IsPositive(), "UmlCalendar::Schedule(): negative delay");
    Time tAbsolute = delay + TimeStep(CurrentTs());
    return Insert(static_cast<uint64_t>(tAbsolute.GetTimeStep()), event, GetContext());
}

void
UmlCalendar::ScheduleWithContext(uint32_t context, const Time& delay, EventImpl* event)
{
    if (std::this_thread::get_id() == m_mainThreadId)
    {
        Time tAbsolute = delay + TimeStep(CurrentTs());
        Insert(static_cast<uint64_t>(tAbsolute.GetTimeStep()), event, context);
    }
    else
    {
        EventWithContext ev;
        ev.context = context;
        ev.timestamp = delay.GetTimeStep() + m_currentTs;
        ev.event = event;
        std::unique_lock lock{m_eventsWithContextMutex};
        m_eventsWithContext.push_back(ev);
        m_eventsWithContextEmpty = false;
    }
}

EventId
UmlCalendar::ScheduleNow(EventImpl* event)
{
    return Schedule(Time(0), event);
}

EventId
UmlCalendar::ScheduleDestroy(EventImpl* event)
{
    EventId id(Ptr<EventImpl>(event, false), m_currentTs, 0xffffffff, EventId::UID::DESTROY);
    m_destroyEvents.push_back(id);
    m_uid++;
    return id;
}

Time
UmlCalendar::Now() const
{
    return TimeStep(CurrentTs());
}

Time
UmlCalendar::GetDelayLeft(const EventId& id) const
{
    if (IsExpired(id))
    {
        return TimeStep(0);
    }
    return TimeStep(id.GetTs() - CurrentTs());
}

void
UmlCalendar::Remove(const EventId& id)
{
    if (id.GetUid() == EventId::UID::DESTROY)
    {
        for (auto i = m_destroyEvents.begin(); i != m_destroyEvents.end(); ++i)
        {
            if (*i == id)
            {
                m_destroyEvents.erase(i);
                break;
            }
        }
        return;
    }
    if (IsExpired(id))
    {
        return;
    }
    Scheduler::Event event;
    event.impl = id.PeekEventImpl();
    event.key.m_ts = id.GetTs();
    event.key.m_context = id.GetContext();
    event.key.m_uid = id.GetUid();
    m_events->Remove(event);
    event.impl->Cancel();
    event.impl->Unref();
    m_unscheduledEvents--;
}

void
UmlCalendar::Cancel(const EventId& id)
{
    if (!IsExpired(id))
    {
        id.PeekEventImpl()->Cancel();
    }
}

bool
UmlCalendar::IsExpired(const EventId& id) const
{
    if (id.GetUid() == EventId::UID::DESTROY)
    {
        if (id.PeekEventImpl() == nullptr || id.PeekEventImpl()->IsCancelled())
        {
            return true;
        }
        for (const auto& ev : m_destroyEvents)
        {
            if (ev == id)
            {
                return false;
            }
        }
        return true;
    }
    return id.PeekEventImpl() == nullptr || id.GetTs() < m_currentTs ||
           (id.GetTs() == m_currentTs && id.GetUid() <= m_currentUid) ||
           id.PeekEventImpl()->IsCancelled();
}

Time
UmlCalendar::GetMaximumSimulationTime() const
{
    return TimeStep(0x7fffffffffffffffLL);
}

uint32_t
UmlCalendar::GetContext() const
{
    return m_currentContext;
}

uint64_t
UmlCalendar::GetEventCount() const
{
    return m_eventCount;
}

// ---------------------------------------------------------------- time

uint64_t
UmlCalendar::CurrentTs() const
{
    // A running shared-memory client publishes its clock in the page; a device that works
    // for it (after a kick) must see that time. Bounded by what it was granted.
    if (m_running && m_running->shm && m_shm)
    {
        uint64_t ns = std::min(m_shm->GetCurrentTime(), m_grantedFreeUntil);
        uint64_t ts = NsToTs(ns);
        return std::max<uint64_t>(ts, m_currentTs);
    }
    return m_currentTs;
}

uint64_t
UmlCalendar::CurrentNs() const
{
    return TsToNs(CurrentTs());
}

uint64_t
UmlCalendar::NextEventNs() const
{
    return m_events->IsEmpty() ? tt::TIME_NEVER : TsToNs(m_events->PeekNext().key.m_ts);
}

// ---------------------------------------------------------------- clients

std::string
UmlCalendar::Name(const Client* c) const
{
    std::string s = "client " + Hex(c->id);
    if (c->state == State::CONNECTED)
    {
        s = "a client that has not sent START";
    }
    if (c->pid > 0)
    {
        s += " (pid " + std::to_string(c->pid) + ")";
    }
    return s;
}

void
UmlCalendar::Fail(const std::string& kind, const Client* c, const std::string& what)
{
    bool hasClient = c && c->state != State::CONNECTED;
    std::string msg = c ? Name(c) + ": " + what : what;
    throw UmlCalendarError(kind, hasClient, hasClient ? c->id : 0, msg);
}

tt::ShmClient*
UmlCalendar::Record(Client* c)
{
    return UsesShm(c) ? m_shm->Client(c->slot) : &c->local;
}

bool
UmlCalendar::UsesShm(Client* c)
{
    if (!c->shmKnown && c->state != State::CONNECTED)
    {
        c->shmKnown = true;
        c->shm = c->slot != 0 && m_shm &&
                 (ShmLoad(&m_shm->Client(c->slot)->capa) & tt::CAP_TIME_SHARE);
    }
    return c->shm;
}

void
UmlCalendar::Listen()
{
    if (m_listenFd >= 0)
    {
        return;
    }
    GetEventLoop();
    std::string error;
    int fd = ListenUnixSocket(m_socketPath, 128, error);
    if (fd < 0)
    {
        throw UmlCalendarError("setup", false, 0, "UmlCalendar: " + error);
    }
    m_listenFd = fd;
    if (m_sharedMemory)
    {
        m_shm = std::make_unique<TtSharedMemory>(m_maxClients, tt::SHM_VERSION);
        m_shm->SetCurrentTime(TsToNs(m_currentTs));
    }
    m_noShm = std::make_unique<TtSharedMemory>(1, 0);
    if (!m_logPath.empty())
    {
        m_log = std::fopen(m_logPath.c_str(), "we");
        if (!m_log)
        {
            throw UmlCalendarError("setup",
                                   false,
                                   0,
                                   "cannot open log file " + m_logPath + ": " +
                                       std::strerror(errno));
        }
        m_logFd = dup(fileno(m_log));
    }
    else
    {
        m_logFd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    }
    NS_LOG_INFO("listening on " << m_socketPath);
}

std::string
UmlCalendar::GetSocketPath() const
{
    return m_socketPath;
}

void
UmlCalendar::ExpectClients(uint32_t n)
{
    m_expected = n;
}

void
UmlCalendar::AdmitClients(uint32_t n)
{
    Listen();
    ServeClientsUntilAdmitted(m_admitted + n);
    SyncRequests();
}

void
UmlCalendar::RegisterProcess(uint64_t clientId, int pid)
{
    m_pids[clientId] = pid;
    auto it = m_clients.find(clientId);
    if (it != m_clients.end())
    {
        it->second->pid = pid;
    }
}

void
UmlCalendar::CheckDeparture(uint64_t clientId)
{
    auto it = m_clients.find(clientId);
    if (it != m_clients.end())
    {
        CheckProcess(it->second.get());
    }
}

void
UmlCalendar::SetInterruptFd(int fd)
{
    if (m_interruptFd >= 0 && m_loop)
    {
        m_loop->Unwatch(m_interruptFd);
    }
    m_interruptFd = fd;
    if (fd >= 0)
    {
        GetEventLoop().Watch(fd, [this](uint32_t) { OnInterrupt(); }, true);
    }
}

void
UmlCalendar::OnInterrupt()
{
    unsigned char buf[64];
    ssize_t n = read(m_interruptFd, buf, sizeof(buf));
    for (ssize_t i = 0; i < n; ++i)
    {
        if (buf[i] == SIGINT || buf[i] == SIGTERM)
        {
            Fail("interrupted",
                 nullptr,
                 std::string("interrupted by ") + (buf[i] == SIGINT ? "SIGINT" : "SIGTERM"));
        }
    }
}

bool
UmlCalendar::IsAdmitting() const
{
    if (!m_unnamed.empty())
    {
        return true;
    }
    for (const auto& [id, c] : m_clients)
    {
        if (c->state == State::STARTING)
        {
            return true;
        }
    }
    return false;
}

void
UmlCalendar::OnListenReadable()
{
    // One client at a time from connect to its first WAIT: whatever it does meanwhile (a
    // device it sets up, events its kicks create) cannot interleave with another's.
    if (IsAdmitting())
    {
        return;
    }
    int fd = accept4(m_listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
    {
        return; // EAGAIN: nothing pending
    }
    auto c = std::make_unique<Client>();
    c->fd = fd;
    Client* raw = c.get();
    m_unnamed.push_back(std::move(c));
    m_loop->Watch(fd, [this, raw](uint32_t) { OnClientReadable(raw); }, true);
}

void
UmlCalendar::ServeClientsUntilAdmitted(uint32_t target)
{
    if (m_shm)
    {
        // Nobody runs during admission: a starting client must not run ahead.
        m_shm->SetFreeUntil(CurrentNs());
    }
    // The listening socket is watched only while nobody is being admitted (it stays
    // readable while others wait in its backlog).
    auto watchListen = [this] {
        bool admitting = IsAdmitting();
        bool watched = m_loop->IsWatched(m_listenFd);
        if (!admitting && !watched)
        {
            m_loop->Watch(m_listenFd, [this](uint32_t) { OnListenReadable(); }, false);
        }
        else if (admitting && watched)
        {
            m_loop->Unwatch(m_listenFd);
        }
    };
    bool ok = false;
    try
    {
        ok = m_loop->ServeUntil(
            [this, target, &watchListen] {
                watchListen();
                return m_admitted >= target && !IsAdmitting();
            },
            static_cast<int64_t>(m_connectTimeout * 1000));
    }
    catch (...)
    {
        m_loop->Unwatch(m_listenFd);
        throw;
    }
    m_loop->Unwatch(m_listenFd);
    if (!ok)
    {
        Fail("timeout",
             nullptr,
             "only " + std::to_string(m_admitted) + " of " + std::to_string(target) +
                 " clients connected to " + m_socketPath + " and yielded within " +
                 std::to_string(m_connectTimeout) + " s");
    }
}

void
UmlCalendar::AcceptLateClients()
{
    if (m_listenFd < 0)
    {
        return;
    }
    pollfd p{m_listenFd, POLLIN, 0};
    if (poll(&p, 1, 0) == 1)
    {
        // A client that connects mid-run joins at the next hand-off, at the time then.
        ServeClientsUntilAdmitted(m_admitted + 1);
        SyncRequests();
    }
}

void
UmlCalendar::OnClientReadable(Client* c)
{
    ssize_t n = recv(c->fd, c->rx + c->rxLen, sizeof(c->rx) - c->rxLen, MSG_DONTWAIT);
    if (n < 0)
    {
        if (errno == EAGAIN || errno == EINTR)
        {
            return;
        }
        Depart(c, c->rxLen != 0);
        return;
    }
    if (n == 0)
    {
        Depart(c, c->rxLen != 0);
        return;
    }
    c->rxLen += static_cast<size_t>(n);
    if (c->rxLen < sizeof(tt::Message))
    {
        return;
    }
    tt::Message msg;
    std::memcpy(&msg, c->rx, sizeof(msg));
    c->rxLen = 0;
    HandleMessage(c, msg);
}

void
UmlCalendar::Log(const Client* c, bool fromClient, const tt::Message& msg)
{
    m_msgCount[fromClient ? 1 : 0][std::min<uint32_t>(msg.op, tt::OP_COUNT)]++;
    if (m_log)
    {
        std::fprintf(m_log,
                     "%" PRIu64 " %s %s %s seq=%u time=%" PRIu64 "\n",
                     CurrentNs(),
                     c->state == State::CONNECTED ? "?" : Hex(c->id).c_str(),
                     fromClient ? "->" : "<-",
                     tt::OpName(msg.op),
                     msg.seq,
                     msg.time);
    }
    // After the log line: a traced device may send messages of its own.
    m_messageTrace(c->id, fromClient, msg.op, msg.seq, msg.time);
}

void
UmlCalendar::Write(Client* c, const tt::Message& msg)
{
    Log(c, false, msg);
    if (c->peerClosed)
    {
        return;
    }
    ssize_t n = send(c->fd, &msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(msg)))
    {
        return;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
    {
        // Gone: what it sent before leaving is still to be read, and the read side then
        // sees the departure in order (a half message included).
        c->peerClosed = true;
        return;
    }
    Fail("protocol", c, "does not read its time socket (send failed)");
}

void
UmlCalendar::Send(Client* c, uint32_t op, uint64_t time, bool expectAck)
{
    tt::Message msg{op, ++c->seq, time};
    Write(c, msg);
    if (expectAck && !c->peerClosed)
    {
        c->pendingAcks.push_back(msg.seq);
    }
}

void
UmlCalendar::Ack(Client* c, uint32_t seq, uint64_t time)
{
    Write(c, tt::Message{tt::OP_ACK, seq, time});
}

void
UmlCalendar::HandleStart(Client* c, const tt::Message& msg)
{
    uint64_t id = msg.time;
    auto existing = m_clients.find(id);
    if (existing != m_clients.end() && existing->second->state != State::GONE)
    {
        c->id = id;
        Fail("protocol",
             nullptr,
             "two clients sent START with id " + Hex(id) +
                 ": give each client its own id (time-travel=ext:ID:PATH) so the order "
                 "of simultaneous events is fixed");
    }
    // Move the client from the unnamed list into the id-ordered map.
    std::unique_ptr<Client> owned;
    for (auto it = m_unnamed.begin(); it != m_unnamed.end(); ++it)
    {
        if (it->get() == c)
        {
            owned = std::move(*it);
            m_unnamed.erase(it);
            break;
        }
    }
    c->id = id;
    c->state = State::STARTING;
    c->offset = CurrentNs();
    auto pid = m_pids.find(id);
    if (pid != m_pids.end())
    {
        c->pid = pid->second;
    }
    m_clients[id] = std::move(owned);
    Log(c, true, msg);

    int memfd = m_noShm->GetFd();
    uint64_t ackTime = 0;
    if (m_shm)
    {
        std::vector<bool> used(m_shm->GetMaxClients() + 1, false);
        for (auto& [cid, other] : m_clients)
        {
            if (other->state != State::GONE && other->slot)
            {
                used[other->slot] = true;
            }
        }
        for (uint16_t s = 1; s <= m_shm->GetMaxClients(); ++s)
        {
            if (!used[s])
            {
                c->slot = s;
                break;
            }
        }
        if (c->slot)
        {
            m_shm->ResetClient(c->slot, id);
            memfd = m_shm->GetFd();
            ackTime = c->slot;
            m_shm->SetCurrentTime(CurrentNs());
        }
    }
    tt::Message ack{tt::OP_ACK, msg.seq, ackTime};
    Log(c, false, ack);
    int fds[tt::MAX_FDS] = {memfd, m_logFd};
    iovec iov{&ack, sizeof(ack)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(fds))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(fds));
    std::memcpy(CMSG_DATA(cm), fds, sizeof(fds));
    if (sendmsg(c->fd, &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(ack)))
    {
        c->peerClosed = true;
    }
}

void
UmlCalendar::HandleMessage(Client* c, const tt::Message& msg)
{
    if (c->state == State::CONNECTED)
    {
        if (msg.op != tt::OP_START)
        {
            Fail("protocol",
                 c,
                 std::string("sent ") + tt::OpName(msg.op) + " (op " + std::to_string(msg.op) +
                     ") before START");
        }
        HandleStart(c, msg);
        return;
    }
    Log(c, true, msg);
    bool shm = UsesShm(c);
    switch (msg.op)
    {
    case tt::OP_ACK:
        if (c->pendingAcks.empty() || c->pendingAcks.front() != msg.seq)
        {
            Fail("protocol",
                 c,
                 "sent ACK with seq " + std::to_string(msg.seq) + ", expected " +
                     (c->pendingAcks.empty() ? std::string("no ACK")
                                             : std::to_string(c->pendingAcks.front())));
        }
        c->pendingAcks.pop_front();
        return;
    case tt::OP_START:
        Fail("protocol", c, "sent START twice");
    case tt::OP_REQUEST: {
        tt::ShmClient* rec = Record(c);
        ShmStore(&rec->req_time, msg.time + c->offset);
        ShmStore(&rec->flags, ShmLoad(&rec->flags) | tt::FLAG_REQ_RUN);
        Ack(c, msg.seq, 0);
        return;
    }
    case tt::OP_WAIT:
        if (c->state == State::WAITING)
        {
            Fail("protocol", c, "sent WAIT while already waiting");
        }
        if (c->state == State::STARTING)
        {
            m_admitted++;
        }
        c->state = State::WAITING;
        if (!shm)
        {
            Ack(c, msg.seq, 0);
        }
        return;
    case tt::OP_GET:
        Ack(c, msg.seq, CurrentNs() - std::min(c->offset, CurrentNs()));
        return;
    case tt::OP_UPDATE: {
        if (c->state != State::RUNNING)
        {
            if (c->state == State::STARTING && msg.time + c->offset == CurrentNs())
            {
                Ack(c, msg.seq, 0);
                return;
            }
            Fail("protocol", c, "sent UPDATE while not running");
        }
        uint64_t t = msg.time + c->offset;
        if (t < CurrentNs())
        {
            Fail("protocol",
                 c,
                 "UPDATE moves time backwards (" + std::to_string(t) + " < " +
                     std::to_string(CurrentNs()) + " ns)");
        }
        if (t > m_grantedFreeUntil)
        {
            Fail("protocol",
                 c,
                 "ran to " + std::to_string(t) + " ns, past its free-until " +
                     std::to_string(m_grantedFreeUntil) + " ns");
        }
        m_currentTs = NsToTs(t);
        Ack(c, msg.seq, 0);
        return;
    }
    case tt::OP_GET_TOD:
        Ack(c, msg.seq, m_todEpoch + CurrentNs());
        return;
    case tt::OP_BROADCAST:
        for (auto& [id, other] : m_clients)
        {
            if (other.get() != c && other->state != State::GONE &&
                other->state != State::CONNECTED)
            {
                Send(other.get(), tt::OP_BROADCAST, msg.time, true);
            }
        }
        Ack(c, msg.seq, 0);
        return;
    case tt::OP_RUN:
    case tt::OP_FREE_UNTIL:
        Fail("protocol",
             c,
             std::string("sent ") + tt::OpName(msg.op) + ", which only the calendar may send");
    default:
        Fail("protocol", c, "sent unknown op " + std::to_string(msg.op));
    }
}

void
UmlCalendar::CheckProcess(Client* c)
{
    if (c->pid <= 0)
    {
        return;
    }
    // The socket closes before the process is reapable: give it a moment, then look at how
    // it ended without reaping it (its owner reaps).
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, c->pid, 0));
    if (pidfd < 0)
    {
        return;
    }
    pollfd p{pidfd, POLLIN, 0};
    int ready = poll(&p, 1, 2000);
    close(pidfd);
    if (ready != 1)
    {
        return; // still alive: it closed its socket on purpose
    }
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(c->pid), &info, WEXITED | WNOWAIT | WNOHANG) != 0 ||
        info.si_pid == 0)
    {
        return; // not our child: its owner decides
    }
    std::string how;
    if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)
    {
        how = "killed by signal " + std::to_string(info.si_status);
    }
    else if (info.si_code == CLD_EXITED && info.si_status != 0)
    {
        how = "exited with status " + std::to_string(info.si_status);
    }
    if (!how.empty())
    {
        c->departure = how;
        Fail("crash", c, "died: " + how);
    }
}

void
UmlCalendar::Depart(Client* c, bool midMessage)
{
    if (c->state == State::GONE)
    {
        return;
    }
    m_loop->Unwatch(c->fd);
    close(c->fd);
    c->fd = -1;
    State was = c->state;
    c->state = State::GONE;
    if (was == State::CONNECTED)
    {
        if (midMessage)
        {
            Fail("protocol", c, "disconnected in the middle of its START message");
        }
        return;
    }
    if (c->event.GetUid() != EventId::UID::INVALID)
    {
        Remove(c->event);
        c->event = EventId();
        c->scheduledNs = tt::TIME_NEVER;
    }
    if (c->slot && m_shm)
    {
        m_shm->ResetClient(c->slot, 0);
    }
    if (was == State::STARTING)
    {
        m_admitted++; // it will never yield: do not wait for it
    }
    c->departure = was == State::RUNNING    ? "left while running"
                   : was == State::STARTING ? "left before its first WAIT"
                                            : "left while waiting";
    NS_LOG_INFO(Name(c) << " " << c->departure);
    if (midMessage)
    {
        Fail("protocol", c, "disconnected in the middle of a message");
    }
    CheckProcess(c);
    m_clientDepartedTrace(c->id, c->departure);
}

// ---------------------------------------------------------------- scheduling

void
UmlCalendar::SyncRequests()
{
    uint64_t now = CurrentNs();
    for (auto& [id, owned] : m_clients)
    {
        Client* c = owned.get();
        if (c->state != State::WAITING)
        {
            continue;
        }
        tt::ShmClient* rec = Record(c);
        uint64_t want = tt::TIME_NEVER;
        // An idle UML asks for S64_MAX (shm: plus its offset, past S64_MAX): never.
        uint64_t req = ShmLoad(&rec->req_time);
        if ((ShmLoad(&rec->flags) & tt::FLAG_REQ_RUN) && req < tt::TIME_NEVER)
        {
            want = std::max(req, now);
        }
        if (want == c->scheduledNs)
        {
            continue;
        }
        if (c->event.GetUid() != EventId::UID::INVALID)
        {
            Remove(c->event);
            c->event = EventId();
        }
        c->scheduledNs = want;
        if (want != tt::TIME_NEVER)
        {
            c->event = Insert(NsToTs(want),
                              MakeEvent(&UmlCalendar::RunClient, this, c),
                              Simulator::NO_CONTEXT);
        }
    }
}

void
UmlCalendar::SetFreeUntil(Client* c, uint64_t ns, bool confirm)
{
    m_grantedFreeUntil = ns;
    if (c->shm)
    {
        m_shm->SetFreeUntil(ns);
        return;
    }
    Send(c, tt::OP_FREE_UNTIL, ns - std::min(ns, c->offset), true);
    if (confirm && c->state == State::RUNNING && !c->peerClosed)
    {
        // A guest blocked on a device reply polls its time socket and the device socket
        // together and leaves as soon as the reply is there: if both were readable, the
        // new free-until would sit unread while it runs past it. So it must have taken
        // the message (its ACK) before anything else is answered.
        uint32_t seq = c->seq;
        bool acked = m_loop->ServeInnerUntil(
            [c, seq] {
                return c->state != State::RUNNING ||
                       std::find(c->pendingAcks.begin(), c->pendingAcks.end(), seq) ==
                           c->pendingAcks.end();
            },
            YieldTimeoutMs());
        if (!acked)
        {
            Fail("hang", c, "did not acknowledge FREE_UNTIL");
        }
    }
}

void
UmlCalendar::LowerFreeUntil(Time t)
{
    LowerFreeUntilNs(static_cast<uint64_t>(std::max<int64_t>(t.GetNanoSeconds(), 0)));
}

void
UmlCalendar::LowerFreeUntilNs(uint64_t ns)
{
    if (m_running && ns < m_grantedFreeUntil)
    {
        SetFreeUntil(m_running, ns, true);
    }
}

int64_t
UmlCalendar::YieldTimeoutMs() const
{
    return static_cast<int64_t>(m_yieldTimeout * 1000);
}

void
UmlCalendar::RunClient(Client* c)
{
    c->event = EventId();
    c->scheduledNs = tt::TIME_NEVER;
    tt::ShmClient* rec = Record(c);
    ShmStore(&rec->flags, ShmLoad(&rec->flags) & ~tt::FLAG_REQ_RUN);
    uint64_t now = CurrentNs();
    c->state = State::RUNNING;
    c->runs++;
    c->lastRunNs = now;
    m_handoffs++;
    m_running = c;
    m_clientRunTrace(c->id, TimeStep(m_currentTs));
    if (c->shm)
    {
        m_shm->SetCurrentTime(now);
        m_shm->SetRunningId(c->slot);
    }
    else if (m_shm)
    {
        m_shm->SetRunningId(c->slot);
    }
    // In message mode UML forgot its free-until at WAIT: grant it again with every RUN.
    uint64_t freeUntil = NextEventNs();
    if (m_maxFreeRun.IsStrictlyPositive())
    {
        freeUntil = std::min(freeUntil, now + static_cast<uint64_t>(m_maxFreeRun.GetNanoSeconds()));
    }
    // Sent before RUN on the same socket: the waiting guest reads them in order.
    SetFreeUntil(c, freeUntil, false);
    Send(c, tt::OP_RUN, now - c->offset, !c->shm);
    bool yielded = false;
    try
    {
        yielded = m_loop->ServeUntil([c] { return c->state != State::RUNNING; }, YieldTimeoutMs());
    }
    catch (...)
    {
        m_running = nullptr;
        throw;
    }
    if (!yielded)
    {
        m_running = nullptr;
        Fail("hang",
             c,
             "did not yield within " + std::to_string(m_yieldTimeout) +
                 " s of wall time after RUN at " + std::to_string(now) + " ns");
    }
    if (c->shm && c->state == State::WAITING)
    {
        m_currentTs = CurrentTs(); // commit the time it reached
    }
    m_running = nullptr;
    if (m_shm)
    {
        m_shm->SetRunningId(0);
        m_shm->SetCurrentTime(TsToNs(m_currentTs));
    }
    SyncRequests();
    AcceptLateClients();
}

void
UmlCalendar::WaitForReply(int fd, uint64_t clientId)
{
    if (!m_loop->WaitReadable(fd, YieldTimeoutMs()))
    {
        auto it = m_clients.find(clientId);
        Client* c = it == m_clients.end() ? nullptr : it->second.get();
        Fail("hang",
             c,
             "did not answer its device within " + std::to_string(m_yieldTimeout) +
                 " s of wall time");
    }
    if (!m_running)
    {
        SyncRequests();
    }
}

bool
UmlCalendar::HasRunningClient() const
{
    return m_running != nullptr;
}

uint64_t
UmlCalendar::GetRunningClientId() const
{
    return m_running ? m_running->id : 0;
}

EventLoop&
UmlCalendar::GetEventLoop()
{
    if (!m_loop)
    {
        m_loop = std::make_unique<EventLoop>();
    }
    return *m_loop;
}

// ---------------------------------------------------------------- results, teardown

uint64_t
UmlCalendar::GetMessageCount(uint32_t op, bool fromClient) const
{
    return m_msgCount[fromClient ? 1 : 0][std::min<uint32_t>(op, tt::OP_COUNT)];
}

uint64_t
UmlCalendar::GetHandoffCount() const
{
    return m_handoffs;
}

uint64_t
UmlCalendar::GetProgressNs() const
{
    return TimeStep(m_currentTs.load(std::memory_order_relaxed)).GetNanoSeconds();
}

std::string
UmlCalendar::GetSummaryJson() const
{
    static const char* const states[] = {"connected", "starting", "waiting", "running", "gone"};
    std::ostringstream o;
    o << "{\"sim_time_ns\":" << TsToNs(m_currentTs) << ",\"wall_s\":" << m_wallSeconds
      << ",\"handoffs\":" << m_handoffs << ",\"events\":" << m_eventCount
      << ",\"shared_memory\":" << (m_shm ? "true" : "false") << ",\"clients\":[";
    bool first = true;
    for (const auto& [id, c] : m_clients)
    {
        o << (first ? "" : ",") << "{\"id\":" << id << ",\"slot\":" << c->slot
          << ",\"shm\":" << (c->shm ? "true" : "false") << ",\"offset_ns\":" << c->offset
          << ",\"runs\":" << c->runs << ",\"last_run_ns\":" << c->lastRunNs << ",\"state\":\""
          << states[static_cast<int>(c->state)] << "\",\"departure\":\"" << c->departure
          << "\",\"pid\":" << c->pid << "}";
        first = false;
    }
    o << "],\"messages\":{";
    first = true;
    for (uint32_t op = 0; op <= tt::OP_COUNT; ++op)
    {
        if (m_msgCount[0][op] + m_msgCount[1][op] == 0)
        {
            continue;
        }
        o << (first ? "" : ",") << "\"" << tt::OpName(op) << "\":{\"from_clients\":"
          << m_msgCount[1][op] << ",\"to_clients\":" << m_msgCount[0][op] << "}";
        first = false;
    }
    o << "}}";
    return o.str();
}

void
UmlCalendar::Shutdown()
{
    // Everything the calendar holds goes: descriptors, shared pages, the poll sets.
    m_loop.reset();
    m_interruptFd = -1;
    for (auto& [id, c] : m_clients)
    {
        if (c->fd >= 0)
        {
            close(c->fd);
            c->fd = -1;
        }
        if (c->state != State::GONE)
        {
            c->state = State::GONE;
            if (c->departure.empty())
            {
                c->departure = "closed by the calendar";
            }
        }
    }
    for (auto& c : m_unnamed)
    {
        if (c->fd >= 0)
        {
            close(c->fd);
            c->fd = -1;
        }
    }
    m_unnamed.clear();
    if (m_listenFd >= 0)
    {
        close(m_listenFd);
        m_listenFd = -1;
        unlink(m_socketPath.c_str());
    }
    m_shm.reset();
    m_noShm.reset();
    if (m_logFd >= 0)
    {
        close(m_logFd);
        m_logFd = -1;
    }
    if (m_log)
    {
        std::fclose(m_log);
        m_log = nullptr;
    }
    m_running = nullptr;
}

} // namespace ns3
