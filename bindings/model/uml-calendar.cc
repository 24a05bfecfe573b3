#include "uml-calendar.h"

#include "ns3/boolean.h"
#include "ns3/double.h"
#include "ns3/log.h"
#include "ns3/make-event.h"
#include "ns3/simulator.h"
#include "ns3/string.h"
#include "ns3/trace-source-accessor.h"
#include "ns3/uinteger.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlCalendar");
NS_OBJECT_ENSURE_REGISTERED(UmlCalendar);

TypeId
UmlCalendar::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::UmlCalendar")
            .SetParent<UmlEventList>()
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
            .AddAttribute("MessageTimeout",
                          "Wall-clock seconds a message that has started (on a time or a "
                          "device socket) may take to arrive whole, counted from its first "
                          "byte however it is split; meanwhile everybody else is served.",
                          DoubleValue(MESSAGE_LIMIT_S),
                          MakeDoubleAccessor(&UmlCalendar::m_messageTimeout),
                          MakeDoubleChecker<double>(0.001))
            .AddAttribute("MaxFreeRun",
                          "If positive, no client runs more than this far ahead without "
                          "coming back to the calendar, so that the calendar's clock (and a "
                          "progress display) follows lone guests; 0: up to the next event.",
                          TimeValue(Time(0)),
                          MakeTimeAccessor(&UmlCalendar::m_maxFreeRun),
                          MakeTimeChecker(Time(0)))
            .AddAttribute("IndependentGroups",
                          "Let the guests of nodes that no chain of channels joins run "
                          "without stopping for each other's events: each group stops only "
                          "for its own events and global ones (docs/DESIGN.md rule 2). "
                          "False: every guest stops for every event.",
                          BooleanValue(true),
                          MakeBooleanAccessor(&UmlCalendar::m_independentGroups),
                          MakeBooleanChecker())
            .AddAttribute("MaxAhead",
                          "With independent groups, how far past the start of its run a "
                          "guest may run when nothing of its group comes earlier: a group "
                          "gets at most this far ahead of the rest of the simulation, so a "
                          "guest whose own timers never end cannot keep the others waiting, "
                          "and what Python sends a group at another group's stop is late by "
                          "at most this (docs/DESIGN.md rule 2).",
                          TimeValue(MilliSeconds(1)),
                          MakeTimeAccessor(&UmlCalendar::m_maxAhead),
                          MakeTimeChecker(NanoSeconds(1)))
            .AddAttribute("ParallelRuns",
                          "How many guests of different independent groups may run at once "
                          "(each on a CPU of its own, if it has one): a batch of guests whose "
                          "turns come before anything could reach them is started together "
                          "and served one by one in its order, so results do not depend on "
                          "this number (docs/DESIGN.md rule 1).",
                          UintegerValue(1),
                          MakeUintegerAccessor(&UmlCalendar::m_parallelRuns),
                          MakeUintegerChecker<uint32_t>(1, 256))
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
    : m_sharedMemory(true),
      m_maxClients(64),
      m_todEpoch(0),
      m_yieldTimeout(120.0),
      m_connectTimeout(60.0),
      m_messageTimeout(MESSAGE_LIMIT_S),
      m_independentGroups(true),
      m_maxAhead(MilliSeconds(1)),
      m_parallelRuns(1),
      m_admission([this](int fd) { OnAccepted(fd); }, [this] { return IsAdmitting(); }),
      m_withoutId(0),
      m_running(nullptr),
      m_expected(0),
      m_handoffs(0),
      m_runsAhead(0),
      m_wallSeconds(0)
{
    NS_LOG_FUNCTION(this);
    m_messages.SetClock([this] { return CurrentNs(); });
    m_messages.SetObserver([this](uint64_t id, bool fromClient, const tt::Message& msg) {
        m_messageTrace(id, fromClient, msg.op, msg.seq, msg.time);
    });
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
        throw UmlError("setup",
                       false,
                       0,
                       "ns-3's SimulatorImpl is not ns3::UmlCalendar: bind "
                       "SimulatorImplementationType before the first Simulator call");
    }
    return cal;
}

