// Puts a guest's virtio-net interface on an ns-3 device: the helper scripts use.
#ifndef NS3_UML_UML_BRIDGE_HELPER_H
#define NS3_UML_UML_BRIDGE_HELPER_H

#include "uml-bridge-net-device.h"

#include "ns3/mac48-address.h"
#include "ns3/net-device.h"
#include "ns3/node.h"

#include <string>

namespace ns3
{

class UmlBridgeHelper
{
  public:
    /**
     * Create the guest's vhost-user socket at socketPath (served by the installed calendar)
     * and bridge it to `device`, an ns-3 device on `node`. The guest connects with
     * virtio_uml.device=SOCKET:1. `mac` is the guest's MAC where the device lets the guest
     * keep its own (CSMA, point-to-point); a Wi-Fi station or ad-hoc device imposes its own.
     */
    static Ptr<UmlBridgeNetDevice> Install(Ptr<Node> node,
                                           Ptr<NetDevice> device,
                                           const std::string& socketPath,
                                           uint64_t clientId,
                                           Mac48Address mac);
};

} // namespace ns3

#endif
