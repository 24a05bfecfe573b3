#include "uml-bridge-net-device.h"

#include "frame-bytes.h"

#include "ns3/boolean.h"
#include "ns3/channel.h"
#include "ns3/log.h"
#include "ns3/trace-source-accessor.h"

#include <cstring>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlBridgeNetDevice");
NS_OBJECT_ENSURE_REGISTERED(UmlBridgeNetDevice);

namespace
{
using namespace framebytes;
constexpr size_t ARP_LEN = 28;
constexpr uint8_t ND_NEIGHBOR_SOLICIT = 135;
constexpr uint8_t ND_NEIGHBOR_ADVERT = 136;

} // namespace

TypeId
UmlBridgeNetDevice::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::UmlBridgeNetDevice")
            .SetParent<NetDevice>()
            .SetGroupName("Uml")
            .AddConstructor<UmlBridgeNetDevice>()
            .AddAttribute("FlowControl",
                          "Take the guest's frames only while the bridged device's transmit "
                          "queue has room, as a NIC's transmit ring: the guest's own queueing "
                          "(qdisc, TCP small queues) holds the rest and nothing is dropped "
                          "at the device's queue. False: every frame is handed over at once "
                          "and the device's queue drops what does not fit.",
                          BooleanValue(true),
                          MakeBooleanAccessor(&UmlBridgeNetDevice::m_flowControl),
                          MakeBooleanChecker())
            .AddTraceSource("FromGuest",
                            "An Ethernet frame the guest sent.",
                            MakeTraceSourceAccessor(&UmlBridgeNetDevice::m_fromGuestTrace),
                            "ns3::Packet::TracedCallback")
            .AddTraceSource("ToGuest",
                            "An Ethernet frame passed to the guest.",
                            MakeTraceSourceAccessor(&UmlBridgeNetDevice::m_toGuestTrace),
                            "ns3::Packet::TracedCallback")
            .AddTraceSource("Drop",
                            "A guest frame the bridged device cannot carry.",
                            MakeTraceSourceAccessor(&UmlBridgeNetDevice::m_dropTrace),
                            "ns3::Packet::TracedCallback");
    return tid;
}

UmlBridgeNetDevice::UmlBridgeNetDevice()
    : m_flowControl(true),
      m_mode(Mode::BRIDGE),
      m_ifIndex(0),
      m_mtu(1500)
{
}

void
UmlBridgeNetDevice::DoDispose()
{
    NS_LOG_FUNCTION(this);
    m_bridged = nullptr;
    if (m_txQueue)
    {
        m_txQueue->SetWakeCallback(MakeNullCallback<void>());
        m_txQueue = nullptr;
    }
    if (m_virtio)
    {
        m_virtio->SetTransmitCallback(MakeNullCallback<void, Ptr<Packet>>());
        m_virtio->SetTransmitGate(MakeNullCallback<bool>());
        // The guest's socket goes with the simulation, even while a script still holds a
        // reference to the device (it would keep the file and its descriptors otherwise).
        m_virtio->Dispose();
    }
    m_virtio = nullptr;
    m_node = nullptr;
    NetDevice::DoDispose();
}

void
UmlBridgeNetDevice::SetBridgedNetDevice(Ptr<NetDevice> device)
{
    NS_LOG_FUNCTION(this << device);
    NS_ABORT_MSG_UNLESS(m_node, "add the UmlBridgeNetDevice to its node first");
    NS_ABORT_MSG_UNLESS(device->GetNode() == m_node,
                        "the bridged device must be on the guest's own node");
    m_bridged = device;
    if (!device->NeedsArp())
    {
        m_mode = Mode::IP_ONLY;
    }
    else if (device->SupportsSendFrom())
    {
        m_mode = Mode::BRIDGE;
    }
    else
    {
        m_mode = Mode::LOCAL;
    }
    static const char* const modes[] = {"bridge", "local MAC", "IP only"};
    NS_LOG_INFO("node " << m_node->GetId() << ": guest bridged to "
                        << device->GetInstanceTypeId().GetName() << " as "
                        << modes[static_cast<int>(m_mode)]);
    m_node->RegisterProtocolHandler(MakeCallback(&UmlBridgeNetDevice::FromBridged, this),
                                    0,
                                    device,
                                    true);
    if (m_virtio)
    {
        SetVirtioNetDevice(m_virtio);
    }
}

