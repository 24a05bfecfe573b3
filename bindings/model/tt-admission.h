// Where time-travel clients connect, and how they are let in: one at a time, from connect
// to their first WAIT (docs/DESIGN.md rule 7).
#ifndef NS3_UML_TT_ADMISSION_H
#define NS3_UML_TT_ADMISSION_H

#include "event-loop.h"

#include <cstdint>
#include <functional>
#include <string>

namespace ns3
{

/**
 * The listening socket and the count of admitted clients. The listening socket is watched
 * only while nobody is being admitted (it stays readable while others wait in its
 * backlog), so whatever a starting client does (a device it sets up, events its kicks
 * create) cannot interleave with another's. The connections themselves are the calendar's.
 */
class TtAdmission
{
  public:
    /** A connection was accepted: the calendar takes the descriptor. */
    using AcceptHandler = std::function<void(int fd)>;
    /** Whether a client is between connect and its first WAIT. */
    using AdmittingQuery = std::function<bool()>;

    TtAdmission(AcceptHandler accepted, AdmittingQuery admitting);
    ~TtAdmission();
    TtAdmission(const TtAdmission&) = delete;
    TtAdmission& operator=(const TtAdmission&) = delete;

    /** Listen at path (no-op if listening). Throws a "setup" UmlError if it cannot. */
    void Listen(const std::string& path);
    bool IsListening() const;
    /** Close the listening socket and remove its file. */
    void Close();

    /** A client finished admission (its first WAIT, or it left before that). */
    void NoteAdmitted();
    uint32_t GetAdmitted() const;
    /** Whether a client has connected and waits to be accepted (no system call: between
     * admissions the loop watches the listening socket and notes a connection). */
    bool HasPending() const;
    /**
     * Serve loop until target clients are admitted and nobody is being admitted; throws a
     * "timeout" UmlError after timeoutS seconds of wall time.
     */
    void ServeUntilAdmitted(EventLoop& loop, uint32_t target, double timeoutS);
    /**
     * Serve loop until one more connection has been accepted and nobody is being admitted:
     * the client that waits in the backlog has reached its first WAIT or left (one that
     * left without START counts for nothing). Throws like ServeUntilAdmitted.
     */
    void AdmitWaiting(EventLoop& loop, double timeoutS);
    /** Between admissions (from Listen on): note the next connection, once, without
     * accepting it, for HasPending. */
    void WatchForLateClients(EventLoop& loop);

  private:
    void OnListenReadable();
    /** Serve loop, accepting between admissions, until done(); the timeout's message
     * counts target clients. */
    void Serve(EventLoop& loop,
               const std::function<bool()>& done,
               uint32_t target,
               double timeoutS);

    AcceptHandler m_accepted;
    AdmittingQuery m_admitting;
    std::string m_path;
    int m_fd;
    uint32_t m_admitted;
    uint64_t m_accepts; //!< connections accepted, with or without START
    bool m_pending;     //!< a connection waits (noted by WatchForLateClients)
};

} // namespace ns3

#endif