void
UmlCalendar::Ref() const
{
    UmlEventList::Ref();
}

void
UmlCalendar::Unref() const
{
    UmlEventList::Unref();
}

Ptr<UmlGuestScheduler>
UmlCalendar::GetGuestScheduler()
{
    return Ptr<UmlGuestScheduler>(this);
}

// ---------------------------------------------------------------- the SimulatorImpl

void
UmlCalendar::DoDispose()
{
    NS_LOG_FUNCTION(this);
    UmlEventList::DoDispose();
    Shutdown();
}

void
UmlCalendar::Destroy()
{
    NS_LOG_FUNCTION(this);
    UmlEventList::Destroy();
    Shutdown();
}

void
UmlCalendar::Run()
{
    NS_LOG_FUNCTION(this);
    StartRunning();
    auto wallStart = std::chrono::steady_clock::now();
    auto addWallTime = [this, wallStart] {
        m_wallSeconds +=
            std::chrono::duration<double>(std::chrono::steady_clock::now() - wallStart).count();
    };
    try
    {
        Listen();
        ProcessEventsWithContext();
        UpdateGroups(m_independentGroups);
        if (m_admission.GetAdmitted() < m_expected)
        {
            ServeClientsUntilAdmitted(m_expected);
        }
        SyncRequests();
        while (!IsStopped())
        {
            if (!HasEvents())
            {
                AcceptLateClients();
                if (!HasEvents())
                {
                    break;
                }
            }
            ProcessOneEvent();
        }
        SettleDepartures();
    }
    catch (const UmlError& e)
    {
        NS_LOG_WARN("run stopped: " << e.what());
        addWallTime();
        Shutdown();
        throw;
    }
    catch (...)
    {
        Shutdown();
        throw;
    }
    addWallTime();
    m_messages.Flush();
}

uint64_t
UmlCalendar::CurrentTs() const
{
    // A running shared-memory client publishes its clock in the page; a device that works
    // for it (after a kick) must see that time. Bounded by what it was granted.
    if (!m_running)
    {
        return GetCommittedTs();
    }
    if (m_running->shm)
    {
        uint64_t ns = std::min(m_running->page->GetCurrentTime(), m_running->grantNs);
        return std::max<uint64_t>(NsToTs(ns), m_running->runTs);
    }
    return m_running->runTs; // a message-mode client's last UPDATE
}

void
UmlCalendar::EventInserted(uint64_t ts, uint32_t context)
{
    // docs/DESIGN.md rule 2: the running client must not run past an event it just caused.
    LowerFreeUntilNs(context, TsToNs(ts));
}

void
UmlCalendar::EventStarting()
{
    // A guest interrupted during this event reads "now" from its page: only the event's
    // group can be interrupted by it (all, for a global event).
    uint32_t group = GetGroups().GroupOf(GetContext());
    auto it = group != UmlEventGroups::GLOBAL ? m_pages.find(group) : m_pages.end();
    if (it != m_pages.end())
    {
        it->second->SetCurrentTime(TsToNs(GetCommittedTs()));
    }
    else
    {
        SetPagesTime(TsToNs(GetCommittedTs()));
    }
}

TtSharedMemory*
UmlCalendar::PageFor(uint32_t context)
{
    uint32_t group = GetGroups().GroupOf(context);
    auto& page = m_pages[group];
    if (!page)
    {
        page = std::make_unique<TtSharedMemory>(m_maxClients, tt::SHM_VERSION);
        page->SetCurrentTime(CurrentNs());
        page->SetFreeUntil(CurrentNs()); // nobody on it runs before its RUN
        NS_LOG_INFO("scheduling page for group " << group);
    }
    return page.get();
}

void
UmlCalendar::SetPagesTime(uint64_t ns)
{
    for (auto& [group, page] : m_pages)
    {
        page->SetCurrentTime(ns);
    }
}

uint64_t
UmlCalendar::CurrentNs() const
{
    return TsToNs(CurrentTs());
}

