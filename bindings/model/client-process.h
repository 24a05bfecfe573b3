// The OS processes behind time-travel clients: whoever owns a process decides whether its
// departure was a crash (docs/DESIGN.md rule 9), never its socket.
#ifndef NS3_UML_CLIENT_PROCESS_H
#define NS3_UML_CLIENT_PROCESS_H

#include <cstdint>
#include <map>
#include <string>

namespace ns3
{

/** Which process is behind which client id, as its owner registered it. */
class ClientProcesses
{
  public:
    void Register(uint64_t clientId, int pid);
    /** The process behind clientId, or -1 if none was registered. */
    int GetPid(uint64_t clientId) const;

  private:
    std::map<uint64_t, int> m_pids;
};

/**
 * The process behind one client: the peer of its socket (SO_PEERCRED) or the child its
 * owner registered. A pidfd is taken at once (the peer's from the socket itself where the
 * kernel can), so a pid reused later cannot be mistaken for it.
 */
class ClientProcess
{
  public:
    /** How the process stood when the client left. */
    struct End
    {
        bool abnormal = false; //!< killed by a signal or exited non-zero: a crash
        std::string how;       //!< "" (no process known), "still runs", "exited with
                               //!< status N", "killed by signal N", "ended (...)"
    };

    /** End::how of a process that has not ended (yet). */
    static constexpr const char* STILL_RUNS = "still runs";
    /** How long a process may take to end after its socket closed (it closes first). */
    static constexpr int EXIT_GRACE_MS = 2000;

    ClientProcess() = default; //!< no process known
    ~ClientProcess();
    ClientProcess(ClientProcess&& other) noexcept;
    ClientProcess& operator=(ClientProcess&& other) noexcept;
    ClientProcess(const ClientProcess&) = delete;
    ClientProcess& operator=(const ClientProcess&) = delete;

    /** The process at the other end of a connected unix socket; none if it is this one
     * (a client thread of ours has nobody else to answer for it). */
    static ClientProcess OfPeer(int sockfd);
    /** A child of ours, not reaped yet (its owner reaps it). */
    static ClientProcess OfChild(int pid);

    /** -1 if unknown. */
    int GetPid() const;
    /** Readable once the process has ended; -1 if none (it stays this object's). */
    int GetPidfd() const;
    /** Its /proc/PID/comm when it was taken ("" if unknown). */
    const std::string& GetCommand() const;
    /** "pid 1234, python3" ("" if unknown). */
    std::string Describe() const;

    /**
     * How it stands now; never waits (its pidfd is readable once it has ended) and never
     * reaps it. The exit status comes from waitid for a child, else from its pidfd once its
     * parent reaped it (Linux 6.15) or from /proc while it is a zombie; else it is unknown.
     */
    End Check() const;
    /** Close the pidfd (what is known stays). */
    void Release();

  private:
    ClientProcess(int pid, int pidfd);

    int m_pid = -1;
    int m_pidfd = -1;
    std::string m_command;
};

} // namespace ns3

#endif
