#include "interrupt-watch.h"

#include "uml-error.h"

#include "ns3/log.h"

#include <csignal>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlInterruptWatch");

void
InterruptWatch::Set(EventLoop& loop, int fd)
{
    NS_LOG_FUNCTION(this << fd);
    Clear(&loop);
    m_fd = fd;
    if (fd >= 0)
    {
        loop.Watch(fd, [this](uint32_t) { OnReadable(); }, true);
    }
}

void
InterruptWatch::Clear(EventLoop* loop)
{
    if (m_fd >= 0 && loop)
    {
        loop->Unwatch(m_fd);
    }
    m_fd = -1;
}

void
InterruptWatch::OnReadable()
{
    unsigned char buf[64];
    ssize_t n = read(m_fd, buf, sizeof(buf));
    for (ssize_t i = 0; i < n; ++i)
    {
        if (buf[i] == SIGINT || buf[i] == SIGTERM)
        {
            const char* name = buf[i] == SIGINT ? "SIGINT" : "SIGTERM";
            NS_LOG_INFO("interrupted by " << name);
            throw UmlError("interrupted", false, 0, std::string("interrupted by ") + name);
        }
    }
}

} // namespace ns3
