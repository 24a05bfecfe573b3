#include "virtio-net-device.h"

#include "frame-bytes.h"

#include "ns3/boolean.h"
#include "ns3/log.h"
#include "ns3/mac48-address.h"
#include "ns3/make-event.h"
#include "ns3/simulator.h"
#include "ns3/nstime.h"
#include "ns3/trace-source-accessor.h"
#include "ns3/uinteger.h"

#include <cstring>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("VirtioNetDevice");
NS_OBJECT_ENSURE_REGISTERED(VirtioNetDevice);

namespace
{
constexpr size_t ETH_MIN_FRAME = 14;
} // namespace

TypeId
VirtioNetDevice::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::VirtioNetDevice")
            .SetParent<VhostUserBackend>()
            .SetGroupName("Uml")
            .AddConstructor<VirtioNetDevice>()
            .AddAttribute("Mac",
                          "The MAC the guest reads from the device's config space (a "
                          "bridge to a Wi-Fi station or ad-hoc device replaces it with "
                          "that device's own).",
                          Mac48AddressValue(Mac48Address("02:75:00:00:00:00")),
                          MakeMac48AddressAccessor(&VirtioNetDevice::m_mac),
                          MakeMac48AddressChecker())
            .AddAttribute("RxQueueLimit",
                          "Frames kept for the guest while it has no receive buffer posted.",
                          UintegerValue(1000),
                          MakeUintegerAccessor(&VirtioNetDevice::m_rxQueueLimit),
                          MakeUintegerChecker<uint32_t>())
            .AddTraceSource("GuestTx",
                            "A frame the guest sent, as it enters ns-3 (a wire frame: a GSO "
                            "frame is traced once per segment).",
                            MakeTraceSourceAccessor(&VirtioNetDevice::m_txTrace),
                            "ns3::Packet::TracedCallback")
            .AddTraceSource("GuestRx",
                            "A frame written into the guest's buffers.",
                            MakeTraceSourceAccessor(&VirtioNetDevice::m_rxTrace),
                            "ns3::Packet::TracedCallback")
            .AddTraceSource("Drop",
                            "A frame for the guest dropped: no buffer and the queue full, "
                            "too large for the buffer, or shorter than an Ethernet header.",
                            MakeTraceSourceAccessor(&VirtioNetDevice::m_dropTrace),
                            "ns3::Packet::TracedCallback")
            .AddAttribute("RxCoalesceTime",
                          "Receive coalescing (ethtool's rx-usecs): a frame for the guest "
                          "waits up to this long, so that the frames arriving meanwhile reach "
                          "it with one call. It adds up to this much to the latency of every "
                          "frame the guest receives; 0 (the default) is off: each frame is "
                          "written at its arrival time.",
                          TimeValue(Time(0)),
                          MakeTimeAccessor(&VirtioNetDevice::m_rxCoalesceTime),
                          MakeTimeChecker(Time(0)))
            .AddAttribute("RxCoalesceFrames",
                          "With RxCoalesceTime on (ethtool's rx-frames): the window ends "
                          "early once this many frames wait; 0: only the time counts.",
                          UintegerValue(0),
                          MakeUintegerAccessor(&VirtioNetDevice::m_rxCoalesceFrames),
                          MakeUintegerChecker<uint32_t>())
            .AddAttribute("Offloads",
                          "Offer checksum offload both ways (CSUM, GUEST_CSUM) and "
                          "segmentation (HOST_TSO4/6 with ECN, HOST_USO): the guest hands over "
                          "frames of up to 64 KiB, cut here into MTU-sized wire frames with "
                          "valid checksums. False: VERSION_1, MAC and STATUS only, every "
                          "header empty. Read when the guest negotiates.",
                          BooleanValue(true),
                          MakeBooleanAccessor(&VirtioNetDevice::m_offloads),
                          MakeBooleanChecker())
            .AddAttribute("RxMerge",
                          "With Offloads and RxCoalesceTime: offer GUEST_TSO4/6 with ECN and "
                          "MRG_RXBUF, and, where the guest accepts GUEST_TSO, hand it the TCP "
                          "segments of one flow that wait together merged into one GSO frame, "
                          "as Linux's GRO would merge them (a NIC's hardware GRO). False: "
                          "none of these offered, one frame per buffer (the default: merging "
                          "did not make bulk TCP faster in wall time, docs/DESIGN.md section "
                          "5). Read when the guest negotiates.",
                          BooleanValue(false),
                          MakeBooleanAccessor(&VirtioNetDevice::m_rxMerge),
                          MakeBooleanChecker());
    return tid;
}

