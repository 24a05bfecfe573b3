#include "virtio-console-device.h"

#include "agent-protocol.h"
#include "frame-bytes.h"
#include "uml-error.h"

#include "ns3/log.h"
#include "ns3/simulator.h"
#include "ns3/trace-source-accessor.h"
#include "ns3/uinteger.h"

#include <algorithm>
#include <cstring>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("VirtioConsoleDevice");
NS_OBJECT_ENSURE_REGISTERED(VirtioConsoleDevice);

namespace
{
// Frame types the guest may send: AGENT_READY.. and what a later agent may add, up to 31
// (the stop mask has a bit for each).
constexpr uint16_t GUEST_TYPE_FIRST = 16;
constexpr uint16_t GUEST_TYPE_LAST = 31;
// A control message of the guest's is 8 bytes; room for a name, which it never sends.
constexpr uint64_t MAX_CONTROL_IN = vhost::CONSOLE_CONTROL_SIZE + 256;
constexpr uint32_t DEFAULT_LIMIT = 4 << 20;
} // namespace

TypeId
VirtioConsoleDevice::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::VirtioConsoleDevice")
            .SetParent<VhostUserBackend>()
            .SetGroupName("Uml")
            .AddConstructor<VirtioConsoleDevice>()
            .AddAttribute("SendLimit",
                          "Bytes for the guest that may wait (not yet in its buffers); Send "
                          "beyond it is an error.",
                          UintegerValue(DEFAULT_LIMIT),
                          MakeUintegerAccessor(&VirtioConsoleDevice::m_sendLimit),
                          MakeUintegerChecker<uint32_t>())
            .AddAttribute("ReceiveLimit",
                          "Bytes from the guest that may wait for TakeReceived; beyond it the "
                          "device leaves the guest's buffers on its ring (its writes block) "
                          "until they are taken. At least one largest frame.",
                          UintegerValue(DEFAULT_LIMIT),
                          MakeUintegerAccessor(&VirtioConsoleDevice::m_receiveLimit),
                          MakeUintegerChecker<uint32_t>(AGENT_HEADER_SIZE + AGENT_MAX_PAYLOAD))
            .AddTraceSource("GuestFrame",
                            "A complete frame from the guest: type, id, payload length.",
                            MakeTraceSourceAccessor(&VirtioConsoleDevice::m_frameTrace),
                            "ns3::VirtioConsoleDevice::FrameTracedCallback");
    return tid;
}

VirtioConsoleDevice::VirtioConsoleDevice()
    : m_sendLimit(DEFAULT_LIMIT),
      m_receiveLimit(DEFAULT_LIMIT),
      m_stopTypes(0),
      m_portOpen(false),
      m_sendOffset(0),
      m_complete(0),
      m_txStalled(false),
      m_rxBytes(0),
      m_txBytes(0),
      m_txFrames(0)
{
}

void
VirtioConsoleDevice::DoDispose()
{
    NS_LOG_FUNCTION(this);
    m_stopTypes = 0; // a disconnect now is ours: nobody waits for it
    Cancel(m_controlEvent);
    Cancel(m_rxEvent);
    Cancel(m_txEvent);
    VhostUserBackend::DoDispose();
}

uint64_t
VirtioConsoleDevice::GetDeviceFeatures() const
{
    // MULTIPORT: without it port 0 is an hvc console whose writes spin for the host.
    return vhost::VIRTIO_F_VERSION_1 | vhost::VIRTIO_CONSOLE_F_MULTIPORT;
}

uint32_t
VirtioConsoleDevice::GetNumQueues() const
{
    return 4;
}

bool
VirtioConsoleDevice::ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const
{
    vhost::ConsoleConfig config{};
    config.maxNrPorts = 1;
    if (offset > sizeof(config) || len > sizeof(config) - offset)
    {
        return false;
    }
    std::memcpy(buf, reinterpret_cast<const uint8_t*>(&config) + offset, len);
    return true;
}