Ptr<NetDevice>
UmlBridgeNetDevice::GetBridgedNetDevice() const
{
    return m_bridged;
}

void
UmlBridgeNetDevice::SetVirtioNetDevice(Ptr<VirtioNetDevice> virtio)
{
    NS_LOG_FUNCTION(this << virtio);
    m_virtio = virtio;
    if (m_node)
    {
        virtio->SetContext(m_node->GetId());
    }
    if (m_bridged && m_mode == Mode::LOCAL)
    {
        virtio->SetMac(Mac48Address::ConvertFrom(m_bridged->GetAddress()));
    }
    m_guestMac = virtio->GetMac();
    uint8_t peer[6];
    m_guestMac.CopyTo(peer);
    peer[0] = 0x06; // locally administered, never a guest's (guests' MACs start 02)
    m_peerMac.CopyFrom(peer);
    virtio->SetTransmitCallback(MakeCallback(&UmlBridgeNetDevice::FromGuest, this));
    ConnectFlowControl();
}

void
UmlBridgeNetDevice::ConnectFlowControl()
{
    if (!m_bridged || !m_virtio)
    {
        return;
    }
    auto queues = m_bridged->GetObject<NetDeviceQueueInterface>();
    if (!queues || queues->GetNTxQueues() == 0)
    {
        NS_LOG_INFO("node " << m_node->GetId() << ": bridged device has no flow control");
        return;
    }
    // Queue 0 is where an untagged frame goes (one queue, or Wi-Fi's best effort).
    m_txQueue = queues->GetTxQueue(0);
    m_txQueue->SetWakeCallback(MakeCallback(&UmlBridgeNetDevice::OnTransmitWake, this));
    m_virtio->SetTransmitGate(MakeCallback(&UmlBridgeNetDevice::CanTransmit, this));
}

bool
UmlBridgeNetDevice::CanTransmit() const
{
    return !m_flowControl || !m_txQueue->IsStopped();
}

void
UmlBridgeNetDevice::OnTransmitWake()
{
    m_virtio->ResumeTransmit();
}

Ptr<VirtioNetDevice>
UmlBridgeNetDevice::GetVirtioNetDevice() const
{
    return m_virtio;
}

Mac48Address
UmlBridgeNetDevice::GetGuestMac() const
{
    return m_guestMac;
}

void
UmlBridgeNetDevice::ToGuest(const Mac48Address& dst,
                            const Mac48Address& src,
                            uint16_t type,
                            Ptr<const Packet> payload)
{
    uint8_t header[ETH_HLEN];
    dst.CopyTo(header);
    src.CopyTo(header + 6);
    PutBe16(header + 12, type);
    Ptr<Packet> frame = Create<Packet>(header, ETH_HLEN);
    frame->AddAtEnd(payload);
    m_toGuestTrace(frame);
    m_virtio->DeliverToGuest(frame);
}

void
UmlBridgeNetDevice::FromGuest(Ptr<Packet> frame)
{
    m_fromGuestTrace(frame);
    if (!m_bridged || frame->GetSize() < ETH_HLEN)
    {
        m_dropTrace(frame);
        return;
    }
    std::vector<uint8_t> bytes(frame->GetSize());
    frame->CopyData(bytes.data(), bytes.size());
    Mac48Address dst;
    Mac48Address src;
    dst.CopyFrom(bytes.data());
    src.CopyFrom(bytes.data() + 6);
    uint16_t type = Be16(bytes.data() + 12);
    Ptr<Packet> payload = frame->CreateFragment(ETH_HLEN, frame->GetSize() - ETH_HLEN);
    switch (m_mode)
    {
    case Mode::BRIDGE:
        m_bridged->SendFrom(payload, src, dst, type);
        return;
    case Mode::LOCAL:
        m_bridged->Send(payload, dst, type);
        return;
    case Mode::IP_ONLY:
        if (type == ETH_P_ARP)
        {
            if (!AnswerArp(bytes.data(), bytes.size()))
            {
                m_dropTrace(frame);
            }
            return;
        }
        if (type == ETH_P_IPV6 && AnswerNeighbourSolicitation(bytes.data(), bytes.size()))
        {
            return;
        }
        if (type == ETH_P_IP || type == ETH_P_IPV6)
        {
            m_bridged->Send(payload, m_bridged->GetBroadcast(), type);
            return;
        }
        m_dropTrace(frame);
        return;
    }
}

