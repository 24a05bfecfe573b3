// virtio-net (device id 1) on the vhost-user back-end: frames between a guest and ns-3.
#ifndef NS3_UML_VIRTIO_NET_DEVICE_H
#define NS3_UML_VIRTIO_NET_DEVICE_H

#include "gso-segmenter.h"
#include "rx-merger.h"
#include "vhost-user-backend.h"

#include "ns3/callback.h"
#include "ns3/event-impl.h"
#include "ns3/mac48-address.h"
#include "ns3/nstime.h"
#include "ns3/packet.h"
#include "ns3/traced-callback.h"

#include <deque>
#include <optional>

namespace ns3
{

/**
 * A guest's network interface. TX: a kick is answered at once and the frames become ns-3
 * work at the guest's current simulated time, as fast as the transmit gate lets them. RX:
 * frames go into the buffers the guest posted and the guest is called in-band; without
 * buffers they wait in a bounded queue.
 * Every frame due at the same simulated time is written before one call; with receive
 * coalescing (RxCoalesceTime, RxCoalesceFrames, as ethtool's rx-usecs and rx-frames) frames
 * wait for the end of a window and reach the guest together.
 * With Offloads the guest may hand over unchecksummed and GSO frames (up to 64 KiB): they
 * enter ns-3 as the wire frames a TSO NIC would send (GsoSegmenter); frames for the guest
 * are marked DATA_VALID (ns-3's checksums are real). With Offloads, receive coalescing and
 * RxMerge the device also offers GUEST_TSO4/6 and MRG_RXBUF: the TCP segments of one flow waiting
 * together reach the guest as one GSO frame (RxMerger, attribute RxMerge), spread over as
 * many receive buffers as it needs, as a NIC with hardware GRO hands them over.
 */
class VirtioNetDevice : public VhostUserBackend
{
  public:
    static TypeId GetTypeId();
    VirtioNetDevice();

    void SetMac(Mac48Address mac);
    Mac48Address GetMac() const;
    /** Where the guest's frames go (an Ethernet frame without FCS). */
    void SetTransmitCallback(Callback<void, Ptr<Packet>> cb);
    /** Flow control, as a NIC's transmit ring: frames are taken from the guest only while
     * canSend() is true (null: always). The rest stays on the guest's ring, and the
     * segments of a GSO frame already taken wait here, until ResumeTransmit. */
    void SetTransmitGate(Callback<bool> canSend);
    /** The wire has room again: go on with the guest's frames, at the current time. */
    void ResumeTransmit();
    /** Give the guest an Ethernet frame (without FCS). */
    void DeliverToGuest(Ptr<const Packet> frame);
    /** Wire frames the guest sent, after segmentation (for the benchmark). */
    uint64_t GetTxFrameCount() const;
    /** Frames from ns-3 written into the guest's buffers (for the benchmark): the wire
     * frames, each segment of a merged frame counted. */
    uint64_t GetRxFrameCount() const;

  protected:
    uint64_t GetDeviceFeatures() const override;
    uint32_t GetNumQueues() const override;
    bool ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const override;
    void OnKick(uint32_t queue) override;
    void OnDisconnect() override;
    void DoDispose() override;

  private:
    void DrainTx();
    /** Hand a wire frame to ns-3: counters, GuestTx, the transmit callback. */
    void Transmit(Ptr<Packet> frame);
    bool CanTransmit() const;
    void FlushRx();
    void RxEvent();
    /** Write one frame into the guest's receive buffers (false: not enough posted, nothing
     * taken). `gso`: a merged frame's header (null: an ordinary frame); `wire`: the wire
     * frames it holds. */
    bool WriteRx(const std::vector<uint8_t>& frame, const uint8_t* gso, size_t wire);
    /** Whether the device offers what merging needs (RxMerge with coalescing on). */
    bool OffersRxMerge() const;
    /** Whether FlushRx merges (offered, and GUEST_TSO accepted). */
    bool MergesRx() const;
    /** A frame was queued for the guest: when to write the queue (RX coalescing). */
    void ArmRxFlush();

    Mac48Address m_mac;
    uint32_t m_rxQueueLimit;
    Callback<void, Ptr<Packet>> m_transmit;
    Callback<bool> m_txGate;
    // The wire frames of the guest's chain being sent, and that chain's head: it goes back
    // to the guest (used) once all of them are in ns-3, as a NIC completes a TSO burst.
    std::deque<Ptr<Packet>> m_txBacklog;
    std::optional<uint16_t> m_txHead;
    std::deque<std::vector<uint8_t>> m_rxPending;
    Ptr<EventImpl> m_txEvent;
    Ptr<EventImpl> m_rxEvent;
    TracedCallback<Ptr<const Packet>> m_txTrace;
    TracedCallback<Ptr<const Packet>> m_rxTrace;
    TracedCallback<Ptr<const Packet>> m_dropTrace;
    // Receive coalescing (docs/DESIGN.md section 5) and the benchmark's counters.
    Time m_rxCoalesceTime;
    uint32_t m_rxCoalesceFrames;
    uint64_t m_txFrames;
    uint64_t m_rxFrames;
    bool m_offloads;
    bool m_rxMerge;
    GsoSegmenter m_segmenter;
    RxMerger m_merger;
    std::vector<Virtqueue::Chain> m_rxChains; // the chains one frame is written to (kept)
    std::vector<uint8_t> m_txBuffer; // the buffer being sent (kept: no allocation per frame)
};

} // namespace ns3

#endif