bool
UmlCalendar::IsGrouped(const Client* c) const
{
    return GetGroups().GroupOf(c->context) != UmlEventGroups::GLOBAL;
}

uint64_t
UmlCalendar::NextEventNsFor(const Client* c) const
{
    uint64_t ts = NextEventTsFor(c->context);
    return ts == UINT64_MAX ? tt::TIME_NEVER : TsToNs(ts);
}

// ---------------------------------------------------------------- clients

uint64_t
UmlCalendar::Client::Id() const
{
    return conn->GetId();
}

std::string
UmlCalendar::Label(const Client* c) const
{
    return c->withoutId ? "client without id #" + std::to_string(c->withoutId)
                        : "client " + FormatClientId(c->Id());
}

std::string
UmlCalendar::Name(const Client* c) const
{
    // Before START a connection has no id; the id it may send later is not its name yet.
    std::string s = c->state == State::CONNECTED ? "a connection that sent no START" : Label(c);
    std::string process = c->process.Describe();
    return process.empty() ? s : s + " (" + process + ")";
}

void
UmlCalendar::Warn(const std::string& what)
{
    NS_LOG_WARN(what);
    m_warnings.push_back(what);
}

void
UmlCalendar::Fail(const std::string& kind, const Client* c, const std::string& what)
{
    bool hasClient = c && c->state != State::CONNECTED;
    std::string msg = c ? Name(c) + ": " + what : what;
    throw UmlError(kind, hasClient, hasClient ? c->Id() : 0, msg);
}

UmlCalendar::Client*
UmlCalendar::Find(uint64_t clientId) const
{
    // tt::ID_NONE names no single client: nothing is found by it.
    auto it = m_clients.find(ClientKey{clientId, 0});
    return it == m_clients.end() ? nullptr : it->second.get();
}

tt::ShmClient*
UmlCalendar::Record(Client* c)
{
    return UsesShm(c) ? c->page->Client(c->slot) : &c->local;
}

bool
UmlCalendar::UsesShm(Client* c)
{
    if (!c->shmKnown && c->state != State::CONNECTED)
    {
        c->shmKnown = true;
        c->shm = c->slot != 0 && c->page &&
                 (ShmLoad(&c->page->Client(c->slot)->capa) & tt::CAP_TIME_SHARE);
    }
    return c->shm;
}

void
UmlCalendar::Listen()
{
    if (m_admission.IsListening())
    {
        return;
    }
    NS_LOG_FUNCTION(this);
    m_admission.Listen(m_socketPath);
    m_admission.WatchForLateClients(GetEventLoop());
    m_noShm = std::make_unique<TtSharedMemory>(1, 0);
    m_messages.Open(m_logPath);
}

std::string
UmlCalendar::GetSocketPath() const
{
    return m_socketPath;
}

void
UmlCalendar::ExpectClients(uint32_t n)
{
    NS_LOG_FUNCTION(this << n);
    m_expected = n;
}

void
UmlCalendar::AdmitClients(uint32_t n)
{
    NS_LOG_FUNCTION(this << n);
    Listen();
    ServeClientsUntilAdmitted(m_admission.GetAdmitted() + n);
    SyncRequests();
}