VirtioNetDevice::VirtioNetDevice()
    : m_rxQueueLimit(1000),
      m_rxCoalesceFrames(0),
      m_txFrames(0),
      m_rxFrames(0),
      m_offloads(true),
      m_rxMerge(false)
{
}

void
VirtioNetDevice::DoDispose()
{
    NS_LOG_FUNCTION(this);
    m_transmit = MakeNullCallback<void, Ptr<Packet>>();
    m_txGate = MakeNullCallback<bool>();
    m_txBacklog.clear();
    Cancel(m_txEvent);
    Cancel(m_rxEvent);
    VhostUserBackend::DoDispose();
}

void
VirtioNetDevice::SetMac(Mac48Address mac)
{
    m_mac = mac;
}

Mac48Address
VirtioNetDevice::GetMac() const
{
    return m_mac;
}

uint64_t
VirtioNetDevice::GetTxFrameCount() const
{
    return m_txFrames;
}

uint64_t
VirtioNetDevice::GetRxFrameCount() const
{
    return m_rxFrames;
}

void
VirtioNetDevice::SetTransmitCallback(Callback<void, Ptr<Packet>> cb)
{
    m_transmit = cb;
}

void
VirtioNetDevice::SetTransmitGate(Callback<bool> canSend)
{
    m_txGate = canSend;
}

uint64_t
VirtioNetDevice::GetDeviceFeatures() const
{
    // Receive offloads (GUEST_TSO, merged buffers) only to merge, which needs coalescing:
    // without it frames reach the guest one by one and there is nothing to merge; without
    // them every frame has one buffer. The transport's EVENT_IDX is the back-end's to add
    // (its EventIdx attribute).
    uint64_t features =
        vhost::VIRTIO_F_VERSION_1 | vhost::VIRTIO_NET_F_MAC | vhost::VIRTIO_NET_F_STATUS;
    if (!m_offloads)
    {
        return features;
    }
    features |= GsoSegmenter::OFFERED_FEATURES;
    return OffersRxMerge() ? features | RxMerger::OFFERED_FEATURES : features;
}

uint32_t
VirtioNetDevice::GetNumQueues() const
{
    return 2;
}

bool
VirtioNetDevice::ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const
{
    vhost::NetConfig config{};
    m_mac.CopyTo(config.mac);
    config.status = vhost::VIRTIO_NET_S_LINK_UP;
    config.maxVirtqueuePairs = 1;
    config.mtu = vhost::NET_MTU;
    if (offset > sizeof(config) || len > sizeof(config) - offset)
    {
        return false;
    }
    std::memcpy(buf, reinterpret_cast<const uint8_t*>(&config) + offset, len);
    return true;
}

void
VirtioNetDevice::OnKick(uint32_t queue)
{
    // The work happens at the guest's current time, as an event after it yields; scheduling
    // it lowers the guest's free-until (docs/DESIGN.md rule 2) before the kick is answered.
    if (queue == vhost::NET_TX_QUEUE)
    {
        ScheduleNow(m_txEvent, &VirtioNetDevice::DrainTx);
    }
    else if (!m_rxPending.empty())
    {
        ScheduleNow(m_rxEvent, &VirtioNetDevice::RxEvent);
    }
}

void
VirtioNetDevice::OnDisconnect()
{
    NS_LOG_FUNCTION(this << m_rxPending.size());
    m_rxPending.clear();
    m_txBacklog.clear();
    m_txHead.reset();
    Cancel(m_txEvent);
    Cancel(m_rxEvent);
}

