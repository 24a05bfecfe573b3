#include "tt-admission.h"

#include "uml-error.h"
#include "unix-socket.h"

#include "ns3/log.h"

#include <sys/socket.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("TtAdmission");

TtAdmission::TtAdmission(AcceptHandler accepted, AdmittingQuery admitting)
    : m_accepted(std::move(accepted)),
      m_admitting(std::move(admitting)),
      m_fd(-1),
      m_admitted(0),
      m_accepts(0),
      m_pending(false)
{
}

TtAdmission::~TtAdmission()
{
    Close();
}

void
TtAdmission::Listen(const std::string& path)
{
    if (m_fd >= 0)
    {
        return;
    }
    NS_LOG_FUNCTION(this << path);
    std::string error;
    int fd = ListenUnixSocket(path, 128, error);
    if (fd < 0)
    {
        throw UmlError("setup", false, 0, "UmlCalendar: " + error);
    }
    m_fd = fd;
    m_path = path;
    NS_LOG_INFO("listening on " << path);
}

bool
TtAdmission::IsListening() const
{
    return m_fd >= 0;
}

void
TtAdmission::Close()
{
    if (m_fd >= 0)
    {
        close(m_fd);
        m_fd = -1;
        unlink(m_path.c_str());
    }
}

void
TtAdmission::NoteAdmitted()
{
    m_admitted++;
    NS_LOG_INFO("admitted " << m_admitted << " clients");
}

uint32_t
TtAdmission::GetAdmitted() const
{
    return m_admitted;
}

bool
TtAdmission::HasPending() const
{
    return m_fd >= 0 && m_pending;
}

void
TtAdmission::WatchForLateClients(EventLoop& loop)
{
    m_pending = false;
    // Level-triggered, so the watch goes at the first sign: the connection waits in the
    // backlog until the next hand-off admits it (AdmitWaiting).
    loop.Watch(
        m_fd,
        [this, &loop](uint32_t) {
            m_pending = true;
            loop.Unwatch(m_fd);
        },
        false);
}

void
TtAdmission::OnListenReadable()
{
    if (m_admitting())
    {
        return;
    }
    int fd = accept4(m_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0)
    {
        return; // EAGAIN: nothing pending
    }
    NS_LOG_LOGIC("accepted a connection (fd " << fd << ")");
    m_accepts++;
    m_accepted(fd);
}

void
TtAdmission::ServeUntilAdmitted(EventLoop& loop, uint32_t target, double timeoutS)
{
    NS_LOG_FUNCTION(this << target << timeoutS);
    Serve(
        loop,
        [this, target] { return m_admitted >= target && !m_admitting(); },
        target,
        timeoutS);
}

void
TtAdmission::AdmitWaiting(EventLoop& loop, double timeoutS)
{
    NS_LOG_FUNCTION(this << timeoutS);
    // Counted by accepts, not admissions: a probe that connects and closes is the one
    // waiting as often as a client is, and once it is forgotten nobody more is waited for.
    uint64_t accepts = m_accepts;
    Serve(
        loop,
        [this, accepts] { return m_accepts > accepts && !m_admitting(); },
        m_admitted + 1,
        timeoutS);
}

void
TtAdmission::Serve(EventLoop& loop,
                   const std::function<bool()>& done,
                   uint32_t target,
                   double timeoutS)
{
    loop.Unwatch(m_fd); // the between-admissions watch, if any
    m_pending = false;
    auto watchListen = [this, &loop] {
        bool admitting = m_admitting();
        bool watched = loop.IsWatched(m_fd);
        if (!admitting && !watched)
        {
            loop.Watch(m_fd, [this](uint32_t) { OnListenReadable(); }, false);
        }
        else if (admitting && watched)
        {
            loop.Unwatch(m_fd);
        }
    };
    bool ok = false;
    try
    {
        ok = loop.ServeUntil(
            [&watchListen, &done] {
                watchListen();
                return done();
            },
            static_cast<int64_t>(timeoutS * 1000));
    }
    catch (...)
    {
        loop.Unwatch(m_fd);
        throw;
    }
    loop.Unwatch(m_fd);
    WatchForLateClients(loop);
    if (!ok)
    {
        throw UmlError("timeout",
                       false,
                       0,
                       "only " + std::to_string(m_admitted) + " of " + std::to_string(target) +
                           " clients connected to " + m_path + " and yielded within " +
                           std::to_string(timeoutS) + " s");
    }
}

} // namespace ns3