uint64_t
UmlCalendar::AdmitProcess(int pid, double timeoutS)
{
    NS_LOG_FUNCTION(this << pid << timeoutS);
    Listen();
    std::set<const Client*> before;
    for (const auto& [id, c] : m_clients)
    {
        before.insert(c.get());
    }
    // Its socket tells nothing while it is not connected: its pidfd tells if it ended.
    ClientProcess child = ClientProcess::OfChild(pid);
    int pidfd = child.GetPidfd();
    if (pidfd >= 0)
    {
        m_loop->Watch(
            pidfd,
            [&child](uint32_t) {
                throw UmlError("crash",
                               false,
                               0,
                               "process " + child.Describe() + " " + child.Check().how +
                                   " before it joined the calendar");
            },
            false);
    }
    auto unwatch = [this, pidfd] {
        if (pidfd >= 0)
        {
            m_loop->Unwatch(pidfd);
        }
    };
    try
    {
        HoldForAdmission();
        m_admission.ServeUntilAdmitted(*m_loop, m_admission.GetAdmitted() + 1, timeoutS);
    }
    catch (...)
    {
        unwatch();
        throw;
    }
    unwatch();
    auto it = std::find_if(m_clients.begin(), m_clients.end(), [&before](const auto& entry) {
        return !before.count(entry.second.get());
    });
    if (it == m_clients.end())
    {
        throw UmlError("setup", false, 0, "no client was admitted for process " +
                                              std::to_string(pid));
    }
    Client* c = it->second.get();
    // Ours, not merely its socket's peer: the exact exit status (rule 9). Set on the client,
    // not registered by id, since a client without an id has none to register.
    m_loop->Unwatch(c->process.GetPidfd()); // the peer's, if its departure is being judged
    c->process = std::move(child);
    if (c->state == State::GONE)
    {
        // Its departure was seen before its pid was known: a crash says more.
        WatchProcess(c);
        SettleDepartures();
        Fail("setup", c, "left before its first WAIT");
    }
    SyncRequests();
    return c->Id();
}

namespace
{

/** Refuse -1 where a client is named by its id: every client without an id sends it. */
void
RequireId(uint64_t clientId, const char* what)
{
    if (clientId == tt::ID_NONE)
    {
        throw UmlError("setup",
                       false,
                       0,
                       std::string(what) +
                           " for client id -1: that is the id of every client without one "
                           "(time-travel=ext:PATH); give the client an id "
                           "(time-travel=ext:ID:PATH)");
    }
}

} // namespace

void
UmlCalendar::RegisterProcess(uint64_t clientId, int pid)
{
    RequireId(clientId, "cannot register a process");
    m_processes.Register(clientId, pid);
    if (Client* c = Find(clientId))
    {
        c->process = ClientProcess::OfChild(pid);
    }
}

void
UmlCalendar::SetClientContext(uint64_t clientId, uint32_t context)
{
    RequireId(clientId, "cannot set a node");
    m_clientContexts[clientId] = context;
    if (Client* c = Find(clientId))
    {
        c->context = context;
    }
}

void
UmlCalendar::SetInterruptFd(int fd)
{
    NS_LOG_FUNCTION(this << fd);
    if (fd < 0)
    {
        m_interrupt.Clear(m_loop.get());
        return;
    }
    m_interrupt.Set(GetEventLoop(), fd);
}

// ---------------------------------------------------------------- scheduling

void
UmlCalendar::SyncRequests()
{
    for (auto& [id, owned] : m_clients)
    {
        Client* c = owned.get();
        if (c->state != State::WAITING || c->inBatch)
        {
            continue;
        }
        tt::ShmClient* rec = Record(c);
        uint64_t want = tt::TIME_NEVER;
        // An idle UML asks for S64_MAX (shm: plus its offset, past S64_MAX): never.
        uint64_t req = ShmLoad(&rec->req_time);
        if ((ShmLoad(&rec->flags) & tt::FLAG_REQ_RUN) && req < tt::TIME_NEVER)
        {
            // Not before now, nor before the time its group reached.
            want = std::max(req, TsToNs(EarliestTsFor(c->context)));
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
            c->event =
                Insert(NsToTs(want), MakeEvent(&UmlCalendar::RunClient, this, c), c->context);
        }
    }
}

void
UmlCalendar::HoldForAdmission()
{
    // Nobody runs during admission: a starting client must not run ahead.
    for (auto& [group, page] : m_pages)
    {
        page->SetFreeUntil(CurrentNs());
    }
}

void
UmlCalendar::ServeClientsUntilAdmitted(uint32_t target)
{
    HoldForAdmission();
    m_admission.ServeUntilAdmitted(*m_loop, target, m_connectTimeout);
}

void
UmlCalendar::AcceptLateClients()
{
    if (m_admission.HasPending())
    {
        // A client that connects mid-run joins at the next hand-off, at the time then;
        // what waits may also be a probe that closes without START (then nobody joins).
        HoldForAdmission();
        m_admission.AdmitWaiting(*m_loop, m_connectTimeout);
        SyncRequests();
    }
}

