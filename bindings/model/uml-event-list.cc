#include "uml-event-list.h"

#include "tt-protocol.h"

#include "ns3/event-impl.h"
#include "ns3/log.h"
#include "ns3/ptr.h"
#include "ns3/simulator.h"

#include <algorithm>
#include <vector>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlEventList");
NS_OBJECT_ENSURE_REGISTERED(UmlEventList);

TypeId
UmlEventList::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::UmlEventList").SetParent<SimulatorImpl>().SetGroupName("Uml");
    return tid;
}

UmlEventList::UmlEventList()
    : m_eventsWithContextEmpty(true),
      m_stop(false),
      m_uid(EventId::UID::VALID),
      m_currentUid(EventId::UID::INVALID),
      m_currentTs(0),
      m_currentContext(Simulator::NO_CONTEXT),
      m_eventCount(0),
      m_unscheduledEvents(0),
      m_mainThreadId(std::this_thread::get_id())
{
    NS_LOG_FUNCTION(this);
}

UmlEventList::~UmlEventList()
{
}

void
UmlEventList::DoDispose()
{
    ProcessEventsWithContext();
    while (m_events && !m_events->IsEmpty())
    {
        Scheduler::Event next = m_events->RemoveNext();
        next.impl->Unref();
    }
    m_events = nullptr;
    m_groups.Clear();
    SimulatorImpl::DoDispose();
}

void
UmlEventList::Destroy()
{
    NS_LOG_FUNCTION(this);
    while (!m_destroyEvents.empty())
    {
        Ptr<EventImpl> ev = m_destroyEvents.front().PeekEventImpl();
        m_destroyEvents.pop_front();
        if (!ev->IsCancelled())
        {
            ev->Invoke();
        }
    }
}

void
UmlEventList::SetScheduler(ObjectFactory schedulerFactory)
{
    NS_LOG_FUNCTION(this << schedulerFactory);
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
UmlEventList::GetSystemId() const
{
    return 0;
}

bool
UmlEventList::IsFinished() const
{
    return m_events->IsEmpty() || m_stop;
}

void
UmlEventList::ProcessEventsWithContext()
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
UmlEventList::ProcessOneEvent()
{
    Scheduler::Event next = m_events->RemoveNext();
    PreEventHook(EventId(next.impl, next.key.m_ts, next.key.m_context, next.key.m_uid));
    NS_ASSERT(next.key.m_ts >= m_currentTs);
    m_groups.Remove(next.key.m_ts, next.key.m_uid, next.key.m_context);
    m_groups.Advance(next.key.m_context, next.key.m_ts);
    m_unscheduledEvents--;
    m_eventCount++;
    m_currentTs = next.key.m_ts;
    m_currentContext = next.key.m_context;
    m_currentUid = next.key.m_uid;
    EventStarting();
    // The list's reference, released however the event ends: a guest's error thrown from its
    // run stops the run, and must not leak the event (found by fuzz/tt-calendar-fuzzer).
    Ptr<EventImpl> running(next.impl, false);
    running->Invoke();
    // What is scheduled between events (from Python, at a stop) belongs to no node: it is
    // global and reaches every group (docs/DESIGN.md rule 2).
    m_currentContext = Simulator::NO_CONTEXT;
    ProcessEventsWithContext();
}

void
UmlEventList::Stop()
{
    m_stop = true;
}

EventId
UmlEventList::Stop(const Time& delay)
{
    return Simulator::Schedule(delay, &Simulator::Stop);
}

EventId
UmlEventList::Insert(uint64_t ts, EventImpl* event, uint32_t context)
{
    // A group that ran ahead cannot be given an event in its past (docs/DESIGN.md rule 2):
    // what reaches it from outside (Python at a stop) happens at its own time.
    ts = std::max(ts, m_groups.GetClock(context));
    Scheduler::Event ev;
    ev.impl = event;
    ev.key.m_ts = ts;
    ev.key.m_context = context;
    ev.key.m_uid = m_uid;
    m_uid++;
    m_unscheduledEvents++;
    m_events->Insert(ev);
    m_groups.Add(ts, ev.key.m_uid, context);
    EventInserted(ts, context);
    return EventId(event, ev.key.m_ts, ev.key.m_context, ev.key.m_uid);
}

EventId
UmlEventList::Schedule(const Time& delay, EventImpl* event)
{
    NS_ASSERT_MSG(std::this_thread::get_id() == m_mainThreadId,
                  "Simulator::Schedule from another thread: use ScheduleWithContext");
    NS_ASSERT_MSG(delay.IsPositive(), "UmlEventList::Schedule(): negative delay");
    Time tAbsolute = delay + TimeStep(CurrentTs());
    return Insert(static_cast<uint64_t>(tAbsolute.GetTimeStep()), event, GetContext());
}

void
UmlEventList::ScheduleWithContext(uint32_t context, const Time& delay, EventImpl* event)
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
UmlEventList::ScheduleNow(EventImpl* event)
{
    return Schedule(Time(0), event);
}

EventId
UmlEventList::ScheduleDestroy(EventImpl* event)
{
    EventId id(Ptr<EventImpl>(event, false), m_currentTs, 0xffffffff, EventId::UID::DESTROY);
    m_destroyEvents.push_back(id);
    m_uid++;
    return id;
}

Time
UmlEventList::Now() const
{
    return TimeStep(CurrentTs());
}

Time
UmlEventList::GetDelayLeft(const EventId& id) const
{
    if (IsExpired(id))
    {
        return TimeStep(0);
    }
    return TimeStep(id.GetTs() - CurrentTs());
}

void
UmlEventList::Remove(const EventId& id)
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
    m_groups.Remove(event.key.m_ts, event.key.m_uid, event.key.m_context);
    event.impl->Cancel();
    event.impl->Unref();
    m_unscheduledEvents--;
}

