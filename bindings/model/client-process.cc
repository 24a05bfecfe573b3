#include "client-process.h"

#include "ns3/log.h"

#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <poll.h>
#include <sstream>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>

// Kernel interfaces newer than the build host's headers may be (values from the kernel's
// uapi: asm-generic/socket.h, linux/wait.h, linux/pidfd.h).
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77 // Linux 6.5
#endif
#ifndef P_PIDFD
#define P_PIDFD 3 // Linux 5.4
#endif

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlClientProcess");

namespace
{

// struct pidfd_info as first published (64 bytes) and PIDFD_GET_INFO (Linux 6.13); the
// exit status of a reaped process is in it from Linux 6.15 on.
struct PidfdInfo
{
    uint64_t mask;
    uint64_t cgroupid;
    uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int32_t exitCode;
};

static_assert(sizeof(PidfdInfo) == 64, "PIDFD_INFO_SIZE_VER0");
constexpr uint64_t PIDFD_INFO_EXIT = 1U << 3;
const unsigned long PIDFD_GET_INFO_REQUEST = _IOWR(0xFF, 11, PidfdInfo);

/** Whether the process of pidfd has not been reaped yet (so its pid is still its own). */
bool
NotReaped(int pidfd)
{
    return syscall(SYS_pidfd_send_signal, pidfd, 0, nullptr, 0) == 0 || errno == EPERM;
}

/** "" if it cannot be read. Not with iostreams: libstdc++'s filebuf throws when read()
 * fails, as it does (ESRCH) once the process is reaped between open and read. */
std::string
ReadProcFile(int pid, const char* name)
{
    std::string path = "/proc/" + std::to_string(pid) + "/" + name;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
    {
        return "";
    }
    std::string text;
    char buf[1024];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
    {
        text.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return n < 0 ? "" : text;
}

/** A wait status, as waitpid gives it, from our child's siginfo. */
bool
ChildStatus(int pidfd, int& status)
{
    siginfo_t info{};
    if (waitid(static_cast<idtype_t>(P_PIDFD),
               static_cast<id_t>(pidfd),
               &info,
               WEXITED | WNOWAIT | WNOHANG) != 0 ||
        info.si_pid == 0)
    {
        return false; // not our child
    }
    status = info.si_code == CLD_EXITED   ? (info.si_status & 0xff) << 8
             : info.si_code == CLD_DUMPED ? info.si_status | 0x80
                                          : info.si_status;
    return true;
}

/** A reaped process's status, kept with its pidfd (Linux 6.15). */
bool
ReapedStatus(int pidfd, int& status)
{
    PidfdInfo info{};
    info.mask = PIDFD_INFO_EXIT;
    if (ioctl(pidfd, PIDFD_GET_INFO_REQUEST, &info) != 0 || !(info.mask & PIDFD_INFO_EXIT))
    {
        return false;
    }
    status = info.exitCode;
    return true;
}

/** A zombie's status (field 52 of /proc/PID/stat), while its parent has not reaped it. */
bool
ZombieStatus(int pid, int pidfd, int& status)
{
    std::string stat = ReadProcFile(pid, "stat");
    auto paren = stat.rfind(')');
    if (paren == std::string::npos)
    {
        return false;
    }
    std::istringstream fields(stat.substr(paren + 1));
    std::string state;
    fields >> state; // field 3
    std::string field;
    for (int i = 4; i <= 52 && fields >> field; i++)
    {
    }
    // Read before the check: unreaped then, the pid was still this process's.
    if (state != "Z" || !fields || !NotReaped(pidfd))
    {
        return false;
    }
    status = static_cast<int>(std::strtol(field.c_str(), nullptr, 10));
    return true;
}

ClientProcess::End
FromStatus(int status)
{
    if (WIFSIGNALED(status))
    {
        return {true, "killed by signal " + std::to_string(WTERMSIG(status))};
    }
    int code = WEXITSTATUS(status);
    return {code != 0, "exited with status " + std::to_string(code)};
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

ClientProcess::ClientProcess(int pid, int pidfd)
    : m_pid(pid),
      m_pidfd(pidfd)
{
    m_command = ReadProcFile(pid, "comm");
    if (!m_command.empty() && m_command.back() == '\n')
    {
        m_command.pop_back();
    }
    if (m_pidfd < 0 || !NotReaped(m_pidfd))
    {
        m_command.clear(); // the pid may have been someone else's by then
    }
}

ClientProcess::~ClientProcess()
{
    Release();
}

ClientProcess::ClientProcess(ClientProcess&& other) noexcept
    : m_pid(std::exchange(other.m_pid, -1)),
      m_pidfd(std::exchange(other.m_pidfd, -1)),
      m_command(std::move(other.m_command))
{
}

ClientProcess&
ClientProcess::operator=(ClientProcess&& other) noexcept
{
    if (this != &other)
    {
        Release();
        m_pid = std::exchange(other.m_pid, -1);
        m_pidfd = std::exchange(other.m_pidfd, -1);
        m_command = std::move(other.m_command);
    }
    return *this;
}

ClientProcess
ClientProcess::OfPeer(int sockfd)
{
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(sockfd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0 ||
        cred.pid == getpid())
    {
        return ClientProcess();
    }
    int pidfd = -1;
    len = sizeof pidfd;
    if (getsockopt(sockfd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) != 0)
    {
        // Before Linux 6.5, by number: a peer that ended and whose pid was reused before
        // this accept would be mistaken for another process.
        pidfd = errno == ENOPROTOOPT ? static_cast<int>(syscall(SYS_pidfd_open, cred.pid, 0))
                                     : -1;
    }
    NS_LOG_LOGIC("peer pid " << cred.pid << ", pidfd " << pidfd);
    return ClientProcess(cred.pid, pidfd);
}

ClientProcess
ClientProcess::OfChild(int pid)
{
    if (pid <= 0)
    {
        return ClientProcess();
    }
    return ClientProcess(pid, static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
}

int
ClientProcess::GetPid() const
{
    return m_pid;
}

int
ClientProcess::GetPidfd() const
{
    return m_pidfd;
}

const std::string&
ClientProcess::GetCommand() const
{
    return m_command;
}

std::string
ClientProcess::Describe() const
{
    if (m_pid <= 0)
    {
        return "";
    }
    return "pid " + std::to_string(m_pid) + (m_command.empty() ? "" : ", " + m_command);
}

ClientProcess::End
ClientProcess::Check() const
{
    NS_LOG_FUNCTION(m_pid);
    if (m_pidfd < 0)
    {
        return {};
    }
    pollfd p{m_pidfd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1)
    {
        NS_LOG_LOGIC("pid " << m_pid << " still runs");
        return {false, STILL_RUNS};
    }
    int status = 0;
    // The last look again: its parent may have reaped it while /proc was read.
    if (ChildStatus(m_pidfd, status) || ReapedStatus(m_pidfd, status) ||
        ZombieStatus(m_pid, m_pidfd, status) || ReapedStatus(m_pidfd, status))
    {
        return FromStatus(status);
    }
    return {false, "ended (its exit status went to its parent)"};
}

void
ClientProcess::Release()
{
    if (m_pidfd >= 0)
    {
        close(m_pidfd);
        m_pidfd = -1;
    }
}

} // namespace ns3
