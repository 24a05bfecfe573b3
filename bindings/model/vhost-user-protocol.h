// vhost-user messages (the subset UML's virtio_uml uses), split virtqueues, the virtio-net
// header and virtio-console's control messages: the one place the C++ core takes these values from (ns3_uml/vhost_protocol.py
// mirrors them; a test compares both).
#ifndef NS3_UML_VHOST_USER_PROTOCOL_H
#define NS3_UML_VHOST_USER_PROTOCOL_H

#include <cstddef>
#include <cstdint>

namespace ns3
{
namespace vhost
{

// Front-end requests
enum Request : uint32_t
{
    GET_FEATURES = 1,
    SET_FEATURES = 2,
    SET_OWNER = 3,
    RESET_OWNER = 4,
    SET_MEM_TABLE = 5,
    SET_LOG_BASE = 6,
    SET_LOG_FD = 7,
    SET_VRING_NUM = 8,
    SET_VRING_ADDR = 9,
    SET_VRING_BASE = 10,
    GET_VRING_BASE = 11,
    SET_VRING_KICK = 12,
    SET_VRING_CALL = 13,
    SET_VRING_ERR = 14,
    GET_PROTOCOL_FEATURES = 15,
    SET_PROTOCOL_FEATURES = 16,
    GET_QUEUE_NUM = 17,
    SET_VRING_ENABLE = 18,
    SET_BACKEND_REQ_FD = 21,
    GET_CONFIG = 24,
    SET_CONFIG = 25,
    RESET_DEVICE = 34,
    VRING_KICK = 35,
    GET_MAX_MEM_SLOTS = 36,
    SET_STATUS = 39,
    GET_STATUS = 40,
};

// Back-end requests (on the backend channel)
enum BackendRequest : uint32_t
{
    BACKEND_CONFIG_CHANGE_MSG = 2,
    BACKEND_VRING_CALL = 4,
};

constexpr uint32_t FLAG_VERSION = 0x1;
constexpr uint32_t FLAG_VERSION_MASK = 0x3;
constexpr uint32_t FLAG_REPLY = 0x4;
constexpr uint32_t FLAG_NEED_REPLY = 0x8;

constexpr uint64_t F_PROTOCOL_FEATURES = 1ULL << 30;

constexpr uint64_t PROTOCOL_F_MQ = 1ULL << 0;
constexpr uint64_t PROTOCOL_F_REPLY_ACK = 1ULL << 3;
constexpr uint64_t PROTOCOL_F_BACKEND_REQ = 1ULL << 5;
constexpr uint64_t PROTOCOL_F_CONFIG = 1ULL << 9;
constexpr uint64_t PROTOCOL_F_INBAND_NOTIFICATIONS = 1ULL << 14;

constexpr uint64_t VRING_INDEX_MASK = 0xff;
constexpr uint64_t VRING_NOFD_MASK = 0x100;

constexpr size_t MAX_MEM_REGIONS = 2;
constexpr size_t MAX_PAYLOAD = 4096 + 12; // GET_CONFIG's data is at most a page
constexpr uint32_t MAX_QUEUE_SIZE = 256;   // what UML uses (MAX_SUPPORTED_QUEUE_SIZE)

struct Header
{
    uint32_t request;
    uint32_t flags;
    uint32_t size;
};

struct VringState
{
    uint32_t index;
    uint32_t num;
};

struct VringAddr
{
    uint32_t index;
    uint32_t flags;
    uint64_t desc;
    uint64_t used;
    uint64_t avail;
    uint64_t log;
};

struct MemRegion
{
    uint64_t guestAddr;
    uint64_t size;
    uint64_t userAddr;
    uint64_t mmapOffset;
};

struct MemTable
{
    uint32_t nregions;
    uint32_t padding;
    MemRegion regions[MAX_MEM_REGIONS];
};

struct ConfigHeader
{
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
};

static_assert(sizeof(Header) == 12);
static_assert(sizeof(VringAddr) == 40);
static_assert(sizeof(MemTable) == 72);

// Virtio device features (transport and net)
constexpr uint64_t VIRTIO_NET_F_CSUM = 1ULL << 0;
constexpr uint64_t VIRTIO_NET_F_GUEST_CSUM = 1ULL << 1;
constexpr uint64_t VIRTIO_NET_F_MTU = 1ULL << 3;
constexpr uint64_t VIRTIO_NET_F_MAC = 1ULL << 5;
constexpr uint64_t VIRTIO_NET_F_GUEST_TSO4 = 1ULL << 7;
constexpr uint64_t VIRTIO_NET_F_GUEST_TSO6 = 1ULL << 8;
constexpr uint64_t VIRTIO_NET_F_GUEST_ECN = 1ULL << 9;
constexpr uint64_t VIRTIO_NET_F_HOST_TSO4 = 1ULL << 11;
constexpr uint64_t VIRTIO_NET_F_HOST_TSO6 = 1ULL << 12;
constexpr uint64_t VIRTIO_NET_F_HOST_ECN = 1ULL << 13;
constexpr uint64_t VIRTIO_NET_F_MRG_RXBUF = 1ULL << 15;
constexpr uint64_t VIRTIO_NET_F_STATUS = 1ULL << 16;
constexpr uint64_t VIRTIO_NET_F_HOST_USO = 1ULL << 56;
constexpr uint64_t VIRTIO_F_INDIRECT_DESC = 1ULL << 28;
constexpr uint64_t VIRTIO_F_EVENT_IDX = 1ULL << 29;
constexpr uint64_t VIRTIO_F_VERSION_1 = 1ULL << 32;

// Split ring
constexpr uint16_t VRING_DESC_F_NEXT = 1;
constexpr uint16_t VRING_DESC_F_WRITE = 2;
constexpr uint16_t VRING_DESC_F_INDIRECT = 4;
constexpr uint16_t VRING_AVAIL_F_NO_INTERRUPT = 1;
constexpr uint16_t VRING_USED_F_NO_NOTIFY = 1;

/** vring_need_event (Linux's uapi virtio_ring.h): did the index move past event_idx in
 * the step old -> new_idx? */
constexpr bool
VringNeedEvent(uint16_t eventIdx, uint16_t newIdx, uint16_t old)
{
    return static_cast<uint16_t>(newIdx - eventIdx - 1) < static_cast<uint16_t>(newIdx - old);
}

struct Desc
{
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct UsedElem
{
    uint32_t id;
    uint32_t len;
};

static_assert(sizeof(Desc) == 16);
static_assert(sizeof(UsedElem) == 8);

// virtio-net
constexpr uint32_t VIRTIO_ID_NET = 1;
constexpr uint16_t VIRTIO_NET_S_LINK_UP = 1;
constexpr size_t NET_HDR_SIZE = 12; // with VERSION_1: num_buffers included
constexpr size_t NET_RX_QUEUE = 0;
constexpr size_t NET_TX_QUEUE = 1;
constexpr size_t ETH_MAX_FRAME = 1514; // without FCS: 1500 + 14
constexpr uint16_t NET_MTU = 1500;      // the link MTU the device gives (config space)

// virtio-net header (struct virtio_net_hdr_v1): u8 flags, u8 gso_type, le16 hdr_len,
// le16 gso_size, le16 csum_start, le16 csum_offset, le16 num_buffers.
constexpr size_t NET_HDR_OFF_FLAGS = 0;
constexpr size_t NET_HDR_OFF_GSO_TYPE = 1;
constexpr size_t NET_HDR_OFF_HDR_LEN = 2;
constexpr size_t NET_HDR_OFF_GSO_SIZE = 4;
constexpr size_t NET_HDR_OFF_CSUM_START = 6;
constexpr size_t NET_HDR_OFF_CSUM_OFFSET = 8;
constexpr size_t NET_HDR_OFF_NUM_BUFFERS = 10;
constexpr uint8_t NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t NET_HDR_F_DATA_VALID = 2;
constexpr uint8_t NET_HDR_F_RSC_INFO = 4;
constexpr uint8_t NET_HDR_GSO_NONE = 0;
constexpr uint8_t NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t NET_HDR_GSO_UDP = 3; // UFO (IP fragmentation): never offered
constexpr uint8_t NET_HDR_GSO_TCPV6 = 4;
constexpr uint8_t NET_HDR_GSO_UDP_L4 = 5;
constexpr uint8_t NET_HDR_GSO_ECN = 0x80;
// The largest GSO frame: an 802.1Q tag, and an IPv6 header besides 64 KiB of payload length.
constexpr size_t NET_MAX_GSO_FRAME = 14 + 4 + 40 + 65535;

struct NetConfig
{
    uint8_t mac[6];
    uint16_t status;
    uint16_t maxVirtqueuePairs;
    uint16_t mtu;
};

// virtio-console (include/uapi/linux/virtio_console.h) with VIRTIO_CONSOLE_F_MULTIPORT and
// one port: its data queues, then the control queues.
constexpr uint32_t VIRTIO_ID_CONSOLE = 3;
constexpr uint64_t VIRTIO_CONSOLE_F_MULTIPORT = 1ULL << 1;
constexpr size_t CONSOLE_RX_QUEUE = 0;      // port 0, host to guest
constexpr size_t CONSOLE_TX_QUEUE = 1;      // port 0, guest to host
constexpr size_t CONSOLE_CTRL_RX_QUEUE = 2; // control, host to guest
constexpr size_t CONSOLE_CTRL_TX_QUEUE = 3; // control, guest to host
constexpr uint32_t CONSOLE_BAD_ID = 0xffffffff;
// Control events (struct virtio_console_control: le32 id, le16 event, le16 value).
constexpr uint16_t CONSOLE_DEVICE_READY = 0;
constexpr uint16_t CONSOLE_PORT_ADD = 1;
constexpr uint16_t CONSOLE_PORT_REMOVE = 2;
constexpr uint16_t CONSOLE_PORT_READY = 3;
constexpr uint16_t CONSOLE_CONSOLE_PORT = 4;
constexpr uint16_t CONSOLE_RESIZE = 5;
constexpr uint16_t CONSOLE_PORT_OPEN = 6;
constexpr uint16_t CONSOLE_PORT_NAME = 7;
constexpr size_t CONSOLE_CONTROL_SIZE = 8;

struct ConsoleConfig
{
    uint16_t cols;
    uint16_t rows;
    uint32_t maxNrPorts;
    uint32_t emergWr;
};

static_assert(sizeof(ConsoleConfig) == 12);

} // namespace vhost
} // namespace ns3

#endif
