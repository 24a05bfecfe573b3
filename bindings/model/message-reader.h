// One message at a time from a guest's stream socket, without ever blocking the loop, and
// one deadline per message (docs/DESIGN.md rule 10).
#ifndef NS3_UML_MESSAGE_READER_H
#define NS3_UML_MESSAGE_READER_H

#include "event-loop.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ns3
{

/** Wall-clock seconds a message that has started may take to arrive whole, by default. */
constexpr double MESSAGE_LIMIT_S = 10;

/**
 * Reads one message from a stream socket: what has arrived is kept (with the descriptors,
 * SCM_RIGHTS, that came with any piece of it) until the message is whole, and nothing past
 * its end is read. A read never blocks: meanwhile the loop serves everybody else.
 *
 * From its first byte the whole message must arrive within the limit, however its sender
 * splits it: Guard has the loop judge that deadline for a watched descriptor (a sender that
 * stops halfway is an error even if nothing else happens), ReadWhole waits for the rest in
 * the loop. Either way a stalled message calls the Stalled handler with "sent a partial
 * <protocol> message and stopped: N of M bytes in S s".
 */
class MessageReader
{
  public:
    enum class Status
    {
        PARTIAL,           //!< not whole yet (maybe nothing of it)
        WHOLE,             //!< GetData() holds GetNeed() bytes
        CLOSED,            //!< the sender left (or its socket broke) between messages
        CLOSED_MID_MESSAGE //!< the sender left with part of the message sent
    };

    /** Raises the error naming the sender (it must throw): what. */
    using Stalled = std::function<void(const std::string& what)>;

    /** protocol: the message's name in errors; maxFds: descriptors a message may carry. */
    MessageReader(std::string protocol, size_t maxFds, double limitS, Stalled stalled);
    ~MessageReader();
    MessageReader(const MessageReader&) = delete;
    MessageReader& operator=(const MessageReader&) = delete;

    /** From now on, the deadline of a message on fd (watched on loop) is the loop's to
     * judge; loop nullptr: nobody's (ReadWhole waits on its own). */
    void Guard(EventLoop* loop, int fd);
    /** A new message of need bytes; the descriptors of the last one that were not taken
     * are closed. */
    void Start(size_t need);
    /** The message is need bytes long after all (its header, once in, said so). */
    void Grow(size_t need);
    /** Read what has arrived on fd, up to the message's end. */
    Status Read(int fd);
    /** Read, waiting in loop (its inner tier served) until the message is whole or its
     * sender gone; a message not whole within the limit calls the Stalled handler. */
    Status ReadWhole(EventLoop& loop, int fd);

    const uint8_t* GetData() const;
    size_t GetHave() const;
    size_t GetNeed() const;
    /** The message's descriptors; the owner takes one by removing it. */
    std::vector<int>& Fds();
    /** Whether more descriptors came than a message may carry (the rest were closed). */
    bool HasTooManyFds() const;

  private:
    /** The loop's deadline follows the message: set while it is partial. */
    void Follow();
    int64_t RemainingMs() const;
    [[noreturn]] void Stall() const;
    void CloseFds();

    std::string m_protocol;
    size_t m_maxFds;
    double m_limitS;
    Stalled m_stalled;
    EventLoop* m_loop;
    int m_fd;
    bool m_armed;
    std::vector<uint8_t> m_buf;
    size_t m_have;
    size_t m_need;
    std::vector<int> m_fds;
    bool m_tooManyFds;
    EventLoop::Clock::time_point m_first; //!< when its first byte was read
};

} // namespace ns3

#endif
