"""Wire constants of vhost-user, the split virtqueue, virtio-net and virtio-console, as UML
6.12 uses them.

Sources (Linux 6.12): ``arch/um/drivers/vhost_user.h``, ``arch/um/drivers/virtio_uml.c``,
``include/uapi/linux/virtio_ring.h``, ``include/uapi/linux/virtio_config.h``,
``include/uapi/linux/virtio_net.h``, ``drivers/net/virtio_net.c``,
``include/uapi/linux/virtio_console.h``, ``drivers/char/virtio_console.c``; request ids
beyond what UML sends come from the QEMU vhost-user specification.

The C++ core has the same values in ``bindings/model/vhost-user-protocol.h``; a test compares
the two, so this module is the one place Python code takes them from.  Pure constants and
``struct`` layouts: no I/O, no ns-3.
"""

from __future__ import annotations

import enum
import struct

# ----------------------------------------------------------------------
# vhost-user framing
# ----------------------------------------------------------------------
#: Protocol version carried in flags bits 0-1; UML sends and expects 1.
VHOST_USER_VERSION = 1
VHOST_USER_VERSION_MASK = 0x3
VHOST_USER_FLAG_REPLY = 1 << 2
VHOST_USER_FLAG_NEED_REPLY = 1 << 3
#: The only flags value UML accepts on a reply (``vhost_user_recv_resp``).
VHOST_USER_REPLY_FLAGS = VHOST_USER_VERSION | VHOST_USER_FLAG_REPLY  # 0x5

#: ``struct vhost_user_header``: u32 request, u32 flags, u32 size (payload bytes), host order.
HEADER = struct.Struct("=III")
HEADER_SIZE = HEADER.size  # 12

#: Payload shapes.
U64 = struct.Struct("=Q")
#: ``struct vhost_user_vring_state``: u32 index, u32 num.
VRING_STATE = struct.Struct("=II")
#: ``struct vhost_user_vring_addr``: u32 index, u32 flags, u64 desc, used, avail, log.
VRING_ADDR = struct.Struct("=IIQQQQ")
#: ``struct vhost_user_mem_regions`` head: u32 nregions, u32 padding.
MEM_REGIONS_HEAD = struct.Struct("=II")
#: ``struct vhost_user_mem_region``: u64 guest_addr, size, user_addr, mmap_offset.
MEM_REGION = struct.Struct("=QQQQ")
#: ``struct vhost_user_config`` head: u32 offset, u32 size, u32 flags, then ``size`` bytes.
CONFIG_HEAD = struct.Struct("=III")

#: UML's memory table has room for two regions and is always sent whole (8 + 2 * 32 bytes).
UML_MAX_MEM_REGIONS = 2
MEM_TABLE_PAYLOAD_SIZE = MEM_REGIONS_HEAD.size + UML_MAX_MEM_REGIONS * MEM_REGION.size  # 72
#: ``sizeof(union vhost_user_payload)`` in UML (the memory table is the largest member).
UML_PAYLOAD_SIZE = MEM_TABLE_PAYLOAD_SIZE
#: Largest payload UML reads from the back-end channel (payload union + 512 extra bytes);
#: a bigger ``size`` makes UML drop the header and leave the payload in the socket.
UML_BACKEND_MAX_PAYLOAD = UML_PAYLOAD_SIZE + 512  # 584

#: ``log`` address UML passes in SET_VRING_ADDR: no dirty log.
VRING_LOG_NONE = (1 << 64) - 1
#: u64 payload of SET_VRING_KICK/CALL/ERR: bits 0-7 queue index, bit 8 "no fd, poll".
VRING_INDEX_MASK = 0xFF
VRING_NOFD_MASK = 1 << 8

#: Queue size UML asks for (``MAX_SUPPORTED_QUEUE_SIZE``).
UML_QUEUE_SIZE = 256


class Request(enum.IntEnum):
    """Front-end -> back-end request ids (``enum vhost_user_request`` + QEMU spec)."""

    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21  # SET_SLAVE_REQ_FD in UML
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40


class BackendRequest(enum.IntEnum):
    """Back-end -> front-end request ids on the backend channel (``vhost_user_slave_request``)."""

    IOTLB_MSG = 1
    CONFIG_CHANGE_MSG = 2
    VRING_HOST_NOTIFIER_MSG = 3
    VRING_CALL = 4
    VRING_ERR = 5


