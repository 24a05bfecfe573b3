// UmlCalendar, its second part: what each client message means (one handler per request)
// and how a client leaves. The event list, the hand-off policy and the results are in
// uml-calendar.cc, a run and its batch in uml-calendar-runs.cc.
#include "uml-calendar.h"

#include "ns3/log.h"

#include <algorithm>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlCalendarClients");

// ---------------------------------------------------------------- clients' messages

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
UmlCalendar::OnAccepted(int fd)
{
    auto c = std::make_unique<Client>();
    Client* raw = c.get();
    // Learnt now, while the peer is surely there, so its end can be told (rule 9).
    c->process = ClientProcess::OfPeer(fd);
    c->conn = std::make_unique<TtConnection>(
        fd,
        m_messages,
        [this, raw](const std::string& kind, const std::string& what) { Fail(kind, raw, what); },
        *m_loop,
        m_messageTimeout);
    m_unnamed.push_back(std::move(c));
    m_loop->Watch(fd, [this, raw](uint32_t) { OnClientReadable(raw); }, true);
}

std::unique_ptr<UmlCalendar::Client>
UmlCalendar::TakeUnnamed(Client* c)
{
    auto it = std::find_if(m_unnamed.begin(), m_unnamed.end(), [c](const auto& owned) {
        return owned.get() == c;
    });
    std::unique_ptr<Client> owned = std::move(*it);
    m_unnamed.erase(it);
    return owned;
}

void
UmlCalendar::Forget(Client* c)
{
    NS_LOG_INFO("a connection closed without START: forgotten");
    m_loop->Unwatch(c->conn->GetFd());
    TakeUnnamed(c); // destroyed here: its socket closes, c is gone
}

void
UmlCalendar::OnClientReadable(Client* c)
{
    tt::Message msg;
    switch (c->conn->Receive(msg))
    {
    case TtConnection::Read::NOTHING:
        return;
    case TtConnection::Read::CLOSED:
        Depart(c, false);
        return;
    case TtConnection::Read::CLOSED_MID_MESSAGE:
        Depart(c, true);
        return;
    case TtConnection::Read::MESSAGE:
        HandleMessage(c, msg);
        return;
    }
}

uint16_t
UmlCalendar::FreeSlot(const TtSharedMemory* page) const
{
    std::vector<bool> used(page->GetMaxClients() + 1, false);
    for (auto& [cid, other] : m_clients)
    {
        if (other->state != State::GONE && other->slot && other->page == page)
        {
            used[other->slot] = true;
        }
    }
    for (uint16_t s = 1; s <= page->GetMaxClients(); ++s)
    {
        if (!used[s])
        {
            return s;
        }
    }
    return 0;
}