bool
UmlBridgeNetDevice::AnswerArp(const uint8_t* eth, size_t len)
{
    if (len < ETH_HLEN + ARP_LEN)
    {
        return false;
    }
    const uint8_t* arp = eth + ETH_HLEN;
    bool ipv4OverEthernet = Be16(arp) == 1 && Be16(arp + 2) == ETH_P_IP && arp[4] == 6 &&
                            arp[5] == 4;
    if (!ipv4OverEthernet || Be16(arp + 6) != 1 /* request */)
    {
        return false;
    }
    const uint8_t* spa = arp + 14;
    const uint8_t* tpa = arp + 24;
    if (std::memcmp(spa, tpa, 4) == 0)
    {
        return true; // gratuitous: nothing to answer, nothing to forward
    }
    // "The other end has every address": the link carries IP to whoever is there.
    uint8_t reply[ARP_LEN];
    PutBe16(reply, 1);
    PutBe16(reply + 2, ETH_P_IP);
    reply[4] = 6;
    reply[5] = 4;
    PutBe16(reply + 6, 2);
    m_peerMac.CopyTo(reply + 8);
    std::memcpy(reply + 14, tpa, 4);
    std::memcpy(reply + 18, arp + 8, 6);
    std::memcpy(reply + 24, spa, 4);
    ToGuest(m_guestMac, m_peerMac, ETH_P_ARP, Create<Packet>(reply, sizeof(reply)));
    return true;
}

bool
UmlBridgeNetDevice::AnswerNeighbourSolicitation(const uint8_t* eth, size_t len)
{
    const uint8_t* ip = eth + ETH_HLEN;
    if (len < ETH_HLEN + IPV6_HLEN + 24 || ip[6] != IPPROTO_ICMPV6 ||
        ip[IPV6_HLEN] != ND_NEIGHBOR_SOLICIT)
    {
        return false;
    }
    const uint8_t* src = ip + 8;
    const uint8_t* target = ip + IPV6_HLEN + 8;
    static const uint8_t unspecified[16] = {};
    if (std::memcmp(src, unspecified, 16) == 0)
    {
        return true; // duplicate address detection: nobody else has it
    }
    uint8_t reply[IPV6_HLEN + 32] = {};
    reply[0] = 0x60;
    PutBe16(reply + 4, 32);
    reply[6] = IPPROTO_ICMPV6;
    reply[7] = 255;
    std::memcpy(reply + 8, target, 16);
    std::memcpy(reply + 24, src, 16);
    uint8_t* icmp = reply + IPV6_HLEN;
    icmp[0] = ND_NEIGHBOR_ADVERT;
    icmp[4] = 0x60; // solicited, override
    std::memcpy(icmp + 8, target, 16);
    icmp[24] = 2; // target link-layer address option
    icmp[25] = 1;
    m_peerMac.CopyTo(icmp + 26);
    uint32_t pseudo = 0;
    for (int i = 0; i < 32; i += 2)
    {
        pseudo += Be16(reply + 8 + i);
    }
    pseudo += 32 + IPPROTO_ICMPV6;
    PutBe16(icmp + 2, ChecksumFinish(ChecksumAdd(icmp, 32, pseudo)));
    ToGuest(m_guestMac, m_peerMac, ETH_P_IPV6, Create<Packet>(reply, sizeof(reply)));
    return true;
}