void
VirtioConsoleDevice::OnKick(uint32_t queue)
{
    switch (queue)
    {
    case vhost::CONSOLE_CTRL_TX_QUEUE:
        TakeControl();
        if (!m_controlIn.empty())
        {
            ScheduleNow(m_controlEvent, &VirtioConsoleDevice::ControlEvent);
        }
        return;
    case vhost::CONSOLE_CTRL_RX_QUEUE:
        if (!m_controlOut.empty())
        {
            ScheduleNow(m_controlEvent, &VirtioConsoleDevice::ControlEvent);
        }
        return;
    case vhost::CONSOLE_RX_QUEUE:
        if (m_portOpen && GetSendQueueSize())
        {
            ScheduleNow(m_rxEvent, &VirtioConsoleDevice::RxEvent);
        }
        return;
    default: // the transmit queue
        ScheduleNow(m_txEvent, &VirtioConsoleDevice::DrainTx);
    }
}

void
VirtioConsoleDevice::OnDisconnect()
{
    NS_LOG_FUNCTION(this << GetSendQueueSize() << m_received.size() - m_complete);
    // Complete frames stay for Python; a frame the guest did not finish never will.
    m_portOpen = false;
    m_send.clear();
    m_sendOffset = 0;
    m_received.resize(m_complete);
    m_txStalled = false;
    m_controlIn.clear();
    m_controlOut.clear();
    Cancel(m_controlEvent);
    Cancel(m_rxEvent);
    Cancel(m_txEvent);
    if (m_stopTypes)
    {
        // Whoever waits for this guest's frames must learn that none will come.
        Simulator::Stop();
    }
}

// ---------------------------------------------------------------- control

