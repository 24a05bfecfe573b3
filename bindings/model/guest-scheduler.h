// What a device needs from whoever schedules its guest: the seam between devices and the
// calendar (ns3::UmlCalendar implements it; a test can implement it without one).
#ifndef NS3_UML_GUEST_SCHEDULER_H
#define NS3_UML_GUEST_SCHEDULER_H

#include "event-loop.h"
#include "message-reader.h"

#include <cstdint>

namespace ns3
{

/**
 * The services of the guests' scheduler that a device uses, handed to the device
 * (VhostUserBackend::SetScheduler, UmlBridgeHelper) rather than looked up.
 *
 * Reference counted for ns3::Ptr: an implementation takes Ref/Unref from its own base
 * (ns3::UmlCalendar from ns3::Object; a plain class from
 * ns3::SimpleRefCount<T, UmlGuestScheduler>).
 */
class UmlGuestScheduler
{
  public:
    virtual ~UmlGuestScheduler() = default;
    virtual void Ref() const = 0;
    virtual void Unref() const = 0;

    /** The poll loop the device's sockets are served from (docs/DESIGN.md rule 5). */
    virtual EventLoop& GetEventLoop() = 0;
    /**
     * Wait until fd (a guest's reply) is readable while serving every time socket (rule 5),
     * then turn requests made meanwhile into events (rule 6). Throws a "hang" UmlError
     * naming clientId when the guest does not answer in time.
     */
    virtual void WaitForReply(int fd, uint64_t clientId) = 0;
    /**
     * The device lost its guest (its socket closed). A departure is not a crash (rule 9):
     * if the process behind clientId died abnormally this throws a "crash" UmlError,
     * otherwise (a power-off) it returns.
     */
    virtual void ReportDeparture(uint64_t clientId) = 0;
    /** Wall-clock seconds a guest may take to answer. */
    virtual double GetReplyTimeout() const = 0;
    /** Wall-clock seconds a message the guest has started may take to arrive whole (one
     * deadline per message, docs/DESIGN.md rule 10). */
    virtual double GetMessageTimeout() const
    {
        return MESSAGE_LIMIT_S;
    }
};

} // namespace ns3

#endif
