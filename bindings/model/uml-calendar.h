// The calendar: ns-3's event list and the UM time-travel protocol as one schedule.
#ifndef NS3_UML_UML_CALENDAR_H
#define NS3_UML_UML_CALENDAR_H

#include "client-process.h"
#include "event-loop.h"
#include "guest-scheduler.h"
#include "interrupt-watch.h"
#include "tt-admission.h"
#include "tt-connection.h"
#include "tt-protocol.h"
#include "tt-shared-memory.h"
#include "uml-error.h"
#include "uml-event-list.h"

#include "ns3/event-id.h"
#include "ns3/nstime.h"
#include "ns3/ptr.h"
#include "ns3/simulator.h"
#include "ns3/traced-callback.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ns3
{

/** One client as the calendar saw it: a row of the run's summary. */
struct UmlClientRecord
{
    uint64_t id;            //!< its START id (tt::ID_NONE: it gave none)
    std::string name;       //!< as messages name it ("client 42", "client without id #2")
    bool byConnection;      //!< without an id: ordered among such clients by connection
    uint16_t slot;          //!< shared-memory slot, 0 = none
    bool shm;               //!< it shared time through the page
    uint64_t offsetNs;      //!< calendar time at its START
    uint64_t runs;          //!< RUNs granted
    uint64_t lastRunNs;     //!< calendar time of the last one
    std::string state;      //!< "connected", "starting", "waiting", "running" or "gone"
    std::string departure;  //!< how it left ("" while there)
    int pid;                //!< the process behind it, -1 if unknown
    std::string command;    //!< that process's command name ("" if unknown)
    std::string process;    //!< how that process stood when it left ("" if unknown)
};

/**
 * An ns3::SimulatorImpl that is also a UM time-travel calendar (usfstl's controller role).
 *
 * Every client's run request is an ordinary event in ns-3's scheduler, so guests and ns-3
 * events are one (time, insertion) ordered list. Running a client means: grant it free
 * running up to the next event of anybody, send RUN, and serve the event loop until it
 * yields (WAIT) or leaves. Requests become events only at fixed points (after a client
 * yields, after a device's wait for a guest ends, after admission, in client-id order:
 * docs/DESIGN.md rule 6), so the schedule never depends on host timing and is the same in
 * message and shared-memory mode.
 *
 * Its collaborators: TtAdmission (the listening socket and admission, rule 7), one
 * TtConnection per client (the wire), ClientProcesses (rule 9), InterruptWatch (Ctrl-C).
 * Devices see it as a UmlGuestScheduler.
 */
class UmlCalendar : public UmlEventList, public UmlGuestScheduler
{
  public:
    static TypeId GetTypeId();

    /** TracedCallback signature of ClientRun: (client id, time). */
    typedef void (*ClientRunCallback)(uint64_t clientId, Time time);
    /** TracedCallback signature of ClientDeparted: (client id, how). */
    typedef void (*ClientDepartedCallback)(uint64_t clientId, std::string how);
    /** TracedCallback signature of Message: (client id, from client, op, seq, time). */
    typedef void (*MessageCallback)(uint64_t clientId,
                                    bool fromClient,
                                    uint32_t op,
                                    uint32_t seq,
                                    uint64_t time);

    UmlCalendar();
    ~UmlCalendar() override;

    /** The calendar installed as ns-3's SimulatorImpl (throws if another one is). */
    static Ptr<UmlCalendar> Get();

    // Reference counting for both bases: an ns3::Object's.
    void Ref() const override;
    void Unref() const override;

    // SimulatorImpl
    void Destroy() override;
    void Run() override;

    /** Create the listening socket at SocketPath now (Run does it if needed). */
    void Listen();
    std::string GetSocketPath() const;
    /** Run() first waits until this many clients have connected and yielded once. */
    void ExpectClients(uint32_t n);
    /** Serve until n more clients have connected and yielded once (e.g. inside an event). */
    void AdmitClients(uint32_t n);
    /** The process behind a client (a child of ours; otherwise its socket's peer is): its
     * abnormal death turns a departure into an error. */
    void RegisterProcess(uint64_t clientId, int pid);
    /**
     * Serve until the client that pid (a child of ours, started just before) runs has
     * connected and yielded once, register pid as its process and return its START id:
     * the one client admitted meanwhile is the process's (docs/DESIGN.md rule 7). Throws a
     * "crash" error if pid ends before, a "setup" error if its client left before its
     * first WAIT, a "timeout" one after timeoutS seconds of wall time.
     */
    uint64_t AdmitProcess(int pid, double timeoutS);
    /** The ns-3 node a client is the guest of (its run events carry the node's context),
     * so that it belongs to the node's independent group. A client without one is global:
     * it stops for every event, and every client stops for it. */
    void SetClientContext(uint64_t clientId, uint32_t context);
    /** A descriptor (Python's signal wakeup fd) whose SIGINT/SIGTERM byte stops the run;
     * -1 for none. */
    void SetInterruptFd(int fd);
    /** This calendar as the scheduler devices are handed. */
    Ptr<UmlGuestScheduler> GetGuestScheduler();

    // UmlGuestScheduler
    EventLoop& GetEventLoop() override;
    void WaitForReply(int fd, uint64_t clientId) override;
    void ReportDeparture(uint64_t clientId) override;
    double GetReplyTimeout() const override;
    double GetMessageTimeout() const override;

    // Results
    uint64_t GetMessageCount(uint32_t op, bool fromClient) const;
    uint64_t GetHandoffCount() const;
    /** Runs started while another guest's run was going on (ParallelRuns > 1). */
    uint64_t GetRunsAheadCount() const;
    /** Group the nodes now (as Run will) and return how many groups they form. */
    uint32_t ComputeGroups();
    /** Every client that sent START, in the calendar's order: by id, then the clients
     * without one in the order they connected. */
    std::vector<UmlClientRecord> GetClientRecords() const;
    /** What the calendar warned about (also in the summary), oldest first. */
    uint32_t GetWarningCount() const;
    std::string GetWarning(uint32_t i) const;
    /** The run's summary as one JSON object (what Calendar.summary returns): one call, since
     * cppyy compiles a wrapper for each method and type at its first use. */
    std::string GetSummaryJson() const;
    /** Wall-clock seconds spent in Run(). */
    double GetWallSeconds() const;
    /** Whether shared-memory scheduling was offered. */
    bool UsesSharedMemory() const;
    /** Independent groups the nodes formed at the last Run (1: all joined; 0: off). */
    uint32_t GetNGroups() const;
    /**
     * The simulated time the schedule has committed to, in ns. Safe to call from another
     * thread while Run() blocks (progress bars).
     */
    uint64_t GetProgressNs() const;
    /** Whether anything is left to do: false once every client is gone or waits with no
     * request and no event is pending (Run would return at once). */
    bool HasPendingEvents() const;
    /** Close every client and the listening socket and remove its file. */
    void Shutdown();

  protected:
    void DoDispose() override;
    uint64_t CurrentTs() const override;
    void EventInserted(uint64_t ts, uint32_t context) override;
    void EventStarting() override;

  private:
    enum class State
    {
        CONNECTED, // no START yet
        STARTING,  // after START, running until its first WAIT
        WAITING,
        RUNNING,
        GONE
    };

    /** The calendar's view of one client; its socket is conn. */
    struct Client
    {
        std::unique_ptr<TtConnection> conn;
        uint16_t slot = 0;      // shared-memory slot, 0 = none
        bool shmKnown = false;  // capa is read once, at the first message after START
        bool shm = false;       // the client shares time through the page
        uint64_t offset = 0;    // calendar ns at START
        State state = State::CONNECTED;
        tt::ShmClient local{};  // the request record of a message-mode client
        uint32_t context = Simulator::NO_CONTEXT; // its node; none: global
        TtSharedMemory* page = nullptr;           // its group's scheduling page, if any
        uint64_t grantNs = tt::TIME_NEVER;        // the free-until of its run
        uint64_t runTs = 0;                       // time steps it reached in its run
        bool inBatch = false;                     // taken into a batch, not started yet
        EventId event;
        uint64_t scheduledNs = tt::TIME_NEVER;
        uint32_t withoutId = 0; // its number among the clients without an id; 0: it has one
        ClientProcess process;  // the peer of its socket, or the child registered for it
        uint64_t runs = 0;
        uint64_t lastRunNs = 0;
        std::string departure;
        std::string processEnd; // how its process stood when it left

        uint64_t Id() const;
    };

    /** Where a client sorts (docs/DESIGN.md rule 3): by START id; the clients without one
     * (tt::ID_NONE) after all others, in the order they were admitted. */
    struct ClientKey
    {
        uint64_t id;
        uint32_t withoutId; // 0 for a client with an id
        auto operator<=>(const ClientKey&) const = default;
    };

    uint64_t CurrentNs() const;
    /** The scheduling page of a context's group (created on first use). */
    TtSharedMemory* PageFor(uint32_t context);
    /** Every page's "now" (for guests interrupted while they wait). */
    void SetPagesTime(uint64_t ns);
    /** Whether c belongs to one of several independent groups (else it is global). */
    bool IsGrouped(const Client* c) const;
    /** The next event that can reach c (its group's or a global one), in ns. */
    uint64_t NextEventNsFor(const Client* c) const;
    tt::ShmClient* Record(Client* c);
    bool UsesShm(Client* c);
    /** "client 42", "client without id #2". */
    std::string Label(const Client* c) const;
    /** The label with the client's process: "client 42 (pid 1234, linux)". */
    std::string Name(const Client* c) const;
    /** A warning for the user: logged, kept for the summary. */
    void Warn(const std::string& what);
    [[noreturn]] void Fail(const std::string& kind, const Client* c, const std::string& what);
    Client* Find(uint64_t clientId) const;

    // Clients' messages (uml-calendar-clients.cc)
    void OnAccepted(int fd);
    bool IsAdmitting() const;
    void OnClientReadable(Client* c);
    /** Drop a connection that left without START: it holds no admission, has no record. */
    void Forget(Client* c);
    /** Take c out of the list of connections without START. */
    std::unique_ptr<Client> TakeUnnamed(Client* c);
    void HandleMessage(Client* c, const tt::Message& msg);
    void HandleStart(Client* c, const tt::Message& msg);
    uint16_t FreeSlot(const TtSharedMemory* page) const;
    void HandleRequest(Client* c, const tt::Message& msg);
    void HandleWait(Client* c, const tt::Message& msg);
    void HandleUpdate(Client* c, const tt::Message& msg);
    void HandleBroadcast(Client* c, const tt::Message& msg);
    void Depart(Client* c, bool midMessage);
    /** Judge c's process once it has ended (or its grace is over), serving the others
     * meanwhile: "crash" if it died abnormally (docs/DESIGN.md rule 9). */
    void WatchProcess(Client* c);
    /** The verdict: fails with "crash" on an abnormal end; for a client that left, records
     * how its process stood and reports the departure. */
    void ConcludeProcess(Client* c, const ClientProcess::End& end);
    /** At the end of a run: wait out the grace of the processes not judged yet. */
    void SettleDepartures();

    // The hand-off policy
    void HoldForAdmission();
    void ServeClientsUntilAdmitted(uint32_t target);
    void AcceptLateClients();
    void SyncRequests();
    void RunClient(Client* c);
    /** The guests of other groups that run in c's batch (their events taken out, their
     * sockets held), in the order of their events. */
    std::vector<Client*> TakeBatch(Client* c);
    /** Grant c its free-until and send RUN at now (ns). */
    void StartRun(Client* c, uint64_t now);
    /** Serve the loop for c until it yields; commit the time it reached. */
    void ServeRun(Client* c);
    /** Grant a client free running up to ns; with confirm, a message-mode client must
     * have acknowledged it before this returns. */
    void SetFreeUntil(Client* c, uint64_t ns, bool confirm);
    /** Something with this context will happen at ns: the running client, if it can reach
     * it, must not run past it (docs/DESIGN.md rule 2). */
    void LowerFreeUntilNs(uint32_t context, uint64_t ns);
    int64_t YieldTimeoutMs() const;

    // Attributes
    std::string m_socketPath;
    bool m_sharedMemory;
    uint16_t m_maxClients;
    uint64_t m_todEpoch;
    double m_yieldTimeout;
    double m_connectTimeout;
    double m_messageTimeout;
    Time m_maxFreeRun;
    std::string m_logPath;
    bool m_independentGroups;
    Time m_maxAhead;
    uint32_t m_parallelRuns;

    // The calendar's state
    std::unique_ptr<EventLoop> m_loop;
    // Version-2 pages, when SharedMemory is on: one per independent group (GLOBAL for the
    // rest), since the guests of different groups may run at once (a page has one
    // running client, one free-until).
    std::map<uint32_t, std::unique_ptr<TtSharedMemory>> m_pages;
    std::unique_ptr<TtSharedMemory> m_noShm;   // version 0: "use messages"
    TtAdmission m_admission;
    TtMessageLog m_messages;
    ClientProcesses m_processes;
    std::map<uint64_t, uint32_t> m_clientContexts; // from SetClientContext, by client id
    InterruptWatch m_interrupt;
    std::map<ClientKey, std::unique_ptr<Client>> m_clients; // the fixed order (rule 3)
    uint32_t m_withoutId;                                  // clients without an id so far
    std::vector<std::string> m_warnings;
    std::vector<std::unique_ptr<Client>> m_unnamed;        // accepted, no START yet
    Client* m_running;
    uint32_t m_expected;
    uint64_t m_handoffs;
    uint64_t m_runsAhead;
    double m_wallSeconds;

    TracedCallback<uint64_t, Time> m_clientRunTrace;
    TracedCallback<uint64_t, std::string> m_clientDepartedTrace;
    TracedCallback<uint64_t, bool, uint32_t, uint32_t, uint64_t> m_messageTrace;
};

} // namespace ns3

#endif
