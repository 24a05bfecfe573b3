#include "rx-merger.h"

#include "frame-bytes.h"

#include <cstring>

namespace ns3
{

namespace
{
using namespace framebytes;

constexpr uint8_t IPV4_VERSION_IHL = 0x45; // version 4, no options: all GRO takes
constexpr uint16_t IPV4_NOT_DF = 0xbfff;   // reserved bit, MF, fragment offset
constexpr size_t MAX_IP_LEN = 0xffff;      // GRO_LEGACY_MAX_SIZE - 1 of IP per frame
// Flags a first segment may not have (tcp_gro_receive flushes it at once).
constexpr uint8_t TCP_FLUSH_FLAGS =
    TCP_FLAG_URG | TCP_FLAG_PSH | TCP_FLAG_RST | TCP_FLAG_SYN | TCP_FLAG_FIN;
// Flags that may differ from the first segment's (tcp_flag_word's CWR | FIN | PSH).
constexpr uint8_t TCP_MAY_DIFFER = TCP_FLAG_CWR | TCP_FLAG_FIN | TCP_FLAG_PSH;

/** A TCP segment GRO could take, where its parts are. */
struct Segment
{
    bool ipv4;
    size_t l4;      // TCP header offset
    size_t hdrs;    // first payload byte
    size_t payload; // payload bytes
    uint32_t seq;
    uint8_t flags;
};

/** Whether frame f is a TCP segment GRO would look at (inet_gro_receive, ipv6_gro_receive,
 * tcp_gro_pull_header), and where its parts are. */
bool
Parse(const std::vector<uint8_t>& frame, Segment& s)
{
    const uint8_t* f = frame.data();
    const size_t len = frame.size();
    if (len < ETH_HLEN)
    {
        return false;
    }
    const uint16_t ethertype = Be16(f + 12);
    const uint8_t* ip = f + ETH_HLEN;
    if (ethertype == ETH_P_IP)
    {
        if (len < ETH_HLEN + IPV4_HLEN || ip[0] != IPV4_VERSION_IHL ||
            ip[IPV4_OFF_PROTO] != IPPROTO_TCP || Be16(ip + IPV4_OFF_TOT_LEN) != len - ETH_HLEN ||
            (Be16(ip + IPV4_OFF_FRAG) & IPV4_NOT_DF) ||
            ChecksumFinish(ChecksumAdd(ip, IPV4_HLEN)) != 0)
        {
            return false;
        }
        s.ipv4 = true;
        s.l4 = ETH_HLEN + IPV4_HLEN;
    }
    else if (ethertype == ETH_P_IPV6)
    {
        if (len < ETH_HLEN + IPV6_HLEN || ip[0] >> 4 != 6 ||
            ip[IPV6_OFF_NEXT] != IPPROTO_TCP ||
            Be16(ip + IPV6_OFF_PLEN) != len - ETH_HLEN - IPV6_HLEN)
        {
            return false;
        }
        s.ipv4 = false;
        s.l4 = ETH_HLEN + IPV6_HLEN;
    }
    else
    {
        return false;
    }
    if (len < s.l4 + TCP_HLEN)
    {
        return false;
    }
    const size_t thlen = (f[s.l4 + TCP_OFF_DOFF] >> 4) * 4u;
    if (thlen < TCP_HLEN || len < s.l4 + thlen)
    {
        return false;
    }
    s.hdrs = s.l4 + thlen;
    s.payload = len - s.hdrs;
    s.seq = Be32(f + s.l4 + TCP_OFF_SEQ);
    s.flags = f[s.l4 + TCP_OFF_FLAGS];
    return true;
}

/** Whether segment n (the count-th after the first, h) belongs to h's flow and run, as
 * inet_gro_flush/ipv6_gro_flush and tcp_gro_receive decide. */
bool
Continues(const std::vector<uint8_t>& first,
          const Segment& h,
          const std::vector<uint8_t>& next,
          const Segment& n,
          size_t count,
          size_t merged)
{
    const uint8_t* a = first.data();
    const uint8_t* b = next.data();
    if (n.ipv4 != h.ipv4 || n.hdrs != h.hdrs || std::memcmp(a, b, ETH_HLEN) != 0)
    {
        return false;
    }
    const uint8_t* ia = a + ETH_HLEN;
    const uint8_t* ib = b + ETH_HLEN;
    if (h.ipv4)
    {
        // All fields alike but the length, the checksum and the id, which counts up.
        if (ia[IPV4_OFF_TOS] != ib[IPV4_OFF_TOS] || ia[IPV4_OFF_TTL] != ib[IPV4_OFF_TTL] ||
            ia[IPV4_OFF_FRAG] != ib[IPV4_OFF_FRAG] ||
            std::memcmp(ia + IPV4_OFF_SRC, ib + IPV4_OFF_SRC, 8) != 0 ||
            Be16(ib + IPV4_OFF_ID) != static_cast<uint16_t>(Be16(ia + IPV4_OFF_ID) + count))
        {
            return false;
        }
    }
    else if (std::memcmp(ia, ib, 4) != 0 || ia[IPV6_OFF_HOPS] != ib[IPV6_OFF_HOPS] ||
             std::memcmp(ia + IPV6_OFF_SRC, ib + IPV6_OFF_SRC, 32) != 0)
    {
        return false;
    }
    const uint8_t* ta = a + h.l4;
    const uint8_t* tb = b + h.l4;
    // Ports and the ACK number; data offset, flags and window but CWR/FIN/PSH; options.
    if (std::memcmp(ta, tb, 4) != 0 ||
        std::memcmp(ta + TCP_OFF_ACK, tb + TCP_OFF_ACK, 4) != 0 ||
        ta[TCP_OFF_DOFF] != tb[TCP_OFF_DOFF] ||
        ((ta[TCP_OFF_FLAGS] ^ tb[TCP_OFF_FLAGS]) & ~TCP_MAY_DIFFER) ||
        std::memcmp(ta + TCP_OFF_FLAGS + 1, tb + TCP_OFF_FLAGS + 1, 2) != 0 ||
        std::memcmp(ta + TCP_HLEN, tb + TCP_HLEN, h.hdrs - h.l4 - TCP_HLEN) != 0)
    {
        return false;
    }
    return !(n.flags & TCP_FLAG_CWR) && n.payload >= 1 && n.payload <= h.payload &&
           n.seq == static_cast<uint32_t>(h.seq + merged) &&
           h.hdrs - ETH_HLEN + merged + n.payload <= MAX_IP_LEN;
}
} // namespace

size_t
RxMerger::Merge(const std::deque<std::vector<uint8_t>>& frames, uint64_t features)
{
    if (frames.size() < 2)
    {
        return frames.size();
    }
    Segment h;
    const std::vector<uint8_t>& first = frames.front();
    if (!Parse(first, h) || h.payload == 0 || (h.flags & TCP_FLUSH_FLAGS) ||
        !(features & (h.ipv4 ? vhost::VIRTIO_NET_F_GUEST_TSO4 : vhost::VIRTIO_NET_F_GUEST_TSO6)) ||
        ((h.flags & TCP_FLAG_CWR) && !(features & vhost::VIRTIO_NET_F_GUEST_ECN)))
    {
        return 1;
    }
    size_t count = 1;
    size_t merged = h.payload; // payload bytes of the run so far
    uint8_t endFlags = 0;
    while (count < frames.size())
    {
        Segment n;
        const std::vector<uint8_t>& next = frames[count];
        if (!Parse(next, n) || !Continues(first, h, next, n, count, merged))
        {
            break;
        }
        count++;
        merged += n.payload;
        if (n.payload < h.payload || (n.flags & (TCP_FLAG_PSH | TCP_FLAG_FIN)))
        {
            endFlags = n.flags & (TCP_FLAG_PSH | TCP_FLAG_FIN);
            break; // a short or pushed segment ends the run, itself included
        }
    }
    if (count == 1)
    {
        return 1;
    }
    m_frame.resize(h.hdrs + merged);
    uint8_t* out = m_frame.data();
    std::memcpy(out, first.data(), first.size());
    size_t at = first.size();
    for (size_t i = 1; i < count; ++i)
    {
        const std::vector<uint8_t>& f = frames[i];
        std::memcpy(out + at, f.data() + h.hdrs, f.size() - h.hdrs);
        at += f.size() - h.hdrs;
    }
    uint8_t* ip = out + ETH_HLEN;
    uint8_t* tcp = out + h.l4;
    const size_t l4len = m_frame.size() - h.l4;
    uint64_t pseudo;
    if (h.ipv4)
    {
        PutBe16(ip + IPV4_OFF_TOT_LEN, static_cast<uint16_t>(m_frame.size() - ETH_HLEN));
        PutBe16(ip + IPV4_OFF_CHECK, 0);
        PutBe16(ip + IPV4_OFF_CHECK, ChecksumFinish(ChecksumAdd(ip, IPV4_HLEN)));
        pseudo = ChecksumAdd(ip + IPV4_OFF_SRC, 8);
    }
    else
    {
        PutBe16(ip + IPV6_OFF_PLEN, static_cast<uint16_t>(l4len));
        pseudo = ChecksumAdd(ip + IPV6_OFF_SRC, 32);
    }
    tcp[TCP_OFF_FLAGS] |= endFlags;
    // CHECKSUM_PARTIAL: the field holds the pseudo-header's sum, folded, not complemented
    // (~tcp_v4_check(len, saddr, daddr, 0)), for whoever completes or segments it.
    PutBe16(tcp + TCP_OFF_CHECK,
            static_cast<uint16_t>(~ChecksumFinish(pseudo + IPPROTO_TCP + l4len)));

    std::memset(m_header, 0, sizeof(m_header));
    m_header[vhost::NET_HDR_OFF_FLAGS] = vhost::NET_HDR_F_NEEDS_CSUM;
    m_header[vhost::NET_HDR_OFF_GSO_TYPE] =
        (h.ipv4 ? vhost::NET_HDR_GSO_TCPV4 : vhost::NET_HDR_GSO_TCPV6) |
        ((h.flags & TCP_FLAG_CWR) ? vhost::NET_HDR_GSO_ECN : 0);
    PutLe16(m_header + vhost::NET_HDR_OFF_HDR_LEN, static_cast<uint16_t>(h.hdrs));
    PutLe16(m_header + vhost::NET_HDR_OFF_GSO_SIZE, static_cast<uint16_t>(h.payload));
    PutLe16(m_header + vhost::NET_HDR_OFF_CSUM_START, static_cast<uint16_t>(h.l4));
    PutLe16(m_header + vhost::NET_HDR_OFF_CSUM_OFFSET, static_cast<uint16_t>(TCP_OFF_CHECK));
    return count;
}

const std::vector<uint8_t>&
RxMerger::Frame() const
{
    return m_frame;
}

const uint8_t*
RxMerger::Header() const
{
    return m_header;
}

} // namespace ns3
