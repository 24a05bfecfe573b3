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

std::string
ClientProcesses::AbnormalEnd(int pid)
{
    NS_LOG_FUNCTION(pid);
    if (pid <= 0)
    {
        return "";
    }
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
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
    siginfo_t info{};
    if (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT | WNOHANG) != 0 ||
        info.si_pid == 0)
    {
        return ""; // not our child: its owner decides
    }
    if (info.si_code == CLD_KILLED || info.si_code == CLD_DUMPED)
    {
        return "killed by signal " + std::to_string(info.si_status);
    }
    if (info.si_code == CLD_EXITED && info.si_status != 0)
    {
        return "exited with status " + std::to_string(info.si_status);
    }
    NS_LOG_LOGIC("pid " << pid << " exited cleanly");
    return "";
}

} // namespace ns3