void
UmlCalendar::HandleStart(Client* c, const tt::Message& msg)
{
    uint64_t id = msg.time;
    ClientKey key{id, 0};
    if (id == tt::ID_NONE)
    {
        // Nothing but their connection orders the clients without an id (as in usfstl's
        // controller): after all others, in the order they were admitted (rule 3).
        key.withoutId = ++m_withoutId;
    }
    else if (Client* existing = Find(id); existing && existing->state != State::GONE)
    {
        Fail("protocol",
             nullptr,
             "two clients sent START with id " + FormatClientId(id) +
                 ": give each client its own id (time-travel=ext:ID:PATH) so the order "
                 "of simultaneous events is fixed");
    }
    // Move the client from the unnamed list into the ordered map.
    std::unique_ptr<Client> owned = TakeUnnamed(c);
    c->withoutId = key.withoutId;
    c->conn->SetId(id,
                   key.withoutId ? FormatClientId(id) + "#" + std::to_string(key.withoutId)
                                 : FormatClientId(id));
    c->state = State::STARTING;
    c->offset = CurrentNs();
    if (!key.withoutId)
    {
        // What its owner said about it (Simulation: its child, its node) is by id.
        if (int pid = m_processes.GetPid(id); pid > 0)
        {
            c->process = ClientProcess::OfChild(pid);
        }
        if (auto it = m_clientContexts.find(id); it != m_clientContexts.end())
        {
            c->context = it->second;
        }
        m_loop->SetOwner(c->conn->GetFd(), id); // held with its devices' sockets
    }
    m_clients[key] = std::move(owned);
    c->conn->LogReceived(msg);
    if (key.withoutId > 1)
    {
        uint32_t others = key.withoutId - 1;
        Warn(Name(c) + " sent START without an id (-1, as UML's time-travel=ext:PATH and "
                       "wmediumd do), as " +
             (others == 1 ? std::string("another client") : std::to_string(others) + " others") +
             " did: the clients without an id come after all others at the same time and, "
             "among themselves, in the order they connected, which may change from run to "
             "run; give each its own id (time-travel=ext:ID:PATH) for a repeatable order");
    }

    int memfd = m_noShm->GetFd();
    uint64_t ackTime = 0;
    if (m_sharedMemory)
    {
        TtSharedMemory* page = PageFor(c->context);
        c->slot = FreeSlot(page);
        if (c->slot)
        {
            c->page = page;
            page->ResetClient(c->slot, id);
            memfd = page->GetFd();
            ackTime = c->slot;
            page->SetCurrentTime(CurrentNs());
        }
    }
    NS_LOG_INFO(Name(c) << " started at " << c->offset << " ns, slot " << c->slot << " of page "
                        << c->page << " (context " << c->context << ")");
    c->conn->ReplyStart(msg.seq, ackTime, memfd, m_messages.GetFd());
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
    TtConnection& conn = *c->conn;
    conn.LogReceived(msg);
    UsesShm(c);
    switch (msg.op)
    {
    case tt::OP_ACK:
        conn.TakeAck(msg.seq);
        return;
    case tt::OP_START:
        Fail("protocol", c, "sent START twice");
    case tt::OP_REQUEST:
        HandleRequest(c, msg);
        return;
    case tt::OP_WAIT:
        HandleWait(c, msg);
        return;
    case tt::OP_GET:
        conn.Ack(msg.seq, CurrentNs() - std::min(c->offset, CurrentNs()));
        return;
    case tt::OP_UPDATE:
        HandleUpdate(c, msg);
        return;
    case tt::OP_GET_TOD:
        conn.Ack(msg.seq, m_todEpoch + CurrentNs());
        return;
    case tt::OP_BROADCAST:
        HandleBroadcast(c, msg);
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
UmlCalendar::HandleRequest(Client* c, const tt::Message& msg)
{
    // Only recorded: it becomes an event at the next fixed point (docs/DESIGN.md rule 6).
    uint64_t req = msg.time + c->offset;
    tt::ShmClient* rec = Record(c);
    ShmStore(&rec->req_time, req);
    ShmStore(&rec->flags, ShmLoad(&rec->flags) | tt::FLAG_REQ_RUN);
    if (c->state == State::WAITING && req < tt::TIME_NEVER)
    {
        // Interrupted while another client runs (a device it serves was kicked): that one
        // must stop there, and know it, before this client is answered (rule 2).
        LowerFreeUntilNs(c->context, req);
    }
    c->conn->Ack(msg.seq, 0);
}

void
UmlCalendar::HandleWait(Client* c, const tt::Message& msg)
{
    if (c->state == State::WAITING)
    {
        Fail("protocol", c, "sent WAIT while already waiting");
    }
    if (c->state == State::STARTING)
    {
        m_admission.NoteAdmitted();
    }
    c->state = State::WAITING;
    if (!c->shm)
    {
        c->conn->Ack(msg.seq, 0);
    }
}

void
UmlCalendar::HandleUpdate(Client* c, const tt::Message& msg)
{
    if (c->state != State::RUNNING)
    {
        if (c->state == State::STARTING && msg.time + c->offset == CurrentNs())
        {
            c->conn->Ack(msg.seq, 0);
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
    if (t > c->grantNs)
    {
        Fail("protocol",
             c,
             "ran to " + std::to_string(t) + " ns, past its free-until " +
                 std::to_string(c->grantNs) + " ns");
    }
    c->runTs = NsToTs(t);
    if (c->page && !c->shm)
    {
        // A shared-memory client it interrupts reads "now" from the page.
        c->page->SetCurrentTime(t);
    }
    c->conn->Ack(msg.seq, 0);
}

void
UmlCalendar::HandleBroadcast(Client* c, const tt::Message& msg)
{
    for (auto& [id, other] : m_clients)
    {
        if (other.get() != c && other->state != State::GONE &&
            other->state != State::CONNECTED)
        {
            other->conn->Send(tt::OP_BROADCAST, msg.time, true);
        }
    }
    c->conn->Ack(msg.seq, 0);
}

void
UmlCalendar::WatchProcess(Client* c)
{
    int pidfd = c->process.GetPidfd();
    if (m_loop->IsWatched(pidfd))
    {
        return; // watched already
    }
    ClientProcess::End end = c->process.Check();
    if (pidfd < 0 || end.how != ClientProcess::STILL_RUNS)
    {
        ConcludeProcess(c, end);
        return;
    }
    // Its socket closes before it has ended: the verdict comes when its pidfd says so, or
    // after the grace, and nobody waits for it meanwhile.
    NS_LOG_LOGIC(Name(c) << ": its process has not ended yet");
    auto graceOver =
        EventLoop::Clock::now() + std::chrono::milliseconds(ClientProcess::EXIT_GRACE_MS);
    m_loop->Watch(
        pidfd,
        [this, c](uint32_t) { ConcludeProcess(c, c->process.Check()); },
        true);
    m_loop->SetDeadline(pidfd, graceOver, [this, c] { ConcludeProcess(c, c->process.Check()); });
}

void
UmlCalendar::ConcludeProcess(Client* c, const ClientProcess::End& end)
{
    m_loop->Unwatch(c->process.GetPidfd());
    if (end.abnormal)
    {
        c->departure = end.how;
        c->processEnd = end.how;
        Fail("crash", c, "died: " + end.how);
    }
    if (c->state != State::GONE)
    {
        return; // a device saw it go first: its time socket closing tells the rest
    }
    c->processEnd = end.how;
    std::string how = c->departure;
    if (!end.how.empty())
    {
        how += "; its process (" + c->process.Describe() + "): " + end.how;
        NS_LOG_INFO(Name(c) << ": its process: " << end.how);
    }
    c->process.Release();
    if (end.how == ClientProcess::STILL_RUNS)
    {
        Warn(Name(c) + " " + c->departure +
             ": it closed its socket, but its process still runs (a departure, not a "
             "crash)");
    }
    m_clientDepartedTrace(c->Id(), how);
}

void
UmlCalendar::SettleDepartures()
{
    // The run is over: the processes not judged yet get the rest of their grace, all at
    // once (it costs the slowest of them), so that the summary has every verdict.
    auto judged = [this] {
        for (const auto& [key, c] : m_clients)
        {
            if (c->state == State::GONE && m_loop->IsWatched(c->process.GetPidfd()))
            {
                return false;
            }
        }
        return true;
    };
    m_loop->ServeInnerUntil(judged, 2 * ClientProcess::EXIT_GRACE_MS);
}

void
UmlCalendar::Depart(Client* c, bool midMessage)
{
    if (c->state == State::GONE)
    {
        return;
    }
    if (c->state == State::CONNECTED)
    {
        // Still nameless (Fail needs it so): a few bytes are an error, a connection that
        // closes without a byte (a readiness probe) is forgotten, and admission goes on.
        if (midMessage)
        {
            Fail("protocol", c, "disconnected in the middle of its first message");
        }
        Forget(c);
        return;
    }
    m_loop->Unwatch(c->conn->GetFd());
    c->conn->Close();
    State was = c->state;
    c->state = State::GONE;
    if (c->event.GetUid() != EventId::UID::INVALID)
    {
        Remove(c->event);
        c->event = EventId();
        c->scheduledNs = tt::TIME_NEVER;
    }
    if (c->slot && c->page)
    {
        c->page->ResetClient(c->slot, 0);
    }
    if (was == State::STARTING)
    {
        m_admission.NoteAdmitted(); // it will never yield: do not wait for it
    }
    c->departure = was == State::RUNNING    ? "left while running"
                   : was == State::STARTING ? "left before its first WAIT"
                                            : "left while waiting";
    NS_LOG_INFO(Name(c) << " " << c->departure);
    if (midMessage)
    {
        Fail("protocol", c, "disconnected in the middle of a message");
    }
    WatchProcess(c);
}

} // namespace ns3
