// ns-3's event list as DefaultSimulatorImpl keeps it, for the calendar to derive from.
#ifndef NS3_UML_UML_EVENT_LIST_H
#define NS3_UML_UML_EVENT_LIST_H

#include "event-groups.h"

#include "ns3/event-id.h"
#include "ns3/nstime.h"
#include "ns3/object-factory.h"
#include "ns3/ptr.h"
#include "ns3/scheduler.h"
#include "ns3/simulator-impl.h"

#include <atomic>
#include <list>
#include <mutex>
#include <thread>

namespace ns3
{

/**
 * The (time, insertion) ordered event list of DefaultSimulatorImpl (docs/DESIGN.md rule 3),
 * copied as ns-3's own SimulatorImpl variants copy it, with the hooks a calendar needs:
 * its own idea of "now" while a guest runs, a look at every inserted event (rule 2) and at
 * every event about to run. Run() is the derived class's. With independent groups
 * (UpdateGroups) it also knows which events can reach which actors (UmlEventGroups).
 */
class UmlEventList : public SimulatorImpl
{
  public:
    static TypeId GetTypeId();

    UmlEventList();
    ~UmlEventList() override;

    // SimulatorImpl
    void Destroy() override;
    bool IsFinished() const override;
    void Stop() override;
    EventId Stop(const Time& delay) override;
    EventId Schedule(const Time& delay, EventImpl* event) override;
    void ScheduleWithContext(uint32_t context, const Time& delay, EventImpl* event) override;
    EventId ScheduleNow(EventImpl* event) override;
    EventId ScheduleDestroy(EventImpl* event) override;
    void Remove(const EventId& id) override;
    void Cancel(const EventId& id) override;
    bool IsExpired(const EventId& id) const override;
    Time Now() const override;
    Time GetDelayLeft(const EventId& id) const override;
    Time GetMaximumSimulationTime() const override;
    void SetScheduler(ObjectFactory schedulerFactory) override;
    uint32_t GetSystemId() const override;
    uint32_t GetContext() const override;
    uint64_t GetEventCount() const override;

  protected:
    void DoDispose() override;

    /** "Now" in time steps; by default the time of the last event run. */
    virtual uint64_t CurrentTs() const;
    /** An event was inserted at ts with this context (in the main thread). */
    virtual void EventInserted(uint64_t ts, uint32_t context);
    /** The next event is about to run; Now() is its time. */
    virtual void EventStarting();

    /** Time steps to ns, and ns (up to tt::TIME_NEVER: never) to time steps. */
    static uint64_t TsToNs(uint64_t ts);
    static uint64_t NsToTs(uint64_t ns);

    EventId Insert(uint64_t ts, EventImpl* event, uint32_t context);
    void ProcessOneEvent();
    /** Move events scheduled from other threads into the list. */
    void ProcessEventsWithContext();
    bool HasEvents() const;
    /** The time of the next event, in time steps (the list must not be empty). */
    uint64_t NextEventTs() const;

    /** Group the nodes anew (enabled) or stop grouping; pending events are re-indexed. */
    void UpdateGroups(bool enabled);
    const UmlEventGroups& GetGroups() const;
    /** The next event that can reach an actor with this context, in time steps;
     * UINT64_MAX for none. Without groups: the next event of anybody. */
    uint64_t NextEventTsFor(uint32_t context) const;
    /** Whether an event with eventContext can reach an actor with actorContext. */
    bool Reaches(uint32_t eventContext, uint32_t actorContext) const;
    /** The earliest time an event for this context may have: "now", or its group's clock
     * when that is later (a group runs ahead of the others). */
    uint64_t EarliestTsFor(uint32_t context) const;
    /** An actor with this context reached ts: its group's clock moves there. */
    void AdvanceGroupClock(uint32_t context, uint64_t ts);
    /** The context of what runs now (an actor served outside its own event). */
    void SetContext(uint32_t context);
    bool IsStopped() const;
    /** Run() starts: clear Stop, and Run's thread is now the main thread. */
    void StartRunning();
    /** The time of the last event run (or committed by SetCommittedTs). */
    uint64_t GetCommittedTs() const;
    void SetCommittedTs(uint64_t ts);

  private:
    Ptr<Scheduler> m_events;
    UmlEventGroups m_groups;
    std::list<EventId> m_destroyEvents;

    struct EventWithContext
    {
        uint32_t context;
        uint64_t timestamp;
        EventImpl* event;
    };

    std::list<EventWithContext> m_eventsWithContext;
    bool m_eventsWithContextEmpty;
    std::mutex m_eventsWithContextMutex;
    bool m_stop;
    uint32_t m_uid;
    uint32_t m_currentUid;
    // Atomic so that a progress display may read it from another thread during Run().
    std::atomic<uint64_t> m_currentTs;
    uint32_t m_currentContext;
    uint64_t m_eventCount;
    int m_unscheduledEvents;
    std::thread::id m_mainThreadId;
};

} // namespace ns3

#endif
