// A pcap file written in large blocks: a capture costs no system call per frame.
#ifndef NS3_UML_BUFFERED_PCAP_FILE_H
#define NS3_UML_BUFFERED_PCAP_FILE_H

#include "ns3/net-device.h"
#include "ns3/object.h"
#include "ns3/packet.h"

#include <cstdint>
#include <string>
#include <vector>

namespace ns3
{

/**
 * The same file PcapHelper::CreateFile and a device's sniffer trace write (microsecond
 * timestamps of the simulated time, snap length 65535), without ns-3's PcapFile's cost:
 * its stream hands every frame of 1 KiB or more to the kernel in a writev of its own, two
 * per wire frame for a link captured at both ends. Here records collect in a buffer of
 * BufferSize bytes that is written when full, on Flush and on Close.
 */
class BufferedPcapFile : public Object
{
  public:
    static TypeId GetTypeId();
    BufferedPcapFile();
    ~BufferedPcapFile() override;

    /** Create (truncate) path and write the file header; a "setup" UmlError if it cannot. */
    void Open(const std::string& path, uint32_t dataLinkType);
    /** Record every frame of device's trace source (e.g. "PromiscSniffer"); false if the
     * device has no such source. */
    bool Capture(Ptr<NetDevice> device, const std::string& traceSource);
    /** Append one record stamped with the current simulated time. */
    void Write(Ptr<const Packet> packet);
    /** Write out what is buffered (the file stays open). */
    void Flush();
    /** Flush and close; later frames are not recorded. */
    void Close();
    std::string GetPath() const;

  protected:
    void DoDispose() override;

  private:
    void Append(const void* data, size_t len);

    std::string m_path;
    int m_fd;
    uint32_t m_bufferSize;
    std::vector<uint8_t> m_buffer;
};

} // namespace ns3

#endif
