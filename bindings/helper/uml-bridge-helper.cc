#include "uml-bridge-helper.h"

#include "ns3/log.h"
#include "ns3/string.h"
#include "ns3/uinteger.h"

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("UmlBridgeHelper");

UmlBridgeHelper::UmlBridgeHelper(Ptr<UmlGuestScheduler> scheduler)
    : m_scheduler(scheduler)
{
    NS_LOG_FUNCTION(this);
    m_deviceFactory.SetTypeId("ns3::VirtioNetDevice");
}

void
UmlBridgeHelper::SetDeviceAttribute(const std::string& name, const AttributeValue& value)
{
    m_deviceFactory.Set(name, value);
}

Ptr<UmlBridgeNetDevice>
UmlBridgeHelper::Install(Ptr<Node> node,
                         Ptr<NetDevice> device,
                         const std::string& socketPath,
                         uint64_t clientId,
                         Mac48Address mac) const
{
    NS_LOG_FUNCTION(this << node << device << socketPath << clientId << mac);
    Ptr<VirtioNetDevice> virtio = m_deviceFactory.Create<VirtioNetDevice>();
    virtio->SetAttribute("SocketPath", StringValue(socketPath));
    virtio->SetAttribute("ClientId", UintegerValue(clientId));
    virtio->SetMac(mac);
    virtio->SetScheduler(m_scheduler);
    Ptr<UmlBridgeNetDevice> bridge = CreateObject<UmlBridgeNetDevice>();
    node->AddDevice(bridge);
    bridge->SetVirtioNetDevice(virtio);
    bridge->SetBridgedNetDevice(device);
    virtio->Listen();
    return bridge;
}

} // namespace ns3
