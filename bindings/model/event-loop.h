// The one poll loop of ns3-uml: every guest socket is served here, so that whatever waits
// for a guest also keeps serving the guests' time sockets (docs/DESIGN.md rule 5).
#ifndef NS3_UML_EVENT_LOOP_H
#define NS3_UML_EVENT_LOOP_H

#include <chrono>
#include <cstdint>
#include <functional>
#include <unordered_map>

namespace ns3
{

/**
 * Two tiers of file descriptors over two epoll instances. "Inner" descriptors (the time
 * sockets) are served everywhere, including while a device waits for a guest's reply; "outer"
 * descriptors (device sockets) only at the top level, so a device never re-enters itself.
 * The top-level set holds both tiers, the inner set the inner tier only.
 */
class EventLoop
{
  public:
    using Handler = std::function<void(uint32_t events)>;
    using Clock = std::chrono::steady_clock;
    /** The owner of descriptors that belong to no client. */
    static constexpr uint64_t NO_OWNER = ~uint64_t{0};

    EventLoop();
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    /** Serve fd with handler; inner descriptors are served in nested waits too. owner: the
     * client it belongs to (its time or device socket), for Hold. */
    void Watch(int fd, Handler handler, bool inner, uint64_t owner = NO_OWNER);
    /** The client a watched descriptor belongs to (a time socket learns it at START). */
    void SetOwner(int fd, uint64_t owner);
    /** Serve none of owner's descriptors until Release: what it sends waits in its sockets
     * (a guest that runs ahead of its turn, docs/DESIGN.md rule 1). */
    void Hold(uint64_t owner);
    void Release(uint64_t owner);
    /** Stop serving fd (safe from inside any handler). */
    void Unwatch(int fd);
    bool IsWatched(int fd) const;
    /**
     * Call expired at `at` (wall time) unless cleared first, in a wait that serves fd (not
     * while it is held), once what fd has sent is read: its handler goes first if fd is
     * readable then. One deadline per descriptor; unwatching it clears it.
     */
    void SetDeadline(int fd, Clock::time_point at, std::function<void()> expired);
    void ClearDeadline(int fd);

    /**
     * Serve events until done() holds. timeoutMs < 0 waits forever; the timeout counts wall
     * time since the call and holds however busy the descriptors keep the loop (checked
     * after every batch too). Returns false on timeout.
     */
    bool ServeUntil(const std::function<bool()>& done, int64_t timeoutMs);

    /** Serve only inner descriptors until done() holds (false on timeout). */
    bool ServeInnerUntil(const std::function<bool()>& done, int64_t timeoutMs);

    /** Wait until fd is readable, serving only inner descriptors meanwhile (false on
     * timeout). */
    bool WaitReadable(int fd, int64_t timeoutMs);

  private:
    struct Entry
    {
        int fd;
        bool inner;
        Handler handler;
        uint64_t owner;
        bool held;
        Clock::time_point deadline;    //!< with expired set
        std::function<void()> expired; //!< empty: no deadline
    };

    void Add(uint64_t token, const Entry& entry);
    void Del(const Entry& entry);

    bool Serve(int epfd, const std::function<bool()>& done, int64_t timeoutMs, uint64_t stopToken);
    void Dispatch(uint64_t token, uint32_t events);
    /** Whether a wait on epfd serves entry. */
    bool Serves(int epfd, const Entry& entry) const;
    /** The earliest deadline of what a wait on epfd serves (Clock::time_point::max(): none). */
    Clock::time_point NextDeadline(int epfd) const;
    /** Call the expired deadlines of what a wait on epfd serves. */
    void Expire(int epfd);

    int m_inner;                                   //!< epoll of inner descriptors
    int m_outer;                                   //!< epoll of every descriptor
    uint64_t m_nextToken;                          //!< tokens survive fd number reuse
    std::unordered_map<uint64_t, Entry> m_entries; //!< by token
    std::unordered_map<int, uint64_t> m_tokens;    //!< fd -> token
    size_t m_deadlines;                            //!< entries with a deadline
};

} // namespace ns3

#endif
