// What a TSO NIC does with a guest's frame: checksum completion and segmentation into wire
// frames, as the virtio-net header asks.
#ifndef NS3_UML_GSO_SEGMENTER_H
#define NS3_UML_GSO_SEGMENTER_H

#include "vhost-user-protocol.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

namespace ns3
{

/** A virtio-net transmit header asking for something the device cannot or may not do: an
 * error of the guest that sent it (docs/DESIGN.md rule 10). */
class GsoError : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

/** The fields of a virtio-net header (little-endian on the ring), in host order. */
struct VirtioNetHeader
{
    uint8_t flags;
    uint8_t gsoType;
    uint16_t hdrLen;
    uint16_t gsoSize;
    uint16_t csumStart;
    uint16_t csumOffset;

    /** Read the header from its NET_HDR_SIZE bytes. */
    static VirtioNetHeader Parse(const uint8_t* bytes);
};

/**
 * Turns one transmit buffer (virtio-net header + Ethernet frame) into the frames a NIC with
 * checksum offload and TSO/USO would put on the wire, as Linux's software GSO would build
 * them: TCP over IPv4/IPv6 cut at gso_size with sequence numbers advancing by it, CWR only
 * on the first segment, FIN and PSH only on the last, IPv4 ids counting up from the
 * frame's, lengths and every checksum (IPv4 header, TCP/UDP with the pseudo-header)
 * computed; UDP (USO) cut into datagrams of gso_size. A NEEDS_CSUM frame without GSO gets
 * its checksum completed at csum_start/csum_offset. Everything is read inside the frame
 * and checked first; a request that was not negotiated, out of the frame, not TCP/UDP over
 * IPv4/IPv6, or whose segments would not fit the MTU throws GsoError. Deterministic: the
 * output depends on the input bytes only.
 */
class GsoSegmenter
{
  public:
    /** Called once per wire frame, in order; the bytes are valid during the call only. */
    using Emit = std::function<void(const uint8_t* frame, size_t len)>;

    explicit GsoSegmenter(uint16_t mtu = vhost::NET_MTU);

    /**
     * `features`: the device features the driver accepted (which requests it may make).
     * `header`: the vhost::NET_HDR_SIZE header bytes; `frame`, `len`: the Ethernet frame
     * after it (a NEEDS_CSUM frame is completed in place).
     */
    void Process(uint64_t features,
                 const uint8_t* header,
                 uint8_t* frame,
                 size_t len,
                 const Emit& emit);

    /** The offload features a device offers to use this: checksums both ways, TSO for IPv4
     * and IPv6 with ECN, USO. */
    static constexpr uint64_t OFFERED_FEATURES =
        vhost::VIRTIO_NET_F_CSUM | vhost::VIRTIO_NET_F_GUEST_CSUM |
        vhost::VIRTIO_NET_F_HOST_TSO4 | vhost::VIRTIO_NET_F_HOST_TSO6 |
        vhost::VIRTIO_NET_F_HOST_ECN | vhost::VIRTIO_NET_F_HOST_USO;

  private:
    void CompleteChecksum(const VirtioNetHeader& h, uint8_t* frame, size_t len) const;
    void Segment(const VirtioNetHeader& h, const uint8_t* frame, size_t len, const Emit& emit);

    uint16_t m_mtu;
    std::vector<uint8_t> m_segment; // one wire frame being built (kept: no allocation per frame)
};

} // namespace ns3

#endif
