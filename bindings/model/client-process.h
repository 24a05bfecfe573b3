// The OS processes behind time-travel clients: whoever owns a process decides whether its
// departure was a crash (docs/DESIGN.md rule 9), never its socket.
#ifndef NS3_UML_CLIENT_PROCESS_H
#define NS3_UML_CLIENT_PROCESS_H

#include <cstdint>
#include <map>
#include <string>

namespace ns3
{

/** Which process is behind which client id, and how such a process ended. */
class ClientProcesses
{
  public:
    void Register(uint64_t clientId, int pid);
    /** The process behind clientId, or -1 if none was registered. */
    int GetPid(uint64_t clientId) const;

    /**
     * How pid (a child of ours) ended ("killed by signal N", "exited with status N"), or ""
     * if it has not ended (or is not our child). Never waits, never reaps.
     */
    static std::string HowEnded(int pid);
    /** A pidfd for pid (readable once it has ended), or -1. */
    static int OpenPidfd(int pid);

    /**
     * If pid (a child of ours) has died abnormally: how ("killed by signal N", "exited with
     * status N"); otherwise "". Waits up to 2 s for it to end (its socket closes before it
     * is reapable) and never reaps it (its owner does).
     */
    static std::string AbnormalEnd(int pid);

  private:
    std::map<uint64_t, int> m_pids;
};

} // namespace ns3

#endif
