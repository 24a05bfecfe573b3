// A split virtqueue in guest memory, read and written with every index and address checked.
#ifndef NS3_UML_VIRTQUEUE_H
#define NS3_UML_VIRTQUEUE_H

#include "guest-memory.h"
#include "vhost-user-protocol.h"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ns3
{

/** What a hostile or broken driver did to a queue; the device turns it into a guest error. */
class VirtqueueError : public std::runtime_error
{
  public:
    using std::runtime_error::runtime_error;
};

class Virtqueue
{
  public:
    struct Segment
    {
        uint8_t* ptr;
        uint32_t len;
        bool writable;
    };

    struct Chain
    {
        uint16_t head;
        std::vector<Segment> segments;
        uint64_t readable = 0; // bytes in device-readable segments
        uint64_t writable = 0; // bytes in device-writable segments
    };

    /** Where the rings are and how far the device got (for the session recorder). */
    struct Layout
    {
        uint32_t num;
        bool placed;
        uint64_t desc;
        uint64_t avail;
        uint64_t used;
        uint16_t lastAvail;
        bool eventIdx;
    };

    void Reset();
    /** Queue size; rings already placed are checked again for the new size. */
    void SetNum(const GuestMemory& mem, uint32_t num);
    void SetBase(uint16_t base);
    uint16_t GetBase() const;
    /** Ring addresses, translated and checked against the queue size. */
    void SetAddr(const GuestMemory& mem, uint64_t desc, uint64_t avail, uint64_t used);
    /** The memory table is about to change: forget the pointers into the old mapping. */
    void Detach();
    /** Translate the rings again into the (new) memory table. */
    void Remap(const GuestMemory& mem);
    void SetEnabled(bool enabled);
    bool IsReady() const;

    /** The next available chain (false if none); throws VirtqueueError for a bad one. */
    bool Pop(const GuestMemory& mem, Chain& chain);
    /**
     * Put back the last `count` chains popped and not pushed: the next Pop returns them
     * again (a frame that needs more receive buffers than there are waits whole). The
     * avail_event a Pop wrote on finding the ring empty stays: the driver kicks for its
     * next buffer, and the frame is tried again then.
     */
    void Unpop(uint16_t count);
    /** Return a chain to the driver with the bytes written into it. */
    void Push(uint16_t head, uint32_t written);
    /**
     * Whether the driver wants an interrupt for the buffers used since the last time this
     * was asked. With EVENT_IDX: only if the used index passed the driver's used_event
     * since then (as QEMU's virtio_should_notify); otherwise: unless NO_INTERRUPT is set.
     */
    bool NeedsInterrupt();
    /** VIRTIO_F_EVENT_IDX negotiated: used_event/avail_event replace the ring flags. */
    void SetEventIdx(bool on);
    uint32_t GetNum() const;
    Layout GetLayout() const;

  private:
    uint32_t m_num = 0;
    bool m_placed = false; // SET_VRING_ADDR was accepted: the addresses below are valid
    uint64_t m_descAddr = 0;
    uint64_t m_availAddr = 0;
    uint64_t m_usedAddr = 0;
    uint16_t m_lastAvail = 0;
    uint16_t m_usedIdx = 0;
    bool m_enabled = false;
    bool m_eventIdx = false;
    bool m_signalledValid = false; // m_signalledUsed holds a used index already judged
    uint16_t m_signalledUsed = 0;
    vhost::Desc* m_desc = nullptr;
    uint16_t* m_avail = nullptr; // flags, idx, ring[num], used_event
    uint16_t* m_used = nullptr;  // flags, idx, then UsedElem ring[num], avail_event
};

} // namespace ns3

#endif
