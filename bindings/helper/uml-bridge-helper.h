// Puts a guest's virtio-net interface on an ns-3 device: the helper scripts use.
#ifndef NS3_UML_UML_BRIDGE_HELPER_H
#define NS3_UML_UML_BRIDGE_HELPER_H

#include "guest-scheduler.h"
#include "uml-bridge-net-device.h"

#include "ns3/attribute.h"
#include "ns3/mac48-address.h"
#include "ns3/net-device.h"
#include "ns3/node.h"
#include "ns3/object-factory.h"

#include <string>

namespace ns3
{

/**
 * Like TapBridgeHelper: makes a VirtioNetDevice (ObjectFactory, attributes) served by the
 * given scheduler (the calendar) and a UmlBridgeNetDevice on the node that joins it to an
 * ns-3 device.
 */
class UmlBridgeHelper
{
  public:
    explicit UmlBridgeHelper(Ptr<UmlGuestScheduler> scheduler);

    /** An attribute of every VirtioNetDevice made (e.g. "RxQueueLimit"). */
    void SetDeviceAttribute(const std::string& name, const AttributeValue& value);

    /**
     * Create the guest's vhost-user socket at socketPath and bridge it to `device`, an ns-3
     * device on `node`. The guest connects with virtio_uml.device=SOCKET:1. `mac` is the
     * guest's MAC where the device lets the guest keep its own (CSMA, point-to-point); a
     * Wi-Fi station or ad-hoc device imposes its own.
     */
    Ptr<UmlBridgeNetDevice> Install(Ptr<Node> node,
                                    Ptr<NetDevice> device,
                                    const std::string& socketPath,
                                    uint64_t clientId,
                                    Mac48Address mac) const;

  private:
    Ptr<UmlGuestScheduler> m_scheduler;
    ObjectFactory m_deviceFactory;
};

} // namespace ns3

#endif
