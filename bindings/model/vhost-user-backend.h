// A vhost-user back-end for UML's virtio_uml front-end, served from its scheduler's loop.
#ifndef NS3_UML_VHOST_USER_BACKEND_H
#define NS3_UML_VHOST_USER_BACKEND_H

#include "guest-memory.h"
#include "guest-scheduler.h"
#include "message-reader.h"
#include "vhost-user-protocol.h"
#include "virtqueue.h"

#include "ns3/event-impl.h"
#include "ns3/make-event.h"
#include "ns3/nstime.h"
#include "ns3/object.h"
#include "ns3/ptr.h"
#include "ns3/simulator.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ns3
{

class SessionRecorder;

/**
 * The generic part of a device: the vhost-user socket, feature and protocol negotiation, the
 * memory table, the rings, in-band kicks and calls with REPLY_ACK. A device (virtio-net)
 * derives from it. Anything malformed the guest sends is an error for that guest: the run
 * stops with a UmlError naming it; nothing is read or written outside its memory
 * (docs/DESIGN.md rule 10). The guest's scheduler (ns3::UmlCalendar) is handed to it with
 * SetScheduler before Listen.
 */
class VhostUserBackend : public Object
{
  public:
    static TypeId GetTypeId();
    VhostUserBackend();
    ~VhostUserBackend() override;

    /** Who schedules the guest: its loop serves the sockets, it waits for the guest's
     * replies and judges its departures. */
    void SetScheduler(Ptr<UmlGuestScheduler> scheduler);
    Ptr<UmlGuestScheduler> GetScheduler() const;
    /** Listen at SocketPath, served by the scheduler's event loop. */
    void Listen();
    /** Close the connection and the socket (removing its file). */
    void Close();
    bool IsConnected() const;
    uint64_t GetClientId() const;
    /** Kicks the guest sent (VRING_KICK messages), for the benchmark. */
    uint64_t GetKickCount() const;
    /** Calls (VRING_CALL) sent to the guest, for the benchmark. */
    uint64_t GetCallCount() const;
    /** Whether VIRTIO_F_EVENT_IDX was negotiated with the guest (the last one that
     * connected, even once it has gone). */
    bool UsesEventIdx() const;
    /** The device features the guest accepted (the last one that connected, even once it
     * has gone). */
    uint64_t GetNegotiatedFeatures() const;
    /** The node (its id: the ns-3 context) under which the device's events run, as with
     * ns-3's own devices (the bridge sets it). */
    void SetContext(uint32_t context);
    uint32_t GetContext() const;

  protected:
    void DoDispose() override;

    /** The device's feature bits; the transport's own (VIRTIO_F_EVENT_IDX, bit 30) are
     * added by the back-end. */
    virtual uint64_t GetDeviceFeatures() const = 0;
    virtual uint32_t GetNumQueues() const = 0;
    /** Config space bytes [offset, offset+len); false if out of range. */
    virtual bool ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const = 0;
    /** The driver kicked a queue. Must not block: schedule the work as an ns-3 event. */
    virtual void OnKick(uint32_t queue) = 0;
    virtual void OnDisconnect();

    Virtqueue& Queue(uint32_t i);
    const GuestMemory& Memory() const;
    uint64_t GetAcceptedFeatures() const;
    /** Interrupt the guest for a queue (VRING_CALL), waiting for its acknowledgement while
     * the scheduler keeps serving its time socket (docs/DESIGN.md rule 5). */
    void CallGuest(uint32_t queue);
    /** An error naming the guest. While its memory is not intact, the error says so
     * instead: what went wrong came from the zeros that replaced the lost pages. */
    [[noreturn]] void GuestError(const std::string& what) const;
    /** GuestError if the guest's memory file shrank under the device (GuestMemory::IsIntact):
     * nothing read since the last check may be used (docs/DESIGN.md rule 10). */
    void CheckMemory() const;
    /** Append the chain's device-readable bytes to out, the guest's memory intact throughout
     * (else GuestError): the one way devices read what a guest hands over. */
    void CopyFromGuest(const Virtqueue::Chain& chain, std::vector<uint8_t>& out) const;
    /** Return a chain the device wrote into (Virtqueue::Push), the guest's memory intact
     * (else GuestError): no buffer written into the zeros of a shrunk file is used. */
    void PushWritten(uint32_t queue, uint16_t head, uint32_t written);
    /** A batch of work on a queue ends: CheckMemory, then, if buffers were used and the
     * driver wants it, CallGuest. */
    void EndBatch(uint32_t queue, bool used);

    /** Schedule fn after delay under the node's context unless pending is (then nothing).
     * One event, inserted as Schedule would: the order of events is the same, only the
     * context differs (the node's, for whatever the device's work causes in ns-3). */
    template <class Device>
    void ScheduleAfter(Ptr<EventImpl>& pending, Time delay, void (Device::*fn)())
    {
        if (IsPending(pending))
        {
            return;
        }
        pending = MakeEvent(fn, static_cast<Device*>(this));
        Simulator::ScheduleWithContext(m_context, delay, PeekPointer(pending));
    }

    /** The same at the current time: a kick's work at the guest's time (docs/DESIGN.md
     * rule 2: scheduling it lowers the guest's free-until before the kick is answered). */
    template <class Device>
    void ScheduleNow(Ptr<EventImpl>& pending, void (Device::*fn)())
    {
        ScheduleAfter(pending, Time(0), fn);
    }

    /** ScheduleWithContext gives no EventId: devices keep the events themselves. */
    static bool IsPending(const Ptr<EventImpl>& event);
    static void Cancel(Ptr<EventImpl>& event);

    std::string m_socketPath;
    uint64_t m_clientId;

  private:
    /** What GET_FEATURES answers: the device's features and the transport's. */
    uint64_t OfferedFeatures() const;
    void OnListenReadable();
    void OnConnReadable();
    void Dispatch(const vhost::Header& h, const uint8_t* payload, std::vector<int>& fds);
    void Reply(const vhost::Header& h, const void* payload, uint32_t size);
    void ReplyAck(const vhost::Header& h, uint64_t status);
    void Disconnect();

    Ptr<UmlGuestScheduler> m_scheduler;
    int m_listenFd;
    int m_connFd;
    std::unique_ptr<MessageReader> m_rx; //!< the connection's message so far
    int m_backendFd;
    uint64_t m_features;
    uint64_t m_protocolFeatures;
    GuestMemory m_memory;
    std::vector<Virtqueue> m_queues;
    bool m_offerEventIdx;
    uint64_t m_negotiated; // the last guest's accepted features (kept after it went)
    uint64_t m_kicks;
    uint64_t m_calls;
    uint32_t m_context;
    std::unique_ptr<SessionRecorder> m_recorder; // $NS3_UML_RECORD: what the guest sent
};

} // namespace ns3

#endif