void
UmlCalendar::SetFreeUntil(Client* c, uint64_t ns, bool confirm)
{
    c->grantNs = ns;
    if (c->shm)
    {
        c->page->SetFreeUntil(ns);
        return;
    }
    c->conn->Send(tt::OP_FREE_UNTIL, ns - std::min(ns, c->offset), true);
    if (confirm && c->state == State::RUNNING && !c->conn->IsPeerClosed())
    {
        // A guest blocked on a device reply polls its time socket and the device socket
        // together and leaves as soon as the reply is there: if both were readable, the
        // new free-until would sit unread while it runs past it. So it must have taken
        // the message (its ACK) before anything else is answered.
        uint32_t seq = c->conn->GetLastSeq();
        bool acked = m_loop->ServeInnerUntil(
            [c, seq] { return c->state != State::RUNNING || !c->conn->IsAckPending(seq); },
            YieldTimeoutMs());
        if (!acked)
        {
            Fail("hang", c, "did not acknowledge FREE_UNTIL");
        }
    }
}

void
UmlCalendar::LowerFreeUntilNs(uint32_t context, uint64_t ns)
{
    // Only what can reach the running client stops it (its own group's, or a global one),
    // and never before the time it reached: UML's time cannot go back.
    Client* r = m_running;
    if (!r || !Reaches(context, r->context))
    {
        return;
    }
    ns = std::max(ns, CurrentNs());
    uint64_t granted = r->grantNs;
    if (r->shm)
    {
        // A waiting client on its page may have lowered it already, as UML's
        // time_travel_ext_update_request does: never raise it again.
        granted = std::min(granted, r->page->GetFreeUntil());
    }
    if (ns < granted)
    {
        SetFreeUntil(r, ns, true);
    }
}

int64_t
UmlCalendar::YieldTimeoutMs() const
{
    return static_cast<int64_t>(m_yieldTimeout * 1000);
}

void
UmlCalendar::WaitForReply(int fd, uint64_t clientId)
{
    if (!GetEventLoop().WaitReadable(fd, YieldTimeoutMs()))
    {
        Fail("hang",
             Find(clientId),
             "did not answer its device within " + std::to_string(m_yieldTimeout) +
                 " s of wall time");
    }
    if (!m_running)
    {
        SyncRequests();
    }
}

void
UmlCalendar::ReportDeparture(uint64_t clientId)
{
    NS_LOG_FUNCTION(this << clientId);
    if (Client* c = Find(clientId))
    {
        WatchProcess(c);
    }
}

double
UmlCalendar::GetReplyTimeout() const
{
    return m_yieldTimeout;
}

double
UmlCalendar::GetMessageTimeout() const
{
    return m_messageTimeout;
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
    return m_messages.GetCount(op, fromClient);
}

uint64_t
UmlCalendar::GetHandoffCount() const
{
    return m_handoffs;
}

uint64_t
UmlCalendar::GetRunsAheadCount() const
{
    return m_runsAhead;
}

uint32_t
UmlCalendar::ComputeGroups()
{
    UpdateGroups(m_independentGroups);
    return GetNGroups();
}

bool
UmlCalendar::HasPendingEvents() const
{
    return HasEvents();
}

uint64_t
UmlCalendar::GetProgressNs() const
{
    return TsToNs(GetCommittedTs());
}

double
UmlCalendar::GetWallSeconds() const
{
    return m_wallSeconds;
}

bool
UmlCalendar::UsesSharedMemory() const
{
    return m_sharedMemory;
}

uint32_t
UmlCalendar::GetNGroups() const
{
    return GetGroups().GetNGroups();
}

