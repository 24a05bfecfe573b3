// An opt-in record of what guests send ($NS3_UML_RECORD): the seeds of the fuzz targets.
#ifndef NS3_UML_SESSION_RECORDER_H
#define NS3_UML_SESSION_RECORDER_H

#include "guest-memory.h"
#include "vhost-user-protocol.h"
#include "virtqueue.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace ns3
{

/** The records of a vhost-user session file besides the guest's own messages: the same
 * framing (a vhost::Header whose size is the payload's), with requests no guest sends. The
 * fuzz targets read these files (fuzz/, docs/DESIGN.md section 10); fuzz/record_seeds.py
 * reads the values from here. */
namespace recording
{
/** Guest memory as it was: u64 guest address, then the bytes. */
constexpr uint32_t REQUEST_MEMORY = 0x4e530001;
/** A queue as the device saw it at a kick (before the kick is handled). */
constexpr uint32_t REQUEST_RING = 0x4e530002;

struct Ring
{
    uint32_t queue;
    uint32_t num;
    uint64_t desc;
    uint64_t avail;
    uint64_t used;
    uint16_t lastAvail;
    uint16_t eventIdx;
    uint32_t padding;
};

static_assert(sizeof(Ring) == 40);
} // namespace recording

/**
 * Writes one new file in the directory named by $NS3_UML_RECORD: a time socket's bytes as the
 * client sent them (tt-PID-N.bin), or a vhost-user socket's messages with, before each kick,
 * the kicked ring and the buffers it offers (vhost-PID-N.bin). Off (Open returns null)
 * unless the variable is set; a file stops growing at MAX_BYTES. For re-recording the seeds
 * (fuzz/record_seeds.py); nothing in a run depends on it.
 */
class SessionRecorder
{
  public:
    static constexpr size_t MAX_BYTES = 1 << 20;
    /** Bytes of one buffer recorded at most (a frame's headers and then some). */
    static constexpr uint32_t MAX_BUFFER = 2048;

    /** A recorder for a new file named prefix-PID-N.bin, or null when recording is off. */
    static std::unique_ptr<SessionRecorder> Open(const char* prefix);
    ~SessionRecorder();
    SessionRecorder(const SessionRecorder&) = delete;
    SessionRecorder& operator=(const SessionRecorder&) = delete;

    /** Bytes as they came. */
    void Write(const void* data, size_t len);
    /** A vhost-user message as received: at a kick, the ring's state first. */
    void Message(const vhost::Header& h,
                 const uint8_t* payload,
                 const std::vector<Virtqueue>& queues,
                 const GuestMemory& mem);

  private:
    explicit SessionRecorder(std::FILE* file);
    void Record(uint32_t request,
                uint32_t flags,
                const void* head,
                size_t headLen,
                const void* data,
                size_t len);
    void Memory(const GuestMemory& mem, uint64_t addr, uint64_t len);
    void Ring(uint32_t index, const Virtqueue& q, const GuestMemory& mem);

    std::FILE* m_file;
    size_t m_written;
};

} // namespace ns3

#endif