void
UmlBridgeNetDevice::FromBridged(Ptr<NetDevice> device,
                                Ptr<const Packet> packet,
                                uint16_t protocol,
                                const Address& source,
                                const Address& destination,
                                NetDevice::PacketType packetType)
{
    if (!m_virtio)
    {
        return;
    }
    if (m_mode == Mode::IP_ONLY)
    {
        ToGuest(m_guestMac, m_peerMac, protocol, packet);
        return;
    }
    Mac48Address dst = Mac48Address::ConvertFrom(destination);
    Mac48Address src = Mac48Address::ConvertFrom(source);
    if (m_mode == Mode::BRIDGE && !(dst == m_guestMac || dst.IsGroup()))
    {
        return; // for another station on the channel
    }
    if (m_mode == Mode::LOCAL && packetType == NetDevice::PACKET_OTHERHOST)
    {
        return;
    }
    ToGuest(dst, src, protocol, packet);
}

void
UmlBridgeNetDevice::SetIfIndex(const uint32_t index)
{
    m_ifIndex = index;
}

uint32_t
UmlBridgeNetDevice::GetIfIndex() const
{
    return m_ifIndex;
}

Ptr<Channel>
UmlBridgeNetDevice::GetChannel() const
{
    return m_bridged ? m_bridged->GetChannel() : nullptr;
}

void
UmlBridgeNetDevice::SetAddress(Address address)
{
    m_guestMac = Mac48Address::ConvertFrom(address);
}

Address
UmlBridgeNetDevice::GetAddress() const
{
    return m_guestMac;
}

bool
UmlBridgeNetDevice::SetMtu(const uint16_t mtu)
{
    m_mtu = mtu;
    return true;
}

uint16_t
UmlBridgeNetDevice::GetMtu() const
{
    return m_mtu;
}

bool
UmlBridgeNetDevice::IsLinkUp() const
{
    return true;
}

void
UmlBridgeNetDevice::AddLinkChangeCallback(Callback<void> callback)
{
}

bool
UmlBridgeNetDevice::IsBroadcast() const
{
    return true;
}

Address
UmlBridgeNetDevice::GetBroadcast() const
{
    return Mac48Address::GetBroadcast();
}

bool
UmlBridgeNetDevice::IsMulticast() const
{
    return true;
}

Address
UmlBridgeNetDevice::GetMulticast(Ipv4Address multicastGroup) const
{
    return Mac48Address::GetMulticast(multicastGroup);
}

Address
UmlBridgeNetDevice::GetMulticast(Ipv6Address addr) const
{
    return Mac48Address::GetMulticast(addr);
}

bool
UmlBridgeNetDevice::IsBridge() const
{
    return true;
}

bool
UmlBridgeNetDevice::IsPointToPoint() const
{
    return false;
}

bool
UmlBridgeNetDevice::Send(Ptr<Packet> packet, const Address& dest, uint16_t protocolNumber)
{
    return false; // the guest's own stack sends, not ns-3's
}

bool
UmlBridgeNetDevice::SendFrom(Ptr<Packet> packet,
                             const Address& source,
                             const Address& dest,
                             uint16_t protocolNumber)
{
    return false;
}

Ptr<Node>
UmlBridgeNetDevice::GetNode() const
{
    return m_node;
}

void
UmlBridgeNetDevice::SetNode(Ptr<Node> node)
{
    NS_LOG_FUNCTION(this << node);
    m_node = node;
    if (m_virtio)
    {
        m_virtio->SetContext(node->GetId());
    }
}

bool
UmlBridgeNetDevice::NeedsArp() const
{
    return true;
}

void
UmlBridgeNetDevice::SetReceiveCallback(NetDevice::ReceiveCallback cb)
{
}

void
UmlBridgeNetDevice::SetPromiscReceiveCallback(NetDevice::PromiscReceiveCallback cb)
{
}

bool
UmlBridgeNetDevice::SupportsSendFrom() const
{
    return false;
}

} // namespace ns3
