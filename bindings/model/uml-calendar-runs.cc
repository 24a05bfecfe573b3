// UmlCalendar, its third part: a guest's run, and the batch of guests of other groups that
// run beside it (docs/DESIGN.md rule 1). The event list, the hand-off policy's other parts
// and the results are in uml-calendar.cc, the clients' messages in uml-calendar-clients.cc.
#include "uml-calendar.h"

#include "ns3/log.h"

#include <algorithm>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlCalendarRuns");

void
UmlCalendar::RunClient(Client* c)
{
    c->event = EventId();
    c->scheduledNs = tt::TIME_NEVER;
    // The guests of other groups whose turn comes before anything could reach them run in
    // the same batch (docs/DESIGN.md rule 1): at most ParallelRuns of them at once, their
    // sockets held, and each is served in its turn, so the schedule does not depend on
    // how many ran at once.
    std::vector<Client*> batch = TakeBatch(c);
    StartRun(c, CurrentNs());
    // Members [next, started) have been sent RUN; next is served (or c, before it).
    std::size_t started = 0;
    std::size_t next = 0;
    auto startAhead = [&](std::size_t inFlight) {
        while (started < batch.size() && inFlight < m_parallelRuns)
        {
            Client* h = batch[started++];
            StartRun(h, h->scheduledNs);
            m_runsAhead++;
            inFlight++;
        }
    };
    startAhead(1); // c
    ServeRun(c);
    for (; next < batch.size(); next++)
    {
        Client* h = batch[next];
        if (next == started)
        {
            StartRun(h, h->scheduledNs);
            started++;
        }
        m_loop->Release(h->Id());
        startAhead(started - next);
        SetContext(h->context);
        ServeRun(h);
    }
    SetContext(c->context);
    AcceptLateClients();
}

std::vector<UmlCalendar::Client*>
UmlCalendar::TakeBatch(Client* c)
{
    std::vector<Client*> batch;
    if (!IsGrouped(c))
    {
        return batch;
    }
    const UmlEventGroups& groups = GetGroups();
    uint64_t globalTs = groups.NextGlobalTs();
    uint32_t own = groups.GroupOf(c->context);
    for (auto& [id, owned] : m_clients)
    {
        Client* h = owned.get();
        if (h == c || h->state != State::WAITING || h->event.GetUid() == EventId::UID::INVALID ||
            !IsGrouped(h) || h->event.GetTs() >= globalTs)
        {
            continue;
        }
        // Its run must be the first event of its group (nothing of its own comes before it,
        // and so no other member is of its group), and not of c's group.
        uint32_t group = groups.GroupOf(h->context);
        if (group == own || !groups.IsFirst(h->event.GetTs(), h->event.GetUid(), group))
        {
            continue;
        }
        h->inBatch = true;
        batch.push_back(h);
    }
    // In the order of their events: (time, insertion).
    std::sort(batch.begin(), batch.end(), [](const Client* a, const Client* b) {
        return std::make_pair(a->event.GetTs(), a->event.GetUid()) <
               std::make_pair(b->event.GetTs(), b->event.GetUid());
    });
    for (Client* h : batch)
    {
        h->scheduledNs = TsToNs(h->event.GetTs());
        Remove(h->event);
        h->event = EventId();
        m_loop->Hold(h->Id());
    }
    return batch;
}

void
UmlCalendar::StartRun(Client* c, uint64_t now)
{
    c->scheduledNs = tt::TIME_NEVER;
    c->inBatch = false;
    tt::ShmClient* rec = Record(c);
    ShmStore(&rec->flags, ShmLoad(&rec->flags) & ~tt::FLAG_REQ_RUN);
    c->state = State::RUNNING;
    c->runs++;
    c->lastRunNs = now;
    m_handoffs++;
    c->runTs = NsToTs(now);
    NS_LOG_LOGIC("run " << FormatClientId(c->Id()) << " at " << now << " ns");
    m_clientRunTrace(c->Id(), NanoSeconds(now));
    if (c->page)
    {
        // Its time (a message-mode client's too: a shared-memory client it interrupts reads
        // "now" there) and its slot, whose capability tells the others whether to post
        // their requests in the page or send them.
        c->page->SetCurrentTime(now);
        c->page->SetRunningId(c->slot);
    }
    // In message mode UML forgot its free-until at WAIT: grant it again with every RUN.
    uint64_t freeUntil = NextEventNsFor(c);
    if (IsGrouped(c))
    {
        freeUntil = std::min(freeUntil, now + static_cast<uint64_t>(m_maxAhead.GetNanoSeconds()));
    }
    if (m_maxFreeRun.IsStrictlyPositive())
    {
        freeUntil = std::min(freeUntil, now + static_cast<uint64_t>(m_maxFreeRun.GetNanoSeconds()));
    }
    NS_LOG_LOGIC("client " << FormatClientId(c->Id()) << " free until " << freeUntil << " ns");
    // Its own time while they go out (the message log's clock), whoever is being served.
    Client* served = m_running;
    m_running = c;
    // Sent before RUN on the same socket: the waiting guest reads them in order.
    SetFreeUntil(c, freeUntil, false);
    c->conn->Send(tt::OP_RUN, now - c->offset, !c->shm);
    m_running = served;
}

void
UmlCalendar::ServeRun(Client* c)
{
    m_running = c;
    uint64_t now = TsToNs(c->runTs);
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
    if (!c->shm || c->state == State::WAITING)
    {
        // Commit the time it reached: its group's clock, or (without groups) everybody's;
        // the events of other groups may still lie before it.
        uint64_t reached = CurrentTs();
        if (IsGrouped(c))
        {
            AdvanceGroupClock(c->context, reached);
        }
        else
        {
            SetCommittedTs(reached);
        }
    }
    m_running = nullptr;
    if (c->page)
    {
        // Its group's "now": the time it reached, if that is later than everybody's.
        c->page->SetRunningId(0);
        c->page->SetCurrentTime(TsToNs(EarliestTsFor(c->context)));
    }
    SyncRequests();
}

} // namespace ns3
