#include "uml-bridge-helper.h"

#include "ns3/string.h"
#include "ns3/uinteger.h"

namespace ns3
{

Ptr<UmlBridgeNetDevice>
UmlBridgeHelper::Install(Ptr<Node> node,
                         Ptr<NetDevice> device,
                         const std::string& socketPath,
                         uint64_t clientId,
                         Mac48Address mac)
{
    Ptr<VirtioNetDevice> virtio = CreateObject<VirtioNetDevice>();
    virtio->SetAttribute("SocketPath", StringValue(socketPath));
    virtio->SetAttribute("ClientId", UintegerValue(clientId));
    virtio->SetMac(mac);
    Ptr<UmlBridgeNetDevice> bridge = CreateObject<UmlBridgeNetDevice>();
    node->AddDevice(bridge);
    bridge->SetVirtioNetDevice(virtio);
    bridge->SetBridgedNetDevice(device);
    virtio->Listen();
    return bridge;
}

} // namespace ns3
