// On a guest's ns-3 node: bridges the guest's virtio-net interface to a real ns-3 device.
#ifndef NS3_UML_UML_BRIDGE_NET_DEVICE_H
#define NS3_UML_UML_BRIDGE_NET_DEVICE_H

#include "virtio-net-device.h"

#include "ns3/mac48-address.h"
#include "ns3/net-device-queue-interface.h"
#include "ns3/net-device.h"
#include "ns3/node.h"
#include "ns3/traced-callback.h"

namespace ns3
{

/**
 * Like TapBridge, in simulated time. Three ways to meet the bridged device:
 * - it can send from any MAC (CSMA, a Wi-Fi AP): a real bridge, the guest keeps its MAC;
 * - it needs ARP but sends only from its own MAC (Wi-Fi station, ad hoc): the guest uses the
 *   device's MAC;
 * - it carries only IP and has no ARP (point-to-point): the bridge answers the guest's ARP
 *   and neighbour solicitations itself and maps Ethernet frames to and from the link.
 * The guest's frames enter ns-3 under this node's context, as with ns-3's own devices.
 * With FlowControl (default) the guest's frames are taken only while the bridged device's
 * transmit queue has room (ns-3's NetDeviceQueue flow control, which the node's own
 * traffic-control layer would use; a guest's node has none): the guest's ring holds the
 * rest, as a NIC's does.
 */
class UmlBridgeNetDevice : public NetDevice
{
  public:
    static TypeId GetTypeId();
    UmlBridgeNetDevice();

    /** The ns-3 device on this node whose channel the guest's interface joins. */
    void SetBridgedNetDevice(Ptr<NetDevice> device);
    Ptr<NetDevice> GetBridgedNetDevice() const;
    /** The guest side: a virtio-net device (its MAC is set here to what the mode needs). */
    void SetVirtioNetDevice(Ptr<VirtioNetDevice> virtio);
    Ptr<VirtioNetDevice> GetVirtioNetDevice() const;
    /** The MAC the guest's interface has. */
    Mac48Address GetGuestMac() const;

    // NetDevice: this device is a bridge port, not an interface of the node's own stack.
    void SetIfIndex(const uint32_t index) override;
    uint32_t GetIfIndex() const override;
    Ptr<Channel> GetChannel() const override;
    void SetAddress(Address address) override;
    Address GetAddress() const override;
    bool SetMtu(const uint16_t mtu) override;
    uint16_t GetMtu() const override;
    bool IsLinkUp() const override;
    void AddLinkChangeCallback(Callback<void> callback) override;
    bool IsBroadcast() const override;
    Address GetBroadcast() const override;
    bool IsMulticast() const override;
    Address GetMulticast(Ipv4Address multicastGroup) const override;
    Address GetMulticast(Ipv6Address addr) const override;
    bool IsBridge() const override;
    bool IsPointToPoint() const override;
    bool Send(Ptr<Packet> packet, const Address& dest, uint16_t protocolNumber) override;
    bool SendFrom(Ptr<Packet> packet,
                  const Address& source,
                  const Address& dest,
                  uint16_t protocolNumber) override;
    Ptr<Node> GetNode() const override;
    void SetNode(Ptr<Node> node) override;
    bool NeedsArp() const override;
    void SetReceiveCallback(NetDevice::ReceiveCallback cb) override;
    void SetPromiscReceiveCallback(NetDevice::PromiscReceiveCallback cb) override;
    bool SupportsSendFrom() const override;

  protected:
    void DoDispose() override;

  private:
    enum class Mode
    {
        BRIDGE,
        LOCAL,
        IP_ONLY
    };

    void FromGuest(Ptr<Packet> frame);
    void FromBridged(Ptr<NetDevice> device,
                     Ptr<const Packet> packet,
                     uint16_t protocol,
                     const Address& source,
                     const Address& destination,
                     NetDevice::PacketType packetType);
    void ToGuest(const Mac48Address& dst, const Mac48Address& src, uint16_t type,
                 Ptr<const Packet> payload);
    bool AnswerArp(const uint8_t* eth, size_t len);
    bool AnswerNeighbourSolicitation(const uint8_t* eth, size_t len);
    /** Gate the guest's transmissions on the bridged device's queue, if it has one. */
    void ConnectFlowControl();
    bool CanTransmit() const;
    void OnTransmitWake();

    Ptr<Node> m_node;
    Ptr<NetDevice> m_bridged;
    Ptr<VirtioNetDevice> m_virtio;
    bool m_flowControl;
    Ptr<NetDeviceQueue> m_txQueue; // the bridged device's transmit queue (flow control)
    Mode m_mode;
    Mac48Address m_guestMac;
    Mac48Address m_peerMac; // what the guest sees as the other end of an IP-only link
    uint32_t m_ifIndex;
    uint16_t m_mtu;
    TracedCallback<Ptr<const Packet>> m_fromGuestTrace;
    TracedCallback<Ptr<const Packet>> m_toGuestTrace;
    TracedCallback<Ptr<const Packet>> m_dropTrace;
};

} // namespace ns3

#endif
