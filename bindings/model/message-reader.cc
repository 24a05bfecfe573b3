#include "message-reader.h"

#include "ns3/log.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlMessageReader");

namespace
{
// The control buffer's room: vhost-user's limit of descriptors per message.
constexpr size_t MAX_FDS = 8;
} // namespace

MessageReader::MessageReader(std::string protocol, size_t maxFds, double limitS, Stalled stalled)
    : m_protocol(std::move(protocol)),
      m_maxFds(std::min(maxFds, MAX_FDS)),
      m_limitS(limitS),
      m_stalled(std::move(stalled)),
      m_loop(nullptr),
      m_fd(-1),
      m_armed(false),
      m_have(0),
      m_need(0),
      m_tooManyFds(false)
{
}

MessageReader::~MessageReader()
{
    CloseFds();
}

void
MessageReader::Guard(EventLoop* loop, int fd)
{
    m_loop = loop;
    m_fd = fd;
    m_armed = false;
}

void
MessageReader::Start(size_t need)
{
    // Never the loop's: a descriptor whose message is dropped here was unwatched (its
    // deadline with it), and the loop may be gone.
    CloseFds();
    m_tooManyFds = false;
    m_armed = false;
    m_have = 0;
    Grow(need);
}

void
MessageReader::Grow(size_t need)
{
    m_need = need;
    if (m_buf.size() < need)
    {
        m_buf.resize(need);
    }
    Follow();
}

MessageReader::Status
MessageReader::Read(int fd)
{
    if (m_have >= m_need)
    {
        return Status::WHOLE;
    }
    iovec iov{m_buf.data() + m_have, m_need - m_have};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    if (m_maxFds)
    {
        mh.msg_control = control;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * m_maxFds);
    }
    ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    {
        return Status::PARTIAL;
    }
    if (n <= 0)
    {
        return m_have ? Status::CLOSED_MID_MESSAGE : Status::CLOSED;
    }
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
    {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
        {
            continue;
        }
        size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i)
        {
            int received;
            std::memcpy(&received, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
            if (m_fds.size() < m_maxFds)
            {
                m_fds.push_back(received);
            }
            else
            {
                close(received);
                m_tooManyFds = true;
            }
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
    {
        m_tooManyFds = true; // the kernel dropped what did not fit
    }
    if (m_have == 0)
    {
        m_first = EventLoop::Clock::now();
    }
    m_have += static_cast<size_t>(n);
    Follow();
    return m_have == m_need ? Status::WHOLE : Status::PARTIAL;
}

MessageReader::Status
MessageReader::ReadWhole(EventLoop& loop, int fd)
{
    Status status = Read(fd);
    while (status == Status::PARTIAL)
    {
        if (!loop.WaitReadable(fd, RemainingMs()))
        {
            Stall();
        }
        status = Read(fd);
    }
    return status;
}

const uint8_t*
MessageReader::GetData() const
{
    return m_buf.data();
}

size_t
MessageReader::GetHave() const
{
    return m_have;
}

size_t
MessageReader::GetNeed() const
{
    return m_need;
}

std::vector<int>&
MessageReader::Fds()
{
    return m_fds;
}

bool
MessageReader::HasTooManyFds() const
{
    return m_tooManyFds;
}

void
MessageReader::Follow()
{
    if (!m_loop)
    {
        return;
    }
    bool partial = m_have > 0 && m_have < m_need;
    if (partial && !m_armed)
    {
        auto limit = std::chrono::duration_cast<EventLoop::Clock::duration>(
            std::chrono::duration<double>(m_limitS));
        m_loop->SetDeadline(m_fd, m_first + limit, [this] { Stall(); });
        m_armed = true;
    }
    else if (!partial && m_armed)
    {
        m_loop->ClearDeadline(m_fd);
        m_armed = false;
    }
}

int64_t
MessageReader::RemainingMs() const
{
    auto limit = std::chrono::duration<double, std::milli>(m_limitS * 1000);
    if (m_have == 0)
    {
        return static_cast<int64_t>(limit.count());
    }
    auto left = limit - (EventLoop::Clock::now() - m_first);
    return std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(left).count());
}

void
MessageReader::Stall() const
{
    std::ostringstream what;
    what << "sent a partial " << m_protocol << " message and stopped: " << m_have << " of "
         << m_need << " bytes in " << m_limitS << " s";
    NS_LOG_INFO(what.str());
    m_stalled(what.str());
    throw std::logic_error("MessageReader: the Stalled handler must throw");
}

void
MessageReader::CloseFds()
{
    for (int fd : m_fds)
    {
        close(fd);
    }
    m_fds.clear();
}

} // namespace ns3
