// virtio-console (device id 3) on the vhost-user back-end: the guest agent's command channel.
#ifndef NS3_UML_VIRTIO_CONSOLE_DEVICE_H
#define NS3_UML_VIRTIO_CONSOLE_DEVICE_H

#include "vhost-user-backend.h"

#include "ns3/traced-callback.h"

#include <cstdint>
#include <deque>
#include <vector>

namespace ns3
{

/**
 * A guest's agent port: a multiport virtio console with one generic (non-console) port 0,
 * named AGENT_PORT_NAME, carrying agent frames (agent-protocol.h) both ways.
 *
 * Queues: 0 port 0 receive (host to guest), 1 port 0 transmit, 2 control receive, 3
 * control transmit. Control: the guest's DEVICE_READY is answered with PORT_ADD(0), its
 * PORT_READY(0) with PORT_NAME and PORT_OPEN(0, 1) (the host side is connected); its
 * PORT_OPEN(0, 1/0) says whether the agent holds the port open. Linux spins until its
 * control messages are used, so those are taken during the kick itself; the answers go
 * into the control receive queue at the guest's time, as everything else does.
 *
 * Host to guest (Send): bytes wait in a bounded queue until the guest has opened the port
 * (Linux discards data for a closed port), then go into its receive buffers at the current
 * simulated time, one call per batch. Guest to host: a kick on the transmit queue drains it
 * at the guest's simulated time; complete frames (checked: length, reserved, type; a bad
 * one is a GuestError) wait for TakeReceived. Beyond ReceiveLimit bytes the device stops
 * taking the guest's buffers (the guest's writes block, as on a full pipe) until Python
 * takes what waits. A frame type in the stop mask stops the simulation after the event
 * that received it. Without traffic the device adds no events.
 */
class VirtioConsoleDevice : public VhostUserBackend
{
  public:
    static TypeId GetTypeId();
    VirtioConsoleDevice();

    /** Queue bytes for the guest (whole agent frames), written into its receive buffers at
     * the current simulated time once it has opened the port. Throws a UmlError ("device")
     * beyond SendLimit bytes waiting: nothing is queued then. */
    void Send(const uint8_t* data, uint32_t len);
    /** Bytes waiting for the guest (not yet in its buffers). */
    uint32_t GetSendQueueSize() const;
    /** Bytes of complete guest-to-host frames waiting. */
    uint32_t GetReceivedSize() const;
    /** Copy and remove up to len bytes of complete frames (whole frames only): the count
     * copied. */
    uint32_t TakeReceived(uint8_t* buf, uint32_t len);
    /** Stop the simulation (Simulator::Stop) when a guest frame of type t arrives whose
     * bit (1 << (t - 16)) is set in mask; 0: never. */
    void SetStopTypes(uint32_t mask);
    uint32_t GetStopTypes() const;
    /** The guest has the port open (its agent opened AGENT_PORT_DEVICE). */
    bool IsPortOpen() const;
    /** Bytes written into the guest's receive buffers. */
    uint64_t GetRxBytes() const;
    /** Bytes taken from the guest's transmit buffers. */
    uint64_t GetTxBytes() const;
    /** Complete frames received from the guest. */
    uint64_t GetTxFrameCount() const;

    /** A complete frame from the guest: its type, id and payload length. */
    typedef void (*FrameTracedCallback)(uint16_t type, uint32_t id, uint32_t length);

  protected:
    uint64_t GetDeviceFeatures() const override;
    uint32_t GetNumQueues() const override;
    bool ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const override;
    void OnKick(uint32_t queue) override;
    void OnDisconnect() override;
    void DoDispose() override;

  private:
    /** Use the guest's control messages at once (it spins for them) and keep them. */
    void TakeControl();
    /** Answer the control messages taken, write the answers, then the port's data. */
    void ControlEvent();
    void HandleControl(uint32_t id, uint16_t event, uint16_t value);
    void QueueControl(uint16_t event, uint16_t value, const char* name = nullptr);
    /** Write waiting control messages into the control receive queue, one per buffer. */
    void FlushControl();
    void RxEvent();
    /** Write waiting bytes into the port's receive buffers; one call for all. */
    void FlushRx();
    void DrainTx();
    /** Check the frames completed in m_received past m_complete; count, trace, stop. */
    void ScanFrames();

    uint32_t m_sendLimit;
    uint32_t m_receiveLimit;
    uint32_t m_stopTypes;
    bool m_portOpen;
    // Host to guest: bytes not yet written, the first m_sendOffset of the front already
    // written (kept as one vector: Send appends, FlushRx consumes from the front).
    std::vector<uint8_t> m_send;
    size_t m_sendOffset;
    // Guest to host: what the guest wrote; the first m_complete bytes are whole frames.
    std::vector<uint8_t> m_received;
    size_t m_complete;
    bool m_txStalled; // ReceiveLimit reached: the guest's buffers wait on its ring
    std::deque<std::vector<uint8_t>> m_controlIn;  // the guest's control messages, taken
    std::deque<std::vector<uint8_t>> m_controlOut; // the host's, waiting for buffers
    Ptr<EventImpl> m_controlEvent;
    Ptr<EventImpl> m_rxEvent;
    Ptr<EventImpl> m_txEvent;
    uint64_t m_rxBytes;
    uint64_t m_txBytes;
    uint64_t m_txFrames;
    TracedCallback<uint16_t, uint32_t, uint32_t> m_frameTrace;
};

} // namespace ns3

#endif
