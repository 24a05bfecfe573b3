// The calendar: ns-3's event queue and the UM time-travel protocol as one schedule.
#ifndef NS3_UML_UML_CALENDAR_H
#define NS3_UML_UML_CALENDAR_H

#include "event-loop.h"
#include "tt-protocol.h"
#include "tt-shared-memory.h"

#include "ns3/event-id.h"
#include "ns3/nstime.h"
#include "ns3/object-factory.h"
#include "ns3/ptr.h"
#include "ns3/scheduler.h"
#include "ns3/simulator-impl.h"
#include "ns3/traced-callback.h"

#include <atomic>
#include <cstdio>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ns3
{

/**
 * Why a run stopped because of a client (or of the calendar's own set-up).
 * The message names the client; Python turns this into ns3_uml.CalendarError.
 */
class UmlCalendarError : public std::runtime_error
{
  public:
    UmlCalendarError(const std::string& kind, bool hasClient, uint64_t clientId,
                     const std::string& what);
    const std::string& GetKind() const;
    bool HasClient() const;
    uint64_t GetClientId() const;

  private:
    std::string m_kind;
    bool m_hasClient;
    uint64_t m_clientId;
};

/**
 * An ns3::SimulatorImpl that is also a UM time-travel calendar (usfstl's controller role).
 *
 * Every client's run request is an ordinary event in ns-3's scheduler, so guests and ns-3
 * events are one (time, insertion) ordered list. Running a client means: grant it free
 * running up to the next event of anybody, send RUN, and serve the event loop until it
 * yields (WAIT) or leaves. Requests become events only at fixed points (after a client
 * yields, after a device's wait for a guest ends, after admission, in client-id order), so
 * the schedule never depends on host timing and is the same in message and shared-memory
 * mode.
 */
class UmlCalendar : public SimulatorImpl
{
  public:
    static TypeId GetTypeId();

    UmlCalendar();
    ~UmlCalendar() override;

    /** The calendar installed as ns-3's SimulatorImpl (throws if another one is). */
    static Ptr<UmlCalendar> Get();

    // SimulatorImpl
    void Destroy() override;
    bool IsFinished() const override;
    void Stop() override;
    EventId Stop(const Time& delay) override;
    EventId Schedule(const Time& delay, EventImpl* event) override;
    void ScheduleWithContext(uint32_t context, const Time& delay, EventImpl* event) override;
    EventId ScheduleNow(EventImpl* event) override;
    EventId ScheduleDestroy(EventImpl* event) override;
    void Remove(const EventId& id) override;
    void Cancel(const EventId& id) override;
    bool IsExpired(const EventId& id) const override;
    void Run() override;
    Time Now() const override;
    Time GetDelayLeft(const EventId& id) const override;
    Time GetMaximumSimulationTime() const override;
    void SetScheduler(ObjectFactory schedulerFactory) override;
    uint32_t GetSystemId() const override;
    uint32_t GetContext() const override;
    uint64_t GetEventCount() const override;

    /** Create the listening socket at SocketPath now (Run does it if needed). */
    void Listen();
    std::string GetSocketPath() const;
    /** Run() first waits until this many clients have connected and yielded once. */
    void ExpectClients(uint32_t n);
    /** Serve until n more clients have connected and yielded once (e.g. inside an event). */
    void AdmitClients(uint32_t n);
    /** The process behind a client: its abnormal death turns a departure into an error. */
    void RegisterProcess(uint64_t clientId, int pid);
    /** A device lost its guest: if the process behind that client died abnormally, stop
     * the run with a crash error naming it (a power-off is no error). */
    void CheckDeparture(uint64_t clientId);
    /** A descriptor (Python's signal wakeup fd) whose SIGINT/SIGTERM byte stops the run. */
    void SetInterruptFd(int fd);

    // Device hooks
    /** Wait for fd (a guest's reply) while serving every time socket (rule 5); then turn
     * any request made meanwhile into events. Throws a "hang" error on timeout. */
    void WaitForReply(int fd, uint64_t clientId);
    bool HasRunningClient() const;
    uint64_t GetRunningClientId() const;
    /** Lower the running client's free-until (Schedule does this by itself). */
    void LowerFreeUntil(Time t);
    EventLoop& GetEventLoop();

    // Results
    uint64_t GetMessageCount(uint32_t op, bool fromClient) const;
    uint64_t GetHandoffCount() const;
    /** Clients, messages and times as a JSON object. */
    std::string GetSummaryJson() const;
    /**
     * The simulated time the schedule has committed to, in ns. Safe to call from another
     * thread while Run() blocks (progress bars).
     */
    uint64_t GetProgressNs() const;
    /** Close every client and the listening socket and remove its file. */
    void Shutdown();

  private:
    enum class State
    {
        CONNECTED, // no START yet
        STARTING,  // after START, running until its first WAIT
        WAITING,
        RUNNING,
        GONE
    };

    struct Client
    {
        int fd = -1;
        uint64_t id = 0;
        uint16_t slot = 0;      // shared-memory slot, 0 = none
        bool shmKnown = false;  // capa is read once, at the first message after START
        bool shm = false;       // the client shares time through the page
        uint64_t offset = 0;    // calendar ns at START
        State state = State::CONNECTED;
        uint32_t seq = 0;       // our outgoing sequence numbers
        std::list<uint32_t> pendingAcks;
        tt::ShmClient local{};  // the request record of a message-mode client
        EventId event;
        uint64_t scheduledNs = tt::TIME_NEVER;
        unsigned char rx[sizeof(tt::Message)];
        size_t rxLen = 0;
        int pid = -1;
        bool peerClosed = false; // a send failed: the read side will see it leave
        uint64_t runs = 0;
        uint64_t lastRunNs = 0;
        std::string departure;
    };

    void DoDispose() override;
    void ProcessOneEvent();
    void ProcessEventsWithContext();
    EventId Insert(uint64_t ts, EventImpl* event, uint32_t context);

    uint64_t CurrentTs() const;
    uint64_t CurrentNs() const;
    uint64_t NextEventNs() const;
    tt::ShmClient* Record(Client* c);
    bool UsesShm(Client* c);
    std::string Name(const Client* c) const;
    [[noreturn]] void Fail(const std::string& kind, const Client* c, const std::string& what);

    void OnListenReadable();
    bool IsAdmitting() const;
    void OnInterrupt();
    void OnClientReadable(Client* c);
    void HandleMessage(Client* c, const tt::Message& msg);
    void HandleStart(Client* c, const tt::Message& msg);
    void Depart(Client* c, bool midMessage);
    void CheckProcess(Client* c);
    void Write(Client* c, const tt::Message& msg);
    void Send(Client* c, uint32_t op, uint64_t time, bool expectAck);
    void Ack(Client* c, uint32_t seq, uint64_t time);
    void Log(const Client* c, bool fromClient, const tt::Message& msg);

    void ServeClientsUntilAdmitted(uint32_t target);
    void AcceptLateClients();
    void SyncRequests();
    void RunClient(Client* c);
    /** Grant a client free running up to ns; with confirm, a message-mode client must
     * have acknowledged it before this returns. */
    void SetFreeUntil(Client* c, uint64_t ns, bool confirm);
    void LowerFreeUntilNs(uint64_t ns);
    int64_t YieldTimeoutMs() const;

    // The event queue (as DefaultSimulatorImpl keeps it).
    Ptr<Scheduler> m_events;
    std::list<EventId> m_destroyEvents;
    struct EventWithContext
    {
        uint32_t context;
        uint64_t timestamp;
        EventImpl* event;
    };
    std::list<EventWithContext> m_eventsWithContext;
    bool m_eventsWithContextEmpty;
    std::mutex m_eventsWithContextMutex;
    bool m_stop;
    uint32_t m_uid;
    uint32_t m_currentUid;
    // Atomic so that GetProgressNs() may read it from another thread during Run().
    std::atomic<uint64_t> m_currentTs;
    uint32_t m_currentContext;
    uint64_t m_eventCount;
    int m_unscheduledEvents;
    std::thread::id m_mainThreadId;

    // Attributes
    std::string m_socketPath;
    bool m_sharedMemory;
    uint16_t m_maxClients;
    uint64_t m_todEpoch;
    double m_yieldTimeout;
    double m_connectTimeout;
    Time m_maxFreeRun;
    std::string m_logPath;

    // The calendar's state
    std::unique_ptr<EventLoop> m_loop;
    std::unique_ptr<TtSharedMemory> m_shm;     // version 2, when SharedMemory is on
    std::unique_ptr<TtSharedMemory> m_noShm;   // version 0: "use messages"
    int m_listenFd;
    int m_logFd;                               // handed to clients as the log fd
    int m_interruptFd;
    FILE* m_log;
    std::map<uint64_t, std::unique_ptr<Client>> m_clients; // by START id: the fixed order
    std::vector<std::unique_ptr<Client>> m_unnamed;        // accepted, no START yet
    std::map<uint64_t, int> m_pids;
    Client* m_running;
    uint64_t m_grantedFreeUntil;                // ns, for the running client
    uint32_t m_expected;
    uint32_t m_admitted;
    uint64_t m_handoffs;
    uint64_t m_msgCount[2][tt::OP_COUNT + 1];   // [fromClient][op], last = unknown
    double m_wallSeconds;

    TracedCallback<uint64_t, Time> m_clientRunTrace;
    TracedCallback<uint64_t, std::string> m_clientDepartedTrace;
    TracedCallback<uint64_t, bool, uint32_t, uint32_t, uint64_t> m_messageTrace;
};

} // namespace ns3

#endif