class ProtocolFeature(enum.IntEnum):
    """Bit numbers of the vhost-user protocol features."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    MTU = 4
    BACKEND_REQ = 5  # SLAVE_REQ in UML
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    BACKEND_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16


#: Device feature bit 30: the back-end speaks GET/SET_PROTOCOL_FEATURES.
VHOST_USER_F_PROTOCOL_FEATURES = 30

#: Protocol features UML keeps of what the back-end offers (``VHOST_USER_SUPPORTED_PROTOCOL_F``).
UML_PROTOCOL_FEATURES = (
    (1 << ProtocolFeature.REPLY_ACK)
    | (1 << ProtocolFeature.BACKEND_REQ)
    | (1 << ProtocolFeature.CONFIG)
    | (1 << ProtocolFeature.INBAND_NOTIFICATIONS)
)  # 0x4228
#: Transport feature bits UML keeps on top of what the driver negotiated.
UML_SUPPORTED_FEATURES = 1 << VHOST_USER_F_PROTOCOL_FEATURES

# ----------------------------------------------------------------------
# virtio device ids and transport features (virtio_ids.h, virtio_config.h, virtio_ring.h)
# ----------------------------------------------------------------------
VIRTIO_ID_NET = 1
VIRTIO_ID_CONSOLE = 3
VIRTIO_ID_MAC80211_HWSIM = 29


class VirtioFeature(enum.IntEnum):
    """Transport feature bit numbers."""

    NOTIFY_ON_EMPTY = 24
    ANY_LAYOUT = 27
    RING_INDIRECT_DESC = 28
    RING_EVENT_IDX = 29
    VERSION_1 = 32
    ACCESS_PLATFORM = 33
    RING_PACKED = 34
    IN_ORDER = 35
    ORDER_PLATFORM = 36
    SR_IOV = 37
    NOTIFICATION_DATA = 38
    NOTIF_CONFIG_DATA = 39
    RING_RESET = 40
    ADMIN_VQ = 41


VIRTIO_TRANSPORT_F_START = 28
VIRTIO_TRANSPORT_F_END = 42
#: Transport bits ``vring_transport_features()`` lets through; it clears every other bit in
#: [28, 42), bit 30 included (UML puts bit 30 back afterwards).
LINUX_RING_TRANSPORT_FEATURES = (
    (1 << VirtioFeature.RING_INDIRECT_DESC)
    | (1 << VirtioFeature.RING_EVENT_IDX)
    | (1 << VirtioFeature.VERSION_1)
    | (1 << VirtioFeature.ACCESS_PLATFORM)
    | (1 << VirtioFeature.RING_PACKED)
    | (1 << VirtioFeature.ORDER_PLATFORM)
    | (1 << VirtioFeature.NOTIFICATION_DATA)
)

# ----------------------------------------------------------------------
# split virtqueue (virtio_ring.h); little-endian with VERSION_1 (x86: always)
# ----------------------------------------------------------------------
VRING_DESC_F_NEXT = 1
VRING_DESC_F_WRITE = 2
VRING_DESC_F_INDIRECT = 4
VRING_USED_F_NO_NOTIFY = 1
VRING_AVAIL_F_NO_INTERRUPT = 1

#: ``struct vring_desc``: le64 addr, le32 len, le16 flags, le16 next.
VRING_DESC = struct.Struct("<QIHH")
VRING_DESC_SIZE = VRING_DESC.size  # 16
#: ``struct vring_used_elem``: le32 id, le32 len.
VRING_USED_ELEM = struct.Struct("<II")
VRING_U16 = struct.Struct("<H")
VRING_DESC_ALIGN = 16
VRING_AVAIL_ALIGN = 2
VRING_USED_ALIGN = 4
#: Offsets inside the avail / used areas.
VRING_AVAIL_OFF_FLAGS = 0
VRING_AVAIL_OFF_IDX = 2
VRING_AVAIL_OFF_RING = 4
VRING_USED_OFF_FLAGS = 0
VRING_USED_OFF_IDX = 2
VRING_USED_OFF_RING = 4
#: Alignment Linux uses between the avail and the used area (``vring_create_virtqueue(...,
#: PAGE_SIZE, ...)`` in virtio_uml.c).
UML_VRING_ALIGN = 4096


def vring_desc_size(num: int) -> int:
    """Bytes of the descriptor table."""
    return VRING_DESC_SIZE * num


def vring_avail_size(num: int) -> int:
    """Bytes of the available ring, ``used_event`` included (written by Linux regardless)."""
    return 4 + 2 * num + 2


def vring_used_size(num: int) -> int:
    """Bytes of the used ring, ``avail_event`` included."""
    return 4 + 8 * num + 2


def vring_need_event(event_idx: int, new_idx: int, old: int) -> bool:
    """``vring_need_event()`` (uapi virtio_ring.h; the core's ``vhost::VringNeedEvent``):
    whether the index moved past ``event_idx`` in the step ``old`` -> ``new_idx``."""
    return (new_idx - event_idx - 1) & 0xFFFF < (new_idx - old) & 0xFFFF


def vring_layout(num: int, align: int = UML_VRING_ALIGN) -> tuple[int, int, int, int]:
    """``vring_init()``/``vring_size()``: (desc, avail, used, total) offsets of one ring block."""
    desc = 0
    avail = desc + vring_desc_size(num)
    used = (avail + vring_avail_size(num) + align - 1) & ~(align - 1)
    return desc, avail, used, used + vring_used_size(num)


# ----------------------------------------------------------------------
# virtio-net (virtio_net.h, drivers/net/virtio_net.c)
# ----------------------------------------------------------------------
class NetFeature(enum.IntEnum):
    """virtio-net device feature bit numbers."""

    CSUM = 0
    GUEST_CSUM = 1
    CTRL_GUEST_OFFLOADS = 2
    MTU = 3
    MAC = 5
    GSO = 6  # legacy only
    GUEST_TSO4 = 7
    GUEST_TSO6 = 8
    GUEST_ECN = 9
    GUEST_UFO = 10
    HOST_TSO4 = 11
    HOST_TSO6 = 12
    HOST_ECN = 13
    HOST_UFO = 14
    MRG_RXBUF = 15
    STATUS = 16
    CTRL_VQ = 17
    CTRL_RX = 18
    CTRL_VLAN = 19
    CTRL_RX_EXTRA = 20
    GUEST_ANNOUNCE = 21
    MQ = 22
    CTRL_MAC_ADDR = 23
    DEVICE_STATS = 50
    VQ_NOTF_COAL = 52
    NOTF_COAL = 53
    GUEST_USO4 = 54
    GUEST_USO6 = 55
    HOST_USO = 56
    HASH_REPORT = 57
    GUEST_HDRLEN = 59
    RSS = 60
    RSC_EXT = 61
    STANDBY = 62
    SPEED_DUPLEX = 63


def _bits(*bits: int) -> int:
    mask = 0
    for bit in bits:
        mask |= 1 << bit
    return mask


#: ``features[]`` of the 6.12 virtio-net driver (VIRTNET_FEATURES): what Linux accepts when
#: the device offers VERSION_1.
LINUX_NET_DRIVER_FEATURES = _bits(
    NetFeature.CSUM, NetFeature.GUEST_CSUM, NetFeature.MAC,
    NetFeature.HOST_TSO4, NetFeature.HOST_UFO, NetFeature.HOST_TSO6, NetFeature.HOST_ECN,
    NetFeature.GUEST_TSO4, NetFeature.GUEST_TSO6, NetFeature.GUEST_ECN, NetFeature.GUEST_UFO,
    NetFeature.HOST_USO, NetFeature.GUEST_USO4, NetFeature.GUEST_USO6,
    NetFeature.MRG_RXBUF, NetFeature.STATUS, NetFeature.CTRL_VQ,
    NetFeature.CTRL_RX, NetFeature.CTRL_VLAN, NetFeature.GUEST_ANNOUNCE, NetFeature.MQ,
    NetFeature.CTRL_MAC_ADDR, NetFeature.MTU, NetFeature.CTRL_GUEST_OFFLOADS,
    NetFeature.SPEED_DUPLEX, NetFeature.STANDBY, NetFeature.RSS, NetFeature.HASH_REPORT,
    NetFeature.NOTF_COAL, NetFeature.VQ_NOTF_COAL, NetFeature.GUEST_HDRLEN,
    NetFeature.DEVICE_STATS,
)
#: ``features_legacy[]``: used when the device does not offer VERSION_1.
LINUX_NET_DRIVER_FEATURES_LEGACY = LINUX_NET_DRIVER_FEATURES | _bits(
    NetFeature.GSO, VirtioFeature.ANY_LAYOUT)

#: Queue indices of a single-queue-pair virtio-net device.
NET_RX_QUEUE = 0
NET_TX_QUEUE = 1
NET_CTRL_QUEUE = 2  # only with CTRL_VQ

VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_F_RSC_INFO = 4
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80

#: ``struct virtio_net_hdr`` (legacy without MRG_RXBUF): u8 flags, u8 gso_type, le16 hdr_len,
#: le16 gso_size, le16 csum_start, le16 csum_offset.
VIRTIO_NET_HDR = struct.Struct("<BBHHHH")
#: ``struct virtio_net_hdr_mrg_rxbuf`` (VERSION_1 or MRG_RXBUF): the above + le16 num_buffers.
VIRTIO_NET_HDR_MRG = struct.Struct("<BBHHHHH")
VIRTIO_NET_HDR_LEN_LEGACY = VIRTIO_NET_HDR.size  # 10
VIRTIO_NET_HDR_LEN = VIRTIO_NET_HDR_MRG.size  # 12
VIRTIO_NET_HDR_OFF_NUM_BUFFERS = 10

#: Config space offsets (``struct virtio_net_config``).
NET_CONFIG_OFF_MAC = 0
NET_CONFIG_OFF_STATUS = 6
NET_CONFIG_OFF_MAX_VQ_PAIRS = 8
NET_CONFIG_OFF_MTU = 10
NET_CONFIG_OFF_SPEED = 12
NET_CONFIG_OFF_DUPLEX = 16
NET_CONFIG_SIZE = 24  # through rss/hash fields not used here; enough for mac..duplex
VIRTIO_NET_S_LINK_UP = 1
VIRTIO_NET_S_ANNOUNCE = 2

ETH_ALEN = 6
ETH_HLEN = 14
ETH_DATA_LEN = 1500
ETH_MIN_MTU = 68
VLAN_HLEN = 4
#: ``GOOD_PACKET_LEN`` of virtio_net.c: the largest frame a small RX buffer takes.
GOOD_PACKET_LEN = ETH_HLEN + VLAN_HLEN + ETH_DATA_LEN  # 1518
#: Device-writable length of each RX buffer the 6.12 driver posts without MRG_RXBUF and
#: without big packets (``add_recvbuf_small``: ``hdr_len + GOOD_PACKET_LEN``), one descriptor.
LINUX_RX_BUF_LEN = VIRTIO_NET_HDR_LEN + GOOD_PACKET_LEN  # 1530
LINUX_RX_BUF_LEN_LEGACY = VIRTIO_NET_HDR_LEN_LEGACY + GOOD_PACKET_LEN  # 1528
#: Bytes per mergeable RX buffer (MRG_RXBUF, one descriptor) as the 6.12 driver first posts
#: them (``get_mergeable_buf_len``: ``hdr_len + GOOD_PACKET_LEN``, its EWMA's floor, aligned
#: to the 64-byte cache line; it grows with the average packet up to a page).
LINUX_MRG_RX_BUF_LEN = (VIRTIO_NET_HDR_LEN + GOOD_PACKET_LEN + 63) & ~63  # 1536
#: Receive offloads a device with receive merging offers (the core's
#: ``RxMerger::OFFERED_FEATURES``): GUEST_TSO4/6 with ECN, and mergeable RX buffers.
RX_MERGE_FEATURES = _bits(NetFeature.GUEST_TSO4, NetFeature.GUEST_TSO6, NetFeature.GUEST_ECN,
                          NetFeature.MRG_RXBUF)
#: NAPI weight of virtio-net: used entries handled per poll before a refill check.
LINUX_NAPI_BUDGET = 64


# ----------------------------------------------------------------------
# virtio-console (virtio_console.h, drivers/char/virtio_console.c)
# ----------------------------------------------------------------------
class ConsoleFeature(enum.IntEnum):
    """virtio-console device feature bit numbers."""

    SIZE = 0
    MULTIPORT = 1
    EMERG_WRITE = 2


#: ``features[]`` of the 6.12 console driver.
LINUX_CONSOLE_DRIVER_FEATURES = _bits(ConsoleFeature.SIZE, ConsoleFeature.MULTIPORT,
                                      ConsoleFeature.EMERG_WRITE)

#: Queues of a multiport device with one port: port 0's, then the control queues.
CONSOLE_RX_QUEUE = 0
CONSOLE_TX_QUEUE = 1
CONSOLE_CTRL_RX_QUEUE = 2
CONSOLE_CTRL_TX_QUEUE = 3
CONSOLE_NUM_QUEUES = 4
CONSOLE_BAD_ID = 0xFFFF_FFFF


class ConsoleEvent(enum.IntEnum):
    """Control message events (``VIRTIO_CONSOLE_*``)."""

    DEVICE_READY = 0
    PORT_ADD = 1
    PORT_REMOVE = 2
    PORT_READY = 3
    CONSOLE_PORT = 4
    RESIZE = 5
    PORT_OPEN = 6
    PORT_NAME = 7


#: ``struct virtio_console_control``: le32 id, le16 event, le16 value (then a name).
CONSOLE_CONTROL = struct.Struct("<IHH")
#: Config space (``struct virtio_console_config``): le16 cols, le16 rows, le32 max_nr_ports,
#: le32 emerg_wr.
CONSOLE_CONFIG = struct.Struct("<HHII")
CONSOLE_CONFIG_OFF_MAX_NR_PORTS = 4
#: What the driver copies a generic port's write into (``port_fops_write``).
LINUX_CONSOLE_MAX_WRITE = 32 * 1024


def request_name(code: int) -> str:
    """Name of a front-end request id (``REQ_<n>`` when unknown)."""
    try:
        return Request(code).name
    except ValueError:
        return f"REQ_{code}"


def backend_request_name(code: int) -> str:
    """Name of a back-end request id (``BACKEND_REQ_<n>`` when unknown)."""
    try:
        return BackendRequest(code).name
    except ValueError:
        return f"BACKEND_REQ_{code}"
