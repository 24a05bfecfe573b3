#include "tt-connection.h"

#include "session-recorder.h"
#include "uml-error.h"

#include "ns3/log.h"

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("TtConnection");

// ---------------------------------------------------------------- the shared log

TtMessageLog::TtMessageLog()
    : m_file(nullptr),
      m_fd(-1),
      m_count{}
{
}

TtMessageLog::~TtMessageLog()
{
    Close();
}

void
TtMessageLog::Open(const std::string& path)
{
    NS_LOG_FUNCTION(this << path);
    Close();
    if (path.empty())
    {
        m_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
        return;
    }
    m_file = std::fopen(path.c_str(), "we");
    if (!m_file)
    {
        throw UmlError("setup",
                       false,
                       0,
                       "cannot open log file " + path + ": " + std::strerror(errno));
    }
    m_fd = dup(fileno(m_file));
}

void
TtMessageLog::Flush()
{
    if (m_file)
    {
        fflush(m_file);
    }
}

void
TtMessageLog::Close()
{
    if (m_fd >= 0)
    {
        close(m_fd);
        m_fd = -1;
    }
    if (m_file)
    {
        std::fclose(m_file);
        m_file = nullptr;
    }
}

int
TtMessageLog::GetFd() const
{
    return m_fd;
}

void
TtMessageLog::SetClock(Clock clock)
{
    m_clock = std::move(clock);
}

void
TtMessageLog::SetObserver(Observer observer)
{
    m_observer = std::move(observer);
}

void
TtMessageLog::Record(const TtConnection& c, bool fromClient, const tt::Message& msg)
{
    m_count[fromClient ? 1 : 0][std::min<uint32_t>(msg.op, tt::OP_COUNT)]++;
    if (m_file)
    {
        std::fprintf(m_file,
                     "%" PRIu64 " %s %s %s seq=%u time=%" PRIu64 "\n",
                     m_clock ? m_clock() : 0,
                     c.IsNamed() ? c.GetLabel().c_str() : "?",
                     fromClient ? "->" : "<-",
                     tt::OpName(msg.op),
                     msg.seq,
                     msg.time);
    }
    // After the log line: a traced device may send messages of its own.
    if (m_observer)
    {
        m_observer(c.GetId(), fromClient, msg);
    }
}

uint64_t
TtMessageLog::GetCount(uint32_t op, bool fromClient) const
{
    return m_count[fromClient ? 1 : 0][std::min<uint32_t>(op, tt::OP_COUNT)];
}

// ---------------------------------------------------------------- one connection

TtConnection::TtConnection(int fd,
                           TtMessageLog& log,
                           FailHandler fail,
                           EventLoop& loop,
                           double limitS)
    : m_fd(fd),
      m_log(log),
      m_fail(std::move(fail)),
      m_id(0),
      m_named(false),
      m_peerClosed(false),
      m_seq(0),
      m_rx("time-travel", 0, limitS, [this](const std::string& what) { m_fail("protocol", what); }),
      m_recorder(SessionRecorder::Open("tt"))
{
    m_rx.Guard(&loop, fd);
    m_rx.Start(sizeof(tt::Message));
}

TtConnection::~TtConnection()
{
    Close();
}

int
TtConnection::GetFd() const
{
    return m_fd;
}

void
TtConnection::Close()
{
    if (m_fd >= 0)
    {
        close(m_fd);
        m_fd = -1;
    }
}

uint64_t
TtConnection::GetId() const
{
    return m_id;
}

bool
TtConnection::IsNamed() const
{
    return m_named;
}

void
TtConnection::SetId(uint64_t id, const std::string& label)
{
    m_id = id;
    m_label = label;
    m_named = true;
}

const std::string&
TtConnection::GetLabel() const
{
    return m_label;
}

bool
TtConnection::IsPeerClosed() const
{
    return m_peerClosed;
}

TtConnection::Read
TtConnection::Receive(tt::Message& msg)
{
    switch (m_rx.Read(m_fd))
    {
    case MessageReader::Status::PARTIAL:
        return Read::NOTHING;
    case MessageReader::Status::CLOSED:
        return Read::CLOSED;
    case MessageReader::Status::CLOSED_MID_MESSAGE:
        return Read::CLOSED_MID_MESSAGE;
    case MessageReader::Status::WHOLE:
        break;
    }
    std::memcpy(&msg, m_rx.GetData(), sizeof(msg));
    if (m_recorder)
    {
        m_recorder->Write(m_rx.GetData(), sizeof(msg));
    }
    m_rx.Start(sizeof(tt::Message));
    return Read::MESSAGE;
}

void
TtConnection::LogReceived(const tt::Message& msg)
{
    m_log.Record(*this, true, msg);
}

void
TtConnection::Write(const tt::Message& msg)
{
    m_log.Record(*this, false, msg);
    if (m_peerClosed)
    {
        return;
    }
    ssize_t n = send(m_fd, &msg, sizeof(msg), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(msg)))
    {
        return;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
    {
        // Gone: what it sent before leaving is still to be read, and the read side then
        // sees the departure in order (a half message included).
        m_peerClosed = true;
        return;
    }
    m_fail("protocol", "does not read its time socket (send failed)");
}

void
TtConnection::Send(uint32_t op, uint64_t time, bool expectAck)
{
    tt::Message msg{op, ++m_seq, time};
    Write(msg);
    if (expectAck && !m_peerClosed)
    {
        m_pendingAcks.push_back(msg.seq);
    }
}

void
TtConnection::Ack(uint32_t seq, uint64_t time)
{
    Write(tt::Message{tt::OP_ACK, seq, time});
}

void
TtConnection::TakeAck(uint32_t seq)
{
    if (m_pendingAcks.empty() || m_pendingAcks.front() != seq)
    {
        m_fail("protocol",
               "sent ACK with seq " + std::to_string(seq) + ", expected " +
                   (m_pendingAcks.empty() ? std::string("no ACK")
                                          : std::to_string(m_pendingAcks.front())));
    }
    m_pendingAcks.pop_front();
}

uint32_t
TtConnection::GetLastSeq() const
{
    return m_seq;
}

bool
TtConnection::IsAckPending(uint32_t seq) const
{
    return std::find(m_pendingAcks.begin(), m_pendingAcks.end(), seq) != m_pendingAcks.end();
}

void
TtConnection::ReplyStart(uint32_t seq, uint64_t ackTime, int memfd, int logFd)
{
    NS_LOG_FUNCTION(this << seq << ackTime << memfd << logFd);
    tt::Message ack{tt::OP_ACK, seq, ackTime};
    m_log.Record(*this, false, ack);
    int fds[tt::MAX_FDS] = {memfd, logFd};
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
    if (sendmsg(m_fd, &mh, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(ack)))
    {
        m_peerClosed = true;
    }
}

} // namespace ns3
