// virtio-net (device id 1) on the vhost-user back-end: frames between a guest and ns-3.
#ifndef NS3_UML_VIRTIO_NET_DEVICE_H
#define NS3_UML_VIRTIO_NET_DEVICE_H

#include "vhost-user-backend.h"

#include "ns3/callback.h"
#include "ns3/event-id.h"
#include "ns3/mac48-address.h"
#include "ns3/packet.h"
#include "ns3/traced-callback.h"

#include <deque>

namespace ns3
{

/**
 * A guest's network interface. TX: a kick is answered at once and the frames become ns-3
 * work at the guest's current simulated time. RX: frames go into the buffers the guest
 * posted and the guest is called in-band; without buffers they wait in a bounded queue.
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
    /** Give the guest an Ethernet frame (without FCS). */
    void DeliverToGuest(Ptr<const Packet> frame);

  protected:
    uint64_t GetDeviceFeatures() const override;
    uint32_t GetNumQueues() const override;
    bool ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const override;
    void OnKick(uint32_t queue) override;
    void OnDisconnect() override;
    void DoDispose() override;

  private:
    void DrainTx();
    void FlushRx();
    bool WriteRx(const std::vector<uint8_t>& frame);

    Mac48Address m_mac;
    uint32_t m_rxQueueLimit;
    Callback<void, Ptr<Packet>> m_transmit;
    std::deque<std::vector<uint8_t>> m_rxPending;
    EventId m_txEvent;
    EventId m_rxEvent;
    TracedCallback<Ptr<const Packet>> m_txTrace;
    TracedCallback<Ptr<const Packet>> m_rxTrace;
    TracedCallback<Ptr<const Packet>> m_dropTrace;
};

} // namespace ns3

#endif
