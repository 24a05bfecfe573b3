#include "gso-segmenter.h"

#include "frame-bytes.h"

#include <algorithm>
#include <cstring>

namespace ns3
{

namespace
{
using namespace framebytes;

constexpr uint16_t IPV4_FRAG_MASK = 0x3fff; // MF and the fragment offset
constexpr uint16_t CSUM_MANGLED_0 = 0xffff; // a computed 0 is sent as 0xffff, as Linux does

std::string
Hex(unsigned v, int digits = 2)
{
    static const char* hex = "0123456789abcdef";
    std::string s = "0x";
    for (int shift = 4 * (digits - 1); shift >= 0; shift -= 4)
    {
        s += hex[(v >> shift) & 15];
    }
    return s;
}

/** Where the headers of a GSO frame are, once checked. */
struct Layout
{
    size_t l3;     // IP header offset (after Ethernet and an optional 802.1Q tag)
    size_t l4;     // TCP/UDP header offset
    size_t hdrs;   // first payload byte
    bool ipv4;
    bool tcp;
};

Layout
ParseGsoFrame(const VirtioNetHeader& h, const uint8_t* f, size_t len)
{
    uint8_t type = h.gsoType & ~vhost::NET_HDR_GSO_ECN;
    Layout l{};
    l.tcp = type != vhost::NET_HDR_GSO_UDP_L4;
    l.l3 = ETH_HLEN;
    uint16_t ethertype = Be16(f + 12);
    if (ethertype == ETH_P_8021Q && len >= ETH_HLEN + VLAN_HLEN)
    {
        l.l3 += VLAN_HLEN;
        ethertype = Be16(f + 16);
    }
    const std::string what = l.tcp ? "TCP" : "UDP";
    const std::string notIp = "GSO frame (gso_type " + Hex(h.gsoType) + ") is not " + what +
                              " over IPv4 or IPv6 (ethertype " + Hex(ethertype, 4) +
                              ")";
    uint8_t proto;
    if (ethertype == ETH_P_IP && type != vhost::NET_HDR_GSO_TCPV6)
    {
        if (len < l.l3 + IPV4_HLEN || f[l.l3] >> 4 != 4 || (f[l.l3] & 15) * 4 < IPV4_HLEN)
        {
            throw GsoError(notIp + ": no IPv4 header");
        }
        l.ipv4 = true;
        l.l4 = l.l3 + (f[l.l3] & 15) * 4;
        proto = f[l.l3 + IPV4_OFF_PROTO];
        if (Be16(f + l.l3 + IPV4_OFF_FRAG) & IPV4_FRAG_MASK)
        {
            throw GsoError("GSO frame is an IPv4 fragment");
        }
        if (len - l.l3 > 0xffff)
        {
            throw GsoError("GSO frame of " + std::to_string(len) +
                           " bytes is longer than an IPv4 packet can be");
        }
    }
    else if (ethertype == ETH_P_IPV6 && type != vhost::NET_HDR_GSO_TCPV4)
    {
        if (len < l.l3 + IPV6_HLEN || f[l.l3] >> 4 != 6)
        {
            throw GsoError(notIp + ": no IPv6 header");
        }
        l.ipv4 = false;
        l.l4 = l.l3 + IPV6_HLEN;
        proto = f[l.l3 + IPV6_OFF_NEXT]; // extension headers are not segmented
        if (len - l.l4 > 0xffff)
        {
            throw GsoError("GSO frame of " + std::to_string(len) +
                           " bytes is longer than an IPv6 payload can be");
        }
    }
    else
    {
        throw GsoError(notIp);
    }
    if (proto != (l.tcp ? IPPROTO_TCP : IPPROTO_UDP))
    {
        throw GsoError(notIp + ": IP protocol " + std::to_string(proto));
    }
    if (l.tcp)
    {
        if (len < l.l4 + TCP_HLEN || (f[l.l4 + 12] >> 4) * 4u < TCP_HLEN ||
            len < l.l4 + (f[l.l4 + 12] >> 4) * 4u)
        {
            throw GsoError(notIp + ": TCP header past the frame's end");
        }
        l.hdrs = l.l4 + (f[l.l4 + 12] >> 4) * 4u;
    }
    else
    {
        if (len < l.l4 + UDP_HLEN)
        {
            throw GsoError(notIp + ": UDP header past the frame's end");
        }
        l.hdrs = l.l4 + UDP_HLEN;
    }
    // Linux starts the checksum at the transport header, always.
    size_t checkAt = l.tcp ? TCP_OFF_CHECK : UDP_OFF_CHECK;
    if (h.csumStart != l.l4 || h.csumOffset != checkAt)
    {
        throw GsoError("GSO frame with csum_start " + std::to_string(h.csumStart) +
                       " and csum_offset " + std::to_string(h.csumOffset) + ": the " + what +
                       " header is at " + std::to_string(l.l4) + ", its checksum at +" +
                       std::to_string(checkAt));
    }
    return l;
}
} // namespace

VirtioNetHeader
VirtioNetHeader::Parse(const uint8_t* b)
{
    return {b[vhost::NET_HDR_OFF_FLAGS],
            b[vhost::NET_HDR_OFF_GSO_TYPE],
            Le16(b + vhost::NET_HDR_OFF_HDR_LEN),
            Le16(b + vhost::NET_HDR_OFF_GSO_SIZE),
            Le16(b + vhost::NET_HDR_OFF_CSUM_START),
            Le16(b + vhost::NET_HDR_OFF_CSUM_OFFSET)};
}

GsoSegmenter::GsoSegmenter(uint16_t mtu)
    : m_mtu(mtu)
{
}

void
GsoSegmenter::Process(uint64_t features,
                      const uint8_t* header,
                      uint8_t* frame,
                      size_t len,
                      const Emit& emit)
{
    VirtioNetHeader h = VirtioNetHeader::Parse(header);
    if (h.flags == 0 && h.gsoType == vhost::NET_HDR_GSO_NONE)
    {
        if (len < ETH_HLEN || len > vhost::ETH_MAX_FRAME + VLAN_HLEN)
        {
            throw GsoError("transmit frame of " + std::to_string(len) + " bytes without GSO");
        }
        emit(frame, len);
        return;
    }
    const std::string fields = " (flags " + Hex(h.flags) + ", gso_type " + Hex(h.gsoType) + ")";
    if (!(features & vhost::VIRTIO_NET_F_CSUM))
    {
        throw GsoError("transmit header asks for an offload that was not negotiated" + fields);
    }
    if (h.flags & ~vhost::NET_HDR_F_NEEDS_CSUM)
    {
        throw GsoError("transmit header with flags other than NEEDS_CSUM" + fields);
    }
    uint8_t type = h.gsoType & ~vhost::NET_HDR_GSO_ECN;
    uint64_t needs = 0;
    switch (type)
    {
    case vhost::NET_HDR_GSO_NONE:
        needs = vhost::VIRTIO_NET_F_CSUM;
        break;
    case vhost::NET_HDR_GSO_TCPV4:
        needs = vhost::VIRTIO_NET_F_HOST_TSO4;
        break;
    case vhost::NET_HDR_GSO_TCPV6:
        needs = vhost::VIRTIO_NET_F_HOST_TSO6;
        break;
    case vhost::NET_HDR_GSO_UDP_L4:
        needs = vhost::VIRTIO_NET_F_HOST_USO;
        break;
    case vhost::NET_HDR_GSO_UDP: // UFO: never offered
        throw GsoError("transmit header asks for an offload that was not negotiated" + fields);
    default:
        throw GsoError("transmit header with an unknown gso_type" + fields);
    }
    if (h.gsoType & vhost::NET_HDR_GSO_ECN)
    {
        if (type != vhost::NET_HDR_GSO_TCPV4 && type != vhost::NET_HDR_GSO_TCPV6)
        {
            throw GsoError("transmit header with ECN on a gso_type that is not TCP" + fields);
        }
        needs |= vhost::VIRTIO_NET_F_HOST_ECN;
    }
    if ((features & needs) != needs)
    {
        throw GsoError("transmit header asks for an offload that was not negotiated" + fields);
    }
    if (h.hdrLen > len)
    {
        throw GsoError("transmit header's hdr_len " + std::to_string(h.hdrLen) +
                       " is past a frame of " + std::to_string(len) + " bytes");
    }
    if (len < ETH_HLEN)
    {
        throw GsoError("transmit frame of " + std::to_string(len) + " bytes");
    }
    if (type == vhost::NET_HDR_GSO_NONE)
    {
        if (len > vhost::ETH_MAX_FRAME + VLAN_HLEN)
        {
            throw GsoError("transmit frame of " + std::to_string(len) + " bytes without GSO");
        }
        CompleteChecksum(h, frame, len);
        emit(frame, len);
        return;
    }
    if (!(h.flags & vhost::NET_HDR_F_NEEDS_CSUM))
    {
        throw GsoError("GSO frame without NEEDS_CSUM" + fields);
    }
    Segment(h, frame, len, emit);
}

void
GsoSegmenter::CompleteChecksum(const VirtioNetHeader& h, uint8_t* frame, size_t len) const
{
    // The field holds the pseudo-header's sum; the checksum covers it and the rest of the
    // frame from csum_start on (Linux's skb_checksum_help).
    if (h.csumStart >= len || size_t{h.csumStart} + h.csumOffset + 2 > len)
    {
        throw GsoError("transmit header's csum_start " + std::to_string(h.csumStart) +
                       " and csum_offset " + std::to_string(h.csumOffset) +
                       " are outside a frame of " + std::to_string(len) + " bytes");
    }
    uint16_t sum = ChecksumFinish(ChecksumAdd(frame + h.csumStart, len - h.csumStart));
    PutBe16(frame + h.csumStart + h.csumOffset, sum ? sum : CSUM_MANGLED_0);
}

void
GsoSegmenter::Segment(const VirtioNetHeader& h,
                      const uint8_t* f,
                      size_t len,
                      const Emit& emit)
{
    if (h.gsoSize == 0)
    {
        throw GsoError("GSO frame with gso_size 0");
    }
    Layout l = ParseGsoFrame(h, f, len);
    size_t l4hdr = l.hdrs - l.l4;
    if (l.hdrs - l.l3 + h.gsoSize > m_mtu)
    {
        throw GsoError("GSO frame with gso_size " + std::to_string(h.gsoSize) + ": segments of " +
                       std::to_string(l.hdrs - l.l3 + h.gsoSize) +
                       " bytes of IP would exceed the MTU of " + std::to_string(m_mtu));
    }
    const size_t payload = len - l.hdrs;
    const size_t mss = h.gsoSize;
    const size_t count = std::max<size_t>(1, (payload + mss - 1) / mss);
    const uint16_t id = l.ipv4 ? Be16(f + l.l3 + IPV4_OFF_ID) : 0;
    const uint32_t seq = l.tcp ? Be32(f + l.l4 + TCP_OFF_SEQ) : 0;
    // The pseudo-header without its length: the addresses and the protocol.
    uint64_t pseudo = l.ipv4 ? ChecksumAdd(f + l.l3 + IPV4_OFF_SRC, 8)
                             : ChecksumAdd(f + l.l3 + IPV6_OFF_SRC, 32);
    pseudo += l.tcp ? IPPROTO_TCP : IPPROTO_UDP;
    m_segment.resize(l.hdrs + mss);
    uint8_t* s = m_segment.data();
    std::memcpy(s, f, l.hdrs);
    uint8_t* ip = s + l.l3;
    uint8_t* l4 = s + l.l4;
    for (size_t i = 0, off = 0; i < count; ++i, off += mss)
    {
        const size_t n = std::min(mss, payload - off);
        std::memcpy(s + l.hdrs, f + l.hdrs + off, n);
        const size_t l4len = l4hdr + n;
        if (l.ipv4)
        {
            PutBe16(ip + IPV4_OFF_TOT_LEN, static_cast<uint16_t>(l.hdrs - l.l3 + n));
            PutBe16(ip + IPV4_OFF_ID, static_cast<uint16_t>(id + i));
            PutBe16(ip + IPV4_OFF_CHECK, 0);
            PutBe16(ip + IPV4_OFF_CHECK, ChecksumFinish(ChecksumAdd(ip, l.l4 - l.l3)));
        }
        else
        {
            PutBe16(ip + IPV6_OFF_PLEN, static_cast<uint16_t>(l4len));
        }
        size_t checkAt;
        if (l.tcp)
        {
            PutBe32(l4 + TCP_OFF_SEQ, static_cast<uint32_t>(seq + off));
            uint8_t flags = f[l.l4 + TCP_OFF_FLAGS];
            if (i > 0)
            {
                flags &= ~TCP_FLAG_CWR;
            }
            if (i + 1 < count)
            {
                flags &= ~(TCP_FLAG_FIN | TCP_FLAG_PSH);
            }
            l4[TCP_OFF_FLAGS] = flags;
            checkAt = TCP_OFF_CHECK;
        }
        else
        {
            PutBe16(l4 + UDP_OFF_LEN, static_cast<uint16_t>(l4len));
            checkAt = UDP_OFF_CHECK;
        }
        PutBe16(l4 + checkAt, 0);
        uint16_t sum = ChecksumFinish(ChecksumAdd(l4, l4len, pseudo + l4len));
        PutBe16(l4 + checkAt, sum ? sum : CSUM_MANGLED_0);
        emit(s, l.hdrs + n);
    }
}

} // namespace ns3