void
VirtioNetDevice::DrainTx()
{
    m_txEvent = nullptr; // running: a kick from now on needs another drain
    Virtqueue& q = Queue(vhost::NET_TX_QUEUE);
    Virtqueue::Chain chain;
    bool used = false;
    const uint64_t features = GetAcceptedFeatures();
    // Without segmentation offloads a buffer holds one Ethernet frame (VLAN tag included).
    const uint64_t maxFrame = (features & GsoSegmenter::OFFERED_FEATURES)
                                  ? vhost::NET_MAX_GSO_FRAME
                                  : vhost::ETH_MAX_FRAME + 4;
    auto take = [this](const uint8_t* data, size_t len) {
        m_txBacklog.push_back(Create<Packet>(data, len));
    };
    try
    {
        while (IsConnected())
        {
            // The segments of the chain taken last go first, back to back, as a TSO NIC's
            // burst; the ns-3 device's queue serializes them.
            while (!m_txBacklog.empty() && CanTransmit())
            {
                Ptr<Packet> frame = m_txBacklog.front();
                m_txBacklog.pop_front();
                Transmit(frame);
            }
            if (!m_txBacklog.empty())
            {
                break; // the wire is full: ResumeTransmit goes on
            }
            if (m_txHead)
            {
                q.Push(*m_txHead, 0);
                m_txHead.reset();
                used = true;
            }
            // Not taken while the wire is full: the guest's ring fills and its own queueing
            // (qdisc, TCP small queues) holds the rest, as with a real NIC.
            if (!CanTransmit() || !q.Pop(Memory(), chain))
            {
                break;
            }
            if (chain.writable)
            {
                GuestError("transmit buffer with device-writable descriptors");
            }
            uint64_t total = chain.readable;
            if (total < vhost::NET_HDR_SIZE + ETH_MIN_FRAME ||
                total > vhost::NET_HDR_SIZE + maxFrame)
            {
                GuestError("transmit buffer of " + std::to_string(total) + " bytes");
            }
            m_txBuffer.clear();
            CopyFromGuest(chain, m_txBuffer);
            m_txHead = chain.head;
            m_segmenter.Process(features,
                                m_txBuffer.data(),
                                m_txBuffer.data() + vhost::NET_HDR_SIZE,
                                m_txBuffer.size() - vhost::NET_HDR_SIZE,
                                take);
        }
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
    catch (const GsoError& e)
    {
        GuestError(e.what());
    }
    EndBatch(vhost::NET_TX_QUEUE, used);
}

void
VirtioNetDevice::Transmit(Ptr<Packet> frame)
{
    m_txFrames++;
    m_txTrace(frame);
    if (!m_transmit.IsNull())
    {
        m_transmit(frame);
    }
}

bool
VirtioNetDevice::CanTransmit() const
{
    return m_txGate.IsNull() || m_txGate();
}

void
VirtioNetDevice::ResumeTransmit()
{
    // Already inside an ns-3 event at the right time: drain here rather than add an event
    // per freed queue slot (a drain already pending does the same work).
    if (IsConnected() && !IsPending(m_txEvent))
    {
        DrainTx();
    }
}

bool
VirtioNetDevice::WriteRx(const std::vector<uint8_t>& frame, const uint8_t* gso, size_t wire)
{
    Virtqueue& q = Queue(vhost::NET_RX_QUEUE);
    const uint64_t features = GetAcceptedFeatures();
    // With MRG_RXBUF a frame takes as many chains as it needs; without, one.
    const bool mergeable = features & vhost::VIRTIO_NET_F_MRG_RXBUF;
    const uint64_t need = vhost::NET_HDR_SIZE + frame.size();
    uint64_t room = 0;
    uint16_t used = 0;
    try
    {
        do
        {
            if (used == m_rxChains.size())
            {
                m_rxChains.emplace_back();
            }
            if (!q.Pop(Memory(), m_rxChains[used]))
            {
                q.Unpop(used); // the frame waits whole for more buffers
                return false;
            }
            if (m_rxChains[used].readable)
            {
                GuestError("receive buffer with device-readable descriptors");
            }
            room += m_rxChains[used].writable;
            used++;
        } while (mergeable && room < need && used < q.GetNum());
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
    if (need > room)
    {
        // Larger than the buffer (or than every buffer of the ring together): dropped.
        if (mergeable)
        {
            q.Unpop(used);
        }
        else
        {
            q.Push(m_rxChains[0].head, 0);
        }
        if (!m_dropTrace.IsEmpty())
        {
            m_dropTrace(Create<Packet>(frame.data(), frame.size()));
        }
        return true;
    }
    uint8_t header[vhost::NET_HDR_SIZE] = {};
    if (gso)
    {
        std::memcpy(header, gso, sizeof(header));
    }
    else if (features & vhost::VIRTIO_NET_F_GUEST_CSUM)
    {
        // ns-3's checksums are real (Simulation enables them); the guest need not verify.
        header[vhost::NET_HDR_OFF_FLAGS] = vhost::NET_HDR_F_DATA_VALID;
    }
    framebytes::PutLe16(header + vhost::NET_HDR_OFF_NUM_BUFFERS, used);
    const uint8_t* src[2] = {header, frame.data()};
    size_t left[2] = {sizeof(header), frame.size()};
    int part = 0;
    for (uint16_t i = 0; i < used; ++i)
    {
        for (const auto& s : m_rxChains[i].segments)
        {
            size_t space = s.len;
            uint8_t* dst = s.ptr;
            while (space && part < 2)
            {
                size_t n = std::min(space, left[part]);
                std::memcpy(dst, src[part], n);
                dst += n;
                space -= n;
                src[part] += n;
                left[part] -= n;
                if (left[part] == 0)
                {
                    part++;
                }
            }
        }
    }
    // Each chain holds what fits of the rest, in order; none is used before all are written.
    uint64_t rest = need;
    for (uint16_t i = 0; i < used; ++i)
    {
        const auto written = static_cast<uint32_t>(std::min(rest, m_rxChains[i].writable));
        PushWritten(vhost::NET_RX_QUEUE, m_rxChains[i].head, written);
        rest -= written;
    }
    m_rxFrames += wire;
    if (!m_rxTrace.IsEmpty()) // no Packet per frame for a trace nobody listens to
    {
        m_rxTrace(Create<Packet>(frame.data(), frame.size()));
    }
    return true;
}

bool
VirtioNetDevice::OffersRxMerge() const
{
    return m_rxMerge && m_rxCoalesceTime.IsStrictlyPositive();
}

bool
VirtioNetDevice::MergesRx() const
{
    return OffersRxMerge() && (GetAcceptedFeatures() & (vhost::VIRTIO_NET_F_GUEST_TSO4 |
                                                        vhost::VIRTIO_NET_F_GUEST_TSO6));
}

void
VirtioNetDevice::RxEvent()
{
    m_rxEvent = nullptr; // running: a kick from now on needs another flush
    FlushRx();
}

void
VirtioNetDevice::FlushRx()
{
    bool delivered = false;
    const bool merge = MergesRx();
    while (!m_rxPending.empty() && IsConnected())
    {
        // A run of one flow's segments goes as one GSO frame; anything else as it is.
        const size_t count = merge ? m_merger.Merge(m_rxPending, GetAcceptedFeatures()) : 1;
        if (!(count > 1 ? WriteRx(m_merger.Frame(), m_merger.Header(), count)
                        : WriteRx(m_rxPending.front(), nullptr, 1)))
        {
            break;
        }
        m_rxPending.erase(m_rxPending.begin(), m_rxPending.begin() + count);
        delivered = true;
    }
    EndBatch(vhost::NET_RX_QUEUE, delivered);
}

void
VirtioNetDevice::DeliverToGuest(Ptr<const Packet> frame)
{
    std::vector<uint8_t> bytes(frame->GetSize());
    frame->CopyData(bytes.data(), bytes.size());
    // Shorter than an Ethernet header it is no frame: no NIC hands it on (and WriteRx would
    // copy from an empty frame's null data; found by fuzz/vhost-user-fuzzer).
    if (!IsConnected() || bytes.size() < ETH_MIN_FRAME)
    {
        m_dropTrace(frame);
        return;
    }
    if (m_rxPending.size() >= m_rxQueueLimit)
    {
        m_dropTrace(frame);
        return;
    }
    m_rxPending.push_back(std::move(bytes));
    ArmRxFlush();
}

void
VirtioNetDevice::ArmRxFlush()
{
    // Written by an event rather than here: every frame due for the guest at this time is
    // in the queue by then (the others' receive events were scheduled before it), and one
    // call covers them all.
    if (!m_rxCoalesceTime.IsStrictlyPositive())
    {
        ScheduleNow(m_rxEvent, &VirtioNetDevice::RxEvent);
        return;
    }
    if (m_rxCoalesceFrames && m_rxPending.size() >= m_rxCoalesceFrames)
    {
        Cancel(m_rxEvent); // the window ends early
        ScheduleNow(m_rxEvent, &VirtioNetDevice::RxEvent);
        return;
    }
    ScheduleAfter(m_rxEvent, m_rxCoalesceTime, &VirtioNetDevice::RxEvent);
}

} // namespace ns3
