// A vhost-user back-end for UML's virtio_uml front-end, served from the calendar's loop.
#ifndef NS3_UML_VHOST_USER_BACKEND_H
#define NS3_UML_VHOST_USER_BACKEND_H

#include "guest-memory.h"
#include "vhost-user-protocol.h"
#include "virtqueue.h"

#include "ns3/object.h"

#include <cstdint>
#include <string>
#include <vector>

namespace ns3
{

class UmlCalendar;

/**
 * The generic part of a device: the vhost-user socket, feature and protocol negotiation, the
 * memory table, the rings, in-band kicks and calls with REPLY_ACK. A device (virtio-net)
 * derives from it. Anything malformed the guest sends is an error for that guest: the run
 * stops with an exception naming it; nothing is read or written outside its memory.
 */
class VhostUserBackend : public Object
{
  public:
    static TypeId GetTypeId();
    VhostUserBackend();
    ~VhostUserBackend() override;

    /** Listen at SocketPath, served by the installed UmlCalendar's event loop. */
    void Listen();
    /** Close the connection and the socket (removing its file). */
    void Close();
    bool IsConnected() const;
    uint64_t GetClientId() const;

  protected:
    void DoDispose() override;

    virtual uint64_t GetDeviceFeatures() const = 0;
    virtual uint32_t GetNumQueues() const = 0;
    /** Config space bytes [offset, offset+len); false if out of range. */
    virtual bool ReadConfig(uint32_t offset, uint8_t* buf, uint32_t len) const = 0;
    /** The driver kicked a queue. Must not block: schedule the work as an ns-3 event. */
    virtual void OnKick(uint32_t queue) = 0;
    virtual void OnDisconnect();

    Virtqueue& Queue(uint32_t i);
    const GuestMemory& Memory() const;
    uint64_t GetAcceptedFeatures() const;
    /** Interrupt the guest for a queue (VRING_CALL), waiting for its acknowledgement while
     * the calendar keeps serving its time socket. */
    void CallGuest(uint32_t queue);
    [[noreturn]] void GuestError(const std::string& what) const;

    std::string m_socketPath;
    uint64_t m_clientId;

  private:
    void OnListenReadable();
    void OnConnReadable();
    void Dispatch(const vhost::Header& h, const uint8_t* payload, std::vector<int>& fds);
    void Reply(const vhost::Header& h, const void* payload, uint32_t size);
    void ReplyAck(const vhost::Header& h, uint64_t status);
    void Disconnect();
    void ReadExact(int fd, void* buf, size_t len, const char* what);
    /** Wall-clock seconds a send or a started message may take on the guest's sockets. */
    double IoTimeout() const;

    Ptr<UmlCalendar> m_calendar;
    int m_listenFd;
    int m_connFd;
    int m_backendFd;
    uint64_t m_features;
    uint64_t m_protocolFeatures;
    GuestMemory m_memory;
    std::vector<Virtqueue> m_queues;
};

} // namespace ns3

#endif
