// One time-travel client's connection: the wire side of the UM time-travel protocol.
#ifndef NS3_UML_TT_CONNECTION_H
#define NS3_UML_TT_CONNECTION_H

#include "event-loop.h"
#include "message-reader.h"
#include "tt-protocol.h"

#include <cstdint>
#include <cstdio>
#include <functional>
#include <list>
#include <memory>
#include <string>

namespace ns3
{

class SessionRecorder;
class TtConnection;

/**
 * What every connection of a calendar shares: per-op message counts, the optional log file
 * (one line per message with its simulated time; its descriptor is handed to clients as
 * their log fd) and an observer (the calendar's Message trace source).
 */
class TtMessageLog
{
  public:
    using Clock = std::function<uint64_t()>; //!< simulated ns, for the log file's lines
    using Observer =
        std::function<void(uint64_t clientId, bool fromClient, const tt::Message& msg)>;

    TtMessageLog();
    ~TtMessageLog();
    TtMessageLog(const TtMessageLog&) = delete;
    TtMessageLog& operator=(const TtMessageLog&) = delete;

    /** Open the log file at path ("" for none: clients then log to /dev/null). Throws a
     * "setup" UmlError if it cannot be opened. */
    void Open(const std::string& path);
    void Flush();
    void Close();
    /** The descriptor clients get with their START reply. */
    int GetFd() const;
    void SetClock(Clock clock);
    void SetObserver(Observer observer);

    void Record(const TtConnection& c, bool fromClient, const tt::Message& msg);
    uint64_t GetCount(uint32_t op, bool fromClient) const;

  private:
    FILE* m_file;
    int m_fd;
    Clock m_clock;
    Observer m_observer;
    uint64_t m_count[2][tt::OP_COUNT + 1]; //!< [fromClient][op], last = unknown ops
};

/**
 * The socket of one client: partial-read framing (a MessageReader: one deadline per
 * message, judged by the loop), our outgoing sequence numbers, the ACKs the client owes,
 * the START reply with its descriptors and slot. Every message in either direction goes
 * through the shared TtMessageLog. What the messages mean is the calendar's.
 */
class TtConnection
{
  public:
    /** Raises an error naming the client (it must throw): (kind, what). */
    using FailHandler = std::function<void(const std::string& kind, const std::string& what)>;

    enum class Read
    {
        NOTHING,           //!< no whole message yet
        MESSAGE,           //!< msg holds one
        CLOSED,            //!< the client left between messages
        CLOSED_MID_MESSAGE //!< the client left with half a message sent
    };

    /** fd is watched on loop; a message not whole within limitS of its first byte fails
     * ("protocol"). */
    TtConnection(int fd, TtMessageLog& log, FailHandler fail, EventLoop& loop, double limitS);
    ~TtConnection();
    TtConnection(const TtConnection&) = delete;
    TtConnection& operator=(const TtConnection&) = delete;

    int GetFd() const;
    void Close();
    /** The START id, known after START (0 before). */
    uint64_t GetId() const;
    bool IsNamed() const;
    /** label: the client in the log file (its id, or which of the clients without one). */
    void SetId(uint64_t id, const std::string& label);
    const std::string& GetLabel() const;
    /** A send failed because the client left: what it sent before is still to be read. */
    bool IsPeerClosed() const;

    /** Read what is there (non-blocking); at most one message per call. */
    Read Receive(tt::Message& msg);
    /** Record a message received (the calendar decides when it counts as received). */
    void LogReceived(const tt::Message& msg);

    /** Send op with our next sequence number; with expectAck the client owes an ACK. */
    void Send(uint32_t op, uint64_t time, bool expectAck);
    /** Answer the client's message seq. */
    void Ack(uint32_t seq, uint64_t time);
    /** The client's ACK for seq: it must be the oldest one owed ("protocol" error if not). */
    void TakeAck(uint32_t seq);
    /** The sequence number of the last message we sent. */
    uint32_t GetLastSeq() const;
    /** Whether the client still owes the ACK for seq. */
    bool IsAckPending(uint32_t seq) const;
    /** Answer START (seq): ACK with ackTime (the shared-memory slot, or 0), passing the
     * shared page and the log descriptor. */
    void ReplyStart(uint32_t seq, uint64_t ackTime, int memfd, int logFd);

  private:
    void Write(const tt::Message& msg);

    int m_fd;
    TtMessageLog& m_log;
    FailHandler m_fail;
    uint64_t m_id;
    std::string m_label;
    bool m_named;
    bool m_peerClosed;
    uint32_t m_seq;
    std::list<uint32_t> m_pendingAcks;
    MessageReader m_rx;
    std::unique_ptr<SessionRecorder> m_recorder; //!< $NS3_UML_RECORD: what the client sent
};

} // namespace ns3

#endif
