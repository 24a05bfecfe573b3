#include "client-process.h"

#include "ns3/log.h"

#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlClientProcess");

namespace
{
constexpr int EXIT_GRACE_MS = 2000;

/** How a child of ours ended, without reaping it; false while it runs (or if not ours). */
bool
PeekEnd(int pid, siginfo_t& info)
{
    info = siginfo_t{};
    return pid > 0 &&
           waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG) == 0 &&
           info.si_pid != 0;
}

std::string
Describe(const siginfo_t& info)
{
    if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)
    {
        return "killed by signal " + std::to_string(info.si_status);
    }
    return "exited with status " + std::to_string(info.si_status);
}
} // namespace

void
ClientProcesses::Register(uint64_t clientId, int pid)
{
    NS_LOG_FUNCTION(this << clientId << pid);
    m_pids[clientId] = pid;
}

int
ClientProcesses::GetPid(uint64_t clientId) const
{
    auto it = m_pids.find(clientId);
    return it == m_pids.end() ? -1 : it->second;
}

int
ClientProcesses::OpenPidfd(int pid)
{
    return pid > 0 ? static_cast<int>(syscall(SYS_pidfd_open, pid, 0)) : -1;
}

std::string
ClientProcesses::HowEnded(int pid)
{
    siginfo_t info;
    return PeekEnd(pid, info) ? Describe(info) : "";
}

std::string
ClientProcesses::AbnormalEnd(int pid)
{
    NS_LOG_FUNCTION(pid);
    int pidfd = OpenPidfd(pid);
    if (pidfd < 0)
    {
        return "";
    }
    pollfd p{pidfd, POLLIN, 0};
    int ready = poll(&p, 1, EXIT_GRACE_MS);
    close(pidfd);
    if (ready != 1)
    {
        NS_LOG_LOGIC("pid " << pid << " still alive: it closed its socket on purpose");
        return "";
    }
    siginfo_t info;
    if (!PeekEnd(pid, info))
    {
        return ""; // not our child: its owner decides
    }
    if (info.si_code == CLD_EXITED && info.si_status == 0)
    {
        NS_LOG_LOGIC("pid " << pid << " exited cleanly");
        return "";
    }
    return Describe(info);
}

} // namespace ns3