void
UmlEventList::Cancel(const EventId& id)
{
    if (!IsExpired(id))
    {
        id.PeekEventImpl()->Cancel();
    }
}

bool
UmlEventList::IsExpired(const EventId& id) const
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
UmlEventList::GetMaximumSimulationTime() const
{
    return TimeStep(0x7fffffffffffffffLL);
}

uint32_t
UmlEventList::GetContext() const
{
    return m_currentContext;
}

uint64_t
UmlEventList::GetEventCount() const
{
    return m_eventCount;
}

uint64_t
UmlEventList::TsToNs(uint64_t ts)
{
    return static_cast<uint64_t>(TimeStep(ts).GetNanoSeconds());
}

uint64_t
UmlEventList::NsToTs(uint64_t ns)
{
    if (ns >= tt::TIME_NEVER)
    {
        return tt::TIME_NEVER;
    }
    return static_cast<uint64_t>(NanoSeconds(static_cast<int64_t>(ns)).GetTimeStep());
}

uint64_t
UmlEventList::CurrentTs() const
{
    return m_currentTs;
}

void
UmlEventList::EventInserted(uint64_t ts, uint32_t context)
{
}

void
UmlEventList::EventStarting()
{
}

bool
UmlEventList::HasEvents() const
{
    return !m_events->IsEmpty();
}

uint64_t
UmlEventList::NextEventTs() const
{
    return m_events->PeekNext().key.m_ts;
}

void
UmlEventList::UpdateGroups(bool enabled)
{
    if (!enabled)
    {
        m_groups.Clear();
        return;
    }
    if (!m_groups.Compute() || !m_groups.IsActive())
    {
        return;
    }
    // The index starts empty: every pending event goes in again (the scheduler's order,
    // by time and uid, is unchanged).
    std::vector<Scheduler::Event> pending;
    while (!m_events->IsEmpty())
    {
        pending.push_back(m_events->RemoveNext());
    }
    for (const auto& ev : pending)
    {
        m_events->Insert(ev);
        m_groups.Add(ev.key.m_ts, ev.key.m_uid, ev.key.m_context);
    }
}

const UmlEventGroups&
UmlEventList::GetGroups() const
{
    return m_groups;
}

uint64_t
UmlEventList::NextEventTsFor(uint32_t context) const
{
    uint32_t group = m_groups.GroupOf(context);
    if (group == UmlEventGroups::GLOBAL)
    {
        return m_events->IsEmpty() ? UINT64_MAX : NextEventTs();
    }
    return m_groups.NextTs(group);
}

bool
UmlEventList::Reaches(uint32_t eventContext, uint32_t actorContext) const
{
    return m_groups.Reaches(eventContext, m_groups.GroupOf(actorContext));
}

uint64_t
UmlEventList::EarliestTsFor(uint32_t context) const
{
    return std::max(CurrentTs(), m_groups.GetClock(context));
}

void
UmlEventList::AdvanceGroupClock(uint32_t context, uint64_t ts)
{
    m_groups.Advance(context, ts);
}

void
UmlEventList::SetContext(uint32_t context)
{
    m_currentContext = context;
}

bool
UmlEventList::IsStopped() const
{
    return m_stop;
}

void
UmlEventList::StartRunning()
{
    m_mainThreadId = std::this_thread::get_id();
    m_stop = false;
}

uint64_t
UmlEventList::GetCommittedTs() const
{
    return m_currentTs.load(std::memory_order_relaxed);
}

void
UmlEventList::SetCommittedTs(uint64_t ts)
{
    m_currentTs = ts;
}

} // namespace ns3