std::vector<UmlClientRecord>
UmlCalendar::GetClientRecords() const
{
    static const char* const states[] = {"connected", "starting", "waiting", "running", "gone"};
    std::vector<UmlClientRecord> out;
    out.reserve(m_clients.size());
    for (const auto& [key, c] : m_clients)
    {
        out.push_back(UmlClientRecord{key.id,
                                      Label(c.get()),
                                      key.withoutId != 0,
                                      c->slot,
                                      c->shm,
                                      c->offset,
                                      c->runs,
                                      c->lastRunNs,
                                      states[static_cast<int>(c->state)],
                                      c->departure,
                                      c->process.GetPid(),
                                      c->process.GetCommand(),
                                      c->processEnd});
    }
    return out;
}

uint32_t
UmlCalendar::GetWarningCount() const
{
    return static_cast<uint32_t>(m_warnings.size());
}

std::string
UmlCalendar::GetWarning(uint32_t i) const
{
    return i < m_warnings.size() ? m_warnings[i] : "";
}

namespace
{

std::string
JsonString(const std::string& s)
{
    std::string out = "\"";
    for (unsigned char ch : s)
    {
        if (ch == '"' || ch == '\\')
        {
            out += '\\';
            out += static_cast<char>(ch);
        }
        else if (ch < 0x20)
        {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", ch);
            out += buf;
        }
        else
        {
            out += static_cast<char>(ch);
        }
    }
    return out + "\"";
}

} // namespace

std::string
UmlCalendar::GetSummaryJson() const
{
    std::ostringstream out;
    out.precision(17);
    out << "{\"sim_time_ns\": " << GetProgressNs() << ", \"wall_s\": " << m_wallSeconds
        << ", \"handoffs\": " << m_handoffs << ", \"events\": " << GetEventCount()
        << ", \"shared_memory\": " << (UsesSharedMemory() ? "true" : "false")
        << ", \"groups\": " << GetNGroups() << ", \"runs_ahead\": " << m_runsAhead
        << ", \"clients\": [";
    const char* sep = "";
    for (const UmlClientRecord& c : GetClientRecords())
    {
        // The id as the user knows it: -1 for the clients without one.
        out << sep << "{\"id\": " << FormatClientId(c.id) << ", \"name\": " << JsonString(c.name)
            << ", \"ordered_by\": " << (c.byConnection ? "\"connection\"" : "\"id\"")
            << ", \"slot\": " << c.slot
            << ", \"shm\": " << (c.shm ? "true" : "false") << ", \"offset_ns\": " << c.offsetNs
            << ", \"runs\": " << c.runs << ", \"last_run_ns\": " << c.lastRunNs
            << ", \"state\": " << JsonString(c.state)
            << ", \"departure\": " << JsonString(c.departure) << ", \"pid\": " << c.pid
            << ", \"command\": " << JsonString(c.command)
            << ", \"process\": " << JsonString(c.process) << "}";
        sep = ", ";
    }
    out << "], \"warnings\": [";
    sep = "";
    for (const std::string& w : m_warnings)
    {
        out << sep << JsonString(w);
        sep = ", ";
    }
    out << "], \"messages\": {";
    sep = "";
    for (uint32_t op = 0; op <= tt::OP_COUNT; op++) // the last counts unknown ops
    {
        uint64_t to = GetMessageCount(op, false);
        uint64_t from = GetMessageCount(op, true);
        if (to + from)
        {
            out << sep << JsonString(tt::OpName(op)) << ": {\"from_clients\": " << from
                << ", \"to_clients\": " << to << "}";
            sep = ", ";
        }
    }
    out << "}}";
    return out.str();
}

void
UmlCalendar::Shutdown()
{
    // Everything the calendar holds goes: descriptors, shared pages, the poll sets.
    m_interrupt.Clear(nullptr);
    m_loop.reset();
    for (auto& [id, c] : m_clients)
    {
        c->conn->Close();
        c->process.Release();
        if (c->state != State::GONE)
        {
            c->state = State::GONE;
            if (c->departure.empty())
            {
                c->departure = "closed by the calendar";
            }
        }
    }
    m_unnamed.clear();
    m_admission.Close();
    m_pages.clear();
    m_noShm.reset();
    m_messages.Close();
    m_running = nullptr;
}

} // namespace ns3
