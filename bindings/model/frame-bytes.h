// Raw Ethernet/IP frames for the code that builds or rewrites them byte by byte (the bridge,
// the GSO segmenter, the receive merger; the console device's little-endian fields):
// protocol numbers, header fields, big-endian and little-endian fields, the Internet
// checksum (RFC 1071).
#ifndef NS3_UML_FRAME_BYTES_H
#define NS3_UML_FRAME_BYTES_H

#include <cstddef>
#include <cstdint>

namespace ns3
{
namespace framebytes
{

constexpr uint16_t ETH_P_IP = 0x0800;
constexpr uint16_t ETH_P_ARP = 0x0806;
constexpr uint16_t ETH_P_8021Q = 0x8100;
constexpr uint16_t ETH_P_IPV6 = 0x86DD;
constexpr size_t ETH_HLEN = 14;
constexpr size_t VLAN_HLEN = 4;
constexpr size_t IPV4_HLEN = 20; // without options
constexpr size_t IPV6_HLEN = 40;
constexpr size_t TCP_HLEN = 20; // without options
constexpr size_t UDP_HLEN = 8;
constexpr uint8_t IPPROTO_TCP = 6;
constexpr uint8_t IPPROTO_UDP = 17;
constexpr uint8_t IPPROTO_ICMPV6 = 58;

// Header fields (offsets from the header's start) and TCP flags.
constexpr uint8_t TCP_FLAG_FIN = 0x01;
constexpr uint8_t TCP_FLAG_SYN = 0x02;
constexpr uint8_t TCP_FLAG_RST = 0x04;
constexpr uint8_t TCP_FLAG_PSH = 0x08;
constexpr uint8_t TCP_FLAG_URG = 0x20;
constexpr uint8_t TCP_FLAG_CWR = 0x80;
constexpr size_t TCP_OFF_SEQ = 4;
constexpr size_t TCP_OFF_ACK = 8;
constexpr size_t TCP_OFF_DOFF = 12;
constexpr size_t TCP_OFF_FLAGS = 13;
constexpr size_t TCP_OFF_CHECK = 16;
constexpr size_t UDP_OFF_LEN = 4;
constexpr size_t UDP_OFF_CHECK = 6;
constexpr size_t IPV4_OFF_TOS = 1;
constexpr size_t IPV4_OFF_TOT_LEN = 2;
constexpr size_t IPV4_OFF_ID = 4;
constexpr size_t IPV4_OFF_FRAG = 6;
constexpr size_t IPV4_OFF_TTL = 8;
constexpr size_t IPV4_OFF_PROTO = 9;
constexpr size_t IPV4_OFF_CHECK = 10;
constexpr size_t IPV4_OFF_SRC = 12;
constexpr size_t IPV6_OFF_PLEN = 4;
constexpr size_t IPV6_OFF_NEXT = 6;
constexpr size_t IPV6_OFF_HOPS = 7;
constexpr size_t IPV6_OFF_SRC = 8;

inline uint16_t
Be16(const uint8_t* p)
{
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

inline uint32_t
Be32(const uint8_t* p)
{
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
           static_cast<uint32_t>(p[2]) << 8 | p[3];
}

inline void
PutBe16(uint8_t* p, uint16_t v)
{
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

inline void
PutBe32(uint8_t* p, uint32_t v)
{
    p[0] = static_cast<uint8_t>(v >> 24);
    p[1] = static_cast<uint8_t>(v >> 16);
    p[2] = static_cast<uint8_t>(v >> 8);
    p[3] = static_cast<uint8_t>(v);
}

inline uint16_t
Le16(const uint8_t* p)
{
    return static_cast<uint16_t>(p[0] | p[1] << 8);
}

inline void
PutLe16(uint8_t* p, uint16_t v)
{
    p[0] = static_cast<uint8_t>(v);
    p[1] = static_cast<uint8_t>(v >> 8);
}

inline uint32_t
Le32(const uint8_t* p)
{
    return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
           static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

inline void
PutLe32(uint8_t* p, uint32_t v)
{
    PutLe16(p, static_cast<uint16_t>(v));
    PutLe16(p + 2, static_cast<uint16_t>(v >> 16));
}

/** Add data (big-endian 16-bit words; an odd last byte padded with zero) to a running
 * one's-complement sum. Every piece but the last must have an even length. */
inline uint64_t
ChecksumAdd(const uint8_t* data, size_t len, uint64_t sum = 0)
{
    size_t i = 0;
    for (; i + 1 < len; i += 2)
    {
        sum += Be16(data + i);
    }
    if (len & 1)
    {
        sum += static_cast<uint64_t>(data[len - 1]) << 8;
    }
    return sum;
}

/** Fold a running sum to 16 bits and complement it: the value for the checksum field. */
inline uint16_t
ChecksumFinish(uint64_t sum)
{
    while (sum >> 16)
    {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    return static_cast<uint16_t>(~sum);
}

} // namespace framebytes
} // namespace ns3

#endif