void
VirtioConsoleDevice::TakeControl()
{
    // Linux's __send_control_msg spins on virtqueue_get_buf after its kick: the message
    // must be used before the kick is answered, or the guest never yields. Using it here
    // touches only the ring; what it asks for is done by ControlEvent at the guest's time.
    // No call: the control transmit queue has no callback in Linux (it polls).
    Virtqueue& q = Queue(vhost::CONSOLE_CTRL_TX_QUEUE);
    Virtqueue::Chain chain;
    try
    {
        while (q.Pop(Memory(), chain))
        {
            if (chain.writable || chain.readable < vhost::CONSOLE_CONTROL_SIZE ||
                chain.readable > MAX_CONTROL_IN)
            {
                GuestError("control message of " + std::to_string(chain.readable) +
                           " readable and " + std::to_string(chain.writable) +
                           " writable bytes");
            }
            std::vector<uint8_t> message;
            CopyFromGuest(chain, message);
            q.Push(chain.head, 0);
            m_controlIn.push_back(std::move(message));
        }
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
}

void
VirtioConsoleDevice::ControlEvent()
{
    m_controlEvent = nullptr; // running: a kick from now on needs another event
    while (!m_controlIn.empty())
    {
        const std::vector<uint8_t> message = std::move(m_controlIn.front());
        m_controlIn.pop_front();
        HandleControl(framebytes::Le32(message.data()),
                      framebytes::Le16(message.data() + 4),
                      framebytes::Le16(message.data() + 6));
    }
    FlushControl();
    FlushRx(); // the port may just have opened
}

void
VirtioConsoleDevice::HandleControl(uint32_t id, uint16_t event, uint16_t value)
{
    NS_LOG_FUNCTION(this << id << event << value);
    if (event == vhost::CONSOLE_DEVICE_READY && id == vhost::CONSOLE_BAD_ID)
    {
        if (value)
        {
            QueueControl(vhost::CONSOLE_PORT_ADD, 1);
        }
        return;
    }
    if (id != 0)
    {
        GuestError("control event " + std::to_string(event) + " for port " +
                   std::to_string(id) + " (the device has port 0 only)");
    }
    switch (event)
    {
    case vhost::CONSOLE_PORT_READY:
        if (!value)
        {
            NS_LOG_WARN("guest " << FormatClientId(m_clientId) << " could not add the port");
            return;
        }
        // A generic port (no CONSOLE_PORT): its name, then the host side is connected.
        QueueControl(vhost::CONSOLE_PORT_NAME, 1, AGENT_PORT_NAME);
        QueueControl(vhost::CONSOLE_PORT_OPEN, 1);
        return;
    case vhost::CONSOLE_PORT_OPEN:
        m_portOpen = value != 0;
        return;
    default:
        GuestError("control event " + std::to_string(event) + " from the guest");
    }
}

void
VirtioConsoleDevice::QueueControl(uint16_t event, uint16_t value, const char* name)
{
    std::vector<uint8_t> message(vhost::CONSOLE_CONTROL_SIZE);
    framebytes::PutLe32(message.data(), 0);
    framebytes::PutLe16(message.data() + 4, event);
    framebytes::PutLe16(message.data() + 6, value);
    if (name)
    {
        // With its NUL, as QEMU sends it (Linux copies up to the buffer's end or the NUL).
        message.insert(message.end(), name, name + std::strlen(name) + 1);
    }
    m_controlOut.push_back(std::move(message));
}

void
VirtioConsoleDevice::FlushControl()
{
    Virtqueue& q = Queue(vhost::CONSOLE_CTRL_RX_QUEUE);
    Virtqueue::Chain chain;
    bool used = false;
    try
    {
        while (!m_controlOut.empty() && IsConnected() && q.Pop(Memory(), chain))
        {
            const std::vector<uint8_t>& message = m_controlOut.front();
            if (chain.readable || chain.writable < message.size())
            {
                GuestError("control receive buffer of " + std::to_string(chain.writable) +
                           " writable and " + std::to_string(chain.readable) +
                           " readable bytes");
            }
            size_t done = 0;
            for (const auto& s : chain.segments)
            {
                size_t n = std::min<size_t>(s.len, message.size() - done);
                std::memcpy(s.ptr, message.data() + done, n);
                done += n;
            }
            PushWritten(vhost::CONSOLE_CTRL_RX_QUEUE, chain.head, static_cast<uint32_t>(done));
            m_controlOut.pop_front();
            used = true;
        }
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
    // Without buffers the rest waits for the guest's kick on the control receive queue.
    EndBatch(vhost::CONSOLE_CTRL_RX_QUEUE, used);
}

// ---------------------------------------------------------------- host to guest

void
VirtioConsoleDevice::Send(const uint8_t* data, uint32_t len)
{
    const uint64_t waiting = GetSendQueueSize();
    if (waiting + len > m_sendLimit)
    {
        GuestError("host-to-guest queue full: " + std::to_string(len) + " bytes more with " +
                   std::to_string(waiting) + " waiting exceed SendLimit (" +
                   std::to_string(m_sendLimit) + " bytes); the guest reads too slowly or "
                   "has not opened its port");
    }
    m_send.insert(m_send.end(), data, data + len);
    if (m_portOpen && IsConnected())
    {
        // An event, not written here: every Send at this time goes with one call.
        ScheduleNow(m_rxEvent, &VirtioConsoleDevice::RxEvent);
    }
}

uint32_t
VirtioConsoleDevice::GetSendQueueSize() const
{
    return static_cast<uint32_t>(m_send.size() - m_sendOffset);
}

void
VirtioConsoleDevice::RxEvent()
{
    m_rxEvent = nullptr; // running: a kick from now on needs another event
    FlushRx();
}

void
VirtioConsoleDevice::FlushRx()
{
    if (!m_portOpen || !IsConnected() || !GetSendQueueSize())
    {
        return;
    }
    Virtqueue& q = Queue(vhost::CONSOLE_RX_QUEUE);
    Virtqueue::Chain chain;
    bool used = false;
    try
    {
        // A byte stream: every buffer is filled, a frame may span several.
        while (m_sendOffset < m_send.size() && q.Pop(Memory(), chain))
        {
            if (chain.readable)
            {
                GuestError("receive buffer with device-readable descriptors");
            }
            uint32_t written = 0;
            for (const auto& s : chain.segments)
            {
                size_t n = std::min<size_t>(s.len, m_send.size() - m_sendOffset);
                std::memcpy(s.ptr, m_send.data() + m_sendOffset, n);
                m_sendOffset += n;
                written += static_cast<uint32_t>(n);
            }
            PushWritten(vhost::CONSOLE_RX_QUEUE, chain.head, written);
            m_rxBytes += written;
            used = true;
        }
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
    if (m_sendOffset == m_send.size())
    {
        m_send.clear();
        m_sendOffset = 0;
    }
    else if (m_sendOffset > m_send.size() / 2)
    {
        // What is left moves to the front once it is the smaller part: linear overall.
        m_send.erase(m_send.begin(), m_send.begin() + static_cast<std::ptrdiff_t>(m_sendOffset));
        m_sendOffset = 0;
    }
    EndBatch(vhost::CONSOLE_RX_QUEUE, used);
}

// ---------------------------------------------------------------- guest to host

void
VirtioConsoleDevice::DrainTx()
{
    m_txEvent = nullptr; // running: a kick from now on needs another drain
    Virtqueue& q = Queue(vhost::CONSOLE_TX_QUEUE);
    Virtqueue::Chain chain;
    bool used = false;
    try
    {
        while (IsConnected())
        {
            m_txStalled = m_received.size() >= m_receiveLimit;
            if (m_txStalled || !q.Pop(Memory(), chain))
            {
                break; // stalled: TakeReceived goes on
            }
            if (chain.writable)
            {
                GuestError("transmit buffer with device-writable descriptors");
            }
            CopyFromGuest(chain, m_received);
            q.Push(chain.head, 0);
            m_txBytes += chain.readable;
            used = true;
            ScanFrames();
        }
    }
    catch (const VirtqueueError& e)
    {
        GuestError(e.what());
    }
    EndBatch(vhost::CONSOLE_TX_QUEUE, used);
}

void
VirtioConsoleDevice::ScanFrames()
{
    // Each header is checked as soon as it is complete: a hostile length is an error at
    // once, not a wait for bytes that never come (docs/DESIGN.md rule 10).
    while (m_received.size() - m_complete >= AGENT_HEADER_SIZE)
    {
        const uint8_t* h = m_received.data() + m_complete;
        const uint32_t length = framebytes::Le32(h);
        const uint16_t type = framebytes::Le16(h + 4);
        const uint16_t reserved = framebytes::Le16(h + 6);
        const uint32_t id = framebytes::Le32(h + 8);
        if (length > AGENT_MAX_PAYLOAD || reserved != 0 || type < GUEST_TYPE_FIRST ||
            type > GUEST_TYPE_LAST)
        {
            GuestError("agent frame with length " + std::to_string(length) + ", type " +
                       std::to_string(type) + ", reserved " + std::to_string(reserved) +
                       " (at most " + std::to_string(AGENT_MAX_PAYLOAD) + " bytes, types " +
                       std::to_string(GUEST_TYPE_FIRST) + "-" + std::to_string(GUEST_TYPE_LAST) +
                       ", reserved 0)");
        }
        if (m_received.size() - m_complete < AGENT_HEADER_SIZE + length)
        {
            return; // the rest comes with a later buffer
        }
        m_complete += AGENT_HEADER_SIZE + length;
        m_txFrames++;
        m_frameTrace(type, id, length);
        if (m_stopTypes & (1U << (type - GUEST_TYPE_FIRST)))
        {
            Simulator::Stop(); // after this event: Python takes over
        }
    }
}

uint32_t
VirtioConsoleDevice::GetReceivedSize() const
{
    return static_cast<uint32_t>(m_complete);
}

uint32_t
VirtioConsoleDevice::TakeReceived(uint8_t* buf, uint32_t len)
{
    size_t n = 0;
    while (n < m_complete)
    {
        const size_t frame = AGENT_HEADER_SIZE + framebytes::Le32(m_received.data() + n);
        if (n + frame > len)
        {
            break;
        }
        n += frame;
    }
    std::memcpy(buf, m_received.data(), n);
    m_received.erase(m_received.begin(), m_received.begin() + static_cast<std::ptrdiff_t>(n));
    m_complete -= n;
    if (m_txStalled && n && IsConnected())
    {
        ScheduleNow(m_txEvent, &VirtioConsoleDevice::DrainTx); // room again
    }
    return static_cast<uint32_t>(n);
}

void
VirtioConsoleDevice::SetStopTypes(uint32_t mask)
{
    m_stopTypes = mask;
}

uint32_t
VirtioConsoleDevice::GetStopTypes() const
{
    return m_stopTypes;
}

bool
VirtioConsoleDevice::IsPortOpen() const
{
    return m_portOpen;
}

uint64_t
VirtioConsoleDevice::GetRxBytes() const
{
    return m_rxBytes;
}

uint64_t
VirtioConsoleDevice::GetTxBytes() const
{
    return m_txBytes;
}

uint64_t
VirtioConsoleDevice::GetTxFrameCount() const
{
    return m_txFrames;
}

} // namespace ns3
