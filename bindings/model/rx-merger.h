// What a NIC with LRO / hardware GRO does with the frames it hands a guest together: runs of
// consecutive TCP segments of one flow become one GSO frame, as Linux's GRO would merge them.
#ifndef NS3_UML_RX_MERGER_H
#define NS3_UML_RX_MERGER_H

#include "vhost-user-protocol.h"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace ns3
{

/**
 * Merges the frames waiting for a guest (docs/DESIGN.md section 5, receive coalescing) where
 * Linux's GRO (tcp_gro_receive, inet_gro_receive, ipv6_gro_receive in 6.12) would: Ethernet
 * (no VLAN tag) + IPv4 without options or fragments, valid header checksum, no padding, same
 * TOS, TTL and DF, ids counting up; or IPv6 without extension headers, same traffic class,
 * flow label and hop limit; same addresses and ports; TCP with the next sequence number, the
 * same ACK number, window, flags and options; no CWR after the first; every segment but the
 * last exactly the first's payload (gso_size), the last at most that; PSH or FIN ends a run
 * (on its last segment), a first segment with PSH, FIN, URG, RST or SYN, or without payload,
 * goes alone; at most 65535 bytes of IP. A fixed-id IPv4 flow is not merged: the virtio-net
 * header cannot carry GRO's FIXEDID. The merged frame has the first segment's headers with
 * the IP length (and the IPv4 header checksum) updated, PSH/FIN if the last had them, the
 * payloads concatenated and, as Linux's TSO senders leave it for CHECKSUM_PARTIAL, the
 * pseudo-header sum in the TCP checksum field; its virtio-net header asks for segmentation
 * (NEEDS_CSUM at the TCP header, TCPV4/TCPV6, ECN if the first segment has CWR). Frames are
 * never reordered. Deterministic: the result depends on the bytes only.
 */
class RxMerger
{
  public:
    /**
     * How many frames from the front of `frames` form one run (at least 1, when there is a
     * frame). With more than one, Frame() and Header() hold the merged frame and its header
     * (num_buffers is left 0 for the writer). `features`: what the driver accepted (TCPV4
     * runs need GUEST_TSO4, TCPV6 ones GUEST_TSO6, a run starting with CWR GUEST_ECN).
     */
    size_t Merge(const std::deque<std::vector<uint8_t>>& frames, uint64_t features);
    /** The merged frame of the last Merge that returned more than 1. */
    const std::vector<uint8_t>& Frame() const;
    /** Its vhost::NET_HDR_SIZE header bytes. */
    const uint8_t* Header() const;

    /** The features a device offers for this: GUEST_TSO4/6 with ECN, and MRG_RXBUF, without
     * which Linux would post 64 KiB "big packet" chains (about 13 per ring) instead of
     * page-sized buffers a frame spans as it needs. */
    static constexpr uint64_t OFFERED_FEATURES =
        vhost::VIRTIO_NET_F_GUEST_TSO4 | vhost::VIRTIO_NET_F_GUEST_TSO6 |
        vhost::VIRTIO_NET_F_GUEST_ECN | vhost::VIRTIO_NET_F_MRG_RXBUF;

  private:
    std::vector<uint8_t> m_frame; // kept: no allocation per run
    uint8_t m_header[vhost::NET_HDR_SIZE] = {};
};

} // namespace ns3

#endif
