#include "event-loop.h"

#include "ns3/fatal-error.h"
#include "ns3/log.h"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <poll.h>
#include <sys/epoll.h>
#include <system_error>
#include <unistd.h>
#include <vector>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlEventLoop");

namespace
{
// Tokens below this are reserved: 1 = a waited fd.
constexpr uint64_t TOKEN_WAITED = 1;
constexpr uint64_t TOKEN_FIRST = 2;

// Milliseconds until `until` for epoll_wait, rounded up (a wait that ends just before it
// would spin), -1 for never.
int
WaitMs(EventLoop::Clock::time_point until)
{
    if (until == EventLoop::Clock::time_point::max())
    {
        return -1;
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(until - EventLoop::Clock::now());
    return static_cast<int>(std::clamp<int64_t>(left.count(), 0, INT_MAX));
}

void
EpollAdd(int epfd, int fd, uint64_t token)
{
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = token;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
    {
        throw std::system_error(errno, std::generic_category(), "epoll_ctl add");
    }
}
} // namespace

EventLoop::EventLoop()
    : m_nextToken(TOKEN_FIRST),
      m_deadlines(0)
{
    m_inner = epoll_create1(EPOLL_CLOEXEC);
    m_outer = epoll_create1(EPOLL_CLOEXEC);
    if (m_inner < 0 || m_outer < 0)
    {
        throw std::system_error(errno, std::generic_category(), "epoll_create1");
    }
}

EventLoop::~EventLoop()
{
    close(m_outer);
    close(m_inner);
}

void
EventLoop::Add(uint64_t token, const Entry& entry)
{
    // An inner descriptor is in both sets: a top-level wait is one epoll_wait (one per
    // hand-off), not the outer set's and then the nested inner set's.
    EpollAdd(m_outer, entry.fd, token);
    if (entry.inner)
    {
        EpollAdd(m_inner, entry.fd, token);
    }
}

void
EventLoop::Del(const Entry& entry)
{
    epoll_ctl(m_outer, EPOLL_CTL_DEL, entry.fd, nullptr);
    if (entry.inner)
    {
        epoll_ctl(m_inner, EPOLL_CTL_DEL, entry.fd, nullptr);
    }
}

void
EventLoop::Watch(int fd, Handler handler, bool inner, uint64_t owner)
{
    NS_LOG_FUNCTION(this << fd << inner << owner);
    if (m_tokens.count(fd))
    {
        Unwatch(fd);
    }
    uint64_t token = m_nextToken++;
    Entry entry{fd, inner, std::move(handler), owner, false, {}, nullptr};
    Add(token, entry);
    m_entries[token] = std::move(entry);
    m_tokens[fd] = token;
}

void
EventLoop::SetOwner(int fd, uint64_t owner)
{
    auto it = m_tokens.find(fd);
    if (it != m_tokens.end())
    {
        m_entries.at(it->second).owner = owner;
    }
}

void
EventLoop::Hold(uint64_t owner)
{
    // Out of the epoll sets, not just masked: epoll reports a hang-up whatever the mask.
    for (auto& [token, entry] : m_entries)
    {
        if (entry.owner == owner && !entry.held)
        {
            Del(entry);
            entry.held = true;
        }
    }
}

void
EventLoop::Release(uint64_t owner)
{
    for (auto& [token, entry] : m_entries)
    {
        if (entry.owner == owner && entry.held)
        {
            Add(token, entry);
            entry.held = false;
        }
    }
}

void
EventLoop::Unwatch(int fd)
{
    auto it = m_tokens.find(fd);
    if (it == m_tokens.end())
    {
        return;
    }
    NS_LOG_FUNCTION(this << fd);
    auto& entry = m_entries.at(it->second);
    if (!entry.held)
    {
        Del(entry);
    }
    if (entry.expired)
    {
        m_deadlines--;
    }
    m_entries.erase(it->second);
    m_tokens.erase(it);
}

bool
EventLoop::IsWatched(int fd) const
{
    return m_tokens.count(fd) != 0;
}

void
EventLoop::SetDeadline(int fd, Clock::time_point at, std::function<void()> expired)
{
    auto it = m_tokens.find(fd);
    if (it == m_tokens.end())
    {
        return;
    }
    Entry& entry = m_entries.at(it->second);
    if (!entry.expired)
    {
        m_deadlines++;
    }
    entry.deadline = at;
    entry.expired = std::move(expired);
}

void
EventLoop::ClearDeadline(int fd)
{
    auto it = m_tokens.find(fd);
    if (it == m_tokens.end())
    {
        return;
    }
    Entry& entry = m_entries.at(it->second);
    if (entry.expired)
    {
        m_deadlines--;
        entry.expired = nullptr;
    }
}

bool
EventLoop::Serves(int epfd, const Entry& entry) const
{
    return !entry.held && (entry.inner || epfd == m_outer);
}

EventLoop::Clock::time_point
EventLoop::NextDeadline(int epfd) const
{
    auto next = Clock::time_point::max();
    for (const auto& [token, entry] : m_entries)
    {
        if (entry.expired && Serves(epfd, entry))
        {
            next = std::min(next, entry.deadline);
        }
    }
    return next;
}

void
EventLoop::Expire(int epfd)
{
    auto now = Clock::now();
    std::vector<uint64_t> due;
    for (const auto& [token, entry] : m_entries)
    {
        if (entry.expired && Serves(epfd, entry) && entry.deadline <= now)
        {
            due.push_back(token);
        }
    }
    std::sort(due.begin(), due.end()); // in watch order, whatever the map's order
    for (uint64_t token : due)
    {
        auto it = m_entries.find(token);
        if (it == m_entries.end() || !it->second.expired || !Serves(epfd, it->second))
        {
            continue; // cleared or unwatched by an earlier one
        }
        // Judged on everything it sent: what waits unread (a batch of more than 64 ready
        // descriptors, a hold just ended) is read first.
        pollfd p{it->second.fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1)
        {
            Dispatch(token, EPOLLIN);
            it = m_entries.find(token);
            if (it == m_entries.end() || !it->second.expired || it->second.deadline > now)
            {
                continue;
            }
        }
        std::function<void()> expired = std::move(it->second.expired);
        it->second.expired = nullptr;
        m_deadlines--;
        NS_LOG_LOGIC("deadline of fd " << it->second.fd << " passed");
        expired();
    }
}

void
EventLoop::Dispatch(uint64_t token, uint32_t events)
{
    auto it = m_entries.find(token);
    if (it == m_entries.end() || it->second.held)
    {
        return; // unwatched (or held) by an earlier handler of the same batch
    }
    // Copy: the handler may unwatch its own descriptor.
    Handler handler = it->second.handler;
    handler(events);
}

bool
EventLoop::Serve(int epfd, const std::function<bool()>& done, int64_t timeoutMs, uint64_t stopToken)
{
    auto limit = timeoutMs < 0 ? Clock::time_point::max()
                               : Clock::now() + std::chrono::milliseconds(timeoutMs);
    epoll_event events[64];
    bool expired = false;
    while (!done())
    {
        if (expired)
        {
            // Checked after every batch: a peer that keeps the loop busy (a stream of GETs)
            // must not postpone a limit that epoll_wait alone sees only when all is quiet.
            NS_LOG_LOGIC("nothing done within the limit of " << timeoutMs << " ms");
            return false;
        }
        // Woken for the descriptors' deadlines too (a message that stopped halfway).
        auto until = m_deadlines ? std::min(limit, NextDeadline(epfd)) : limit;
        int n = epoll_wait(epfd, events, 64, WaitMs(until));
        if (n < 0)
        {
            if (errno == EINTR)
            {
                continue;
            }
            throw std::system_error(errno, std::generic_category(), "epoll_wait");
        }
        for (int i = 0; i < n; ++i)
        {
            uint64_t token = events[i].data.u64;
            if (token == stopToken)
            {
                return true;
            }
            Dispatch(token, events[i].events);
        }
        if (m_deadlines)
        {
            Expire(epfd);
        }
        expired = Clock::now() >= limit;
    }
    return true;
}

bool
EventLoop::ServeUntil(const std::function<bool()>& done, int64_t timeoutMs)
{
    return Serve(m_outer, done, timeoutMs, ~uint64_t{0});
}

bool
EventLoop::ServeInnerUntil(const std::function<bool()>& done, int64_t timeoutMs)
{
    return Serve(m_inner, done, timeoutMs, ~uint64_t{0});
}

bool
EventLoop::WaitReadable(int fd, int64_t timeoutMs)
{
    EpollAdd(m_inner, fd, TOKEN_WAITED);
    bool ready = false;
    try
    {
        ready = Serve(m_inner, [] { return false; }, timeoutMs, TOKEN_WAITED);
    }
    catch (...)
    {
        epoll_ctl(m_inner, EPOLL_CTL_DEL, fd, nullptr);
        throw;
    }
    epoll_ctl(m_inner, EPOLL_CTL_DEL, fd, nullptr);
    return ready;
}

} // namespace ns3
