#include "buffered-pcap-file.h"

#include "uml-error.h"

#include "ns3/log.h"
#include "ns3/simulator.h"
#include "ns3/uinteger.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("BufferedPcapFile");
NS_OBJECT_ENSURE_REGISTERED(BufferedPcapFile);

namespace
{
// libpcap's format as ns-3's PcapFile writes it: native byte order, version 2.4.
constexpr uint32_t PCAP_MAGIC_USEC = 0xa1b2c3d4;
constexpr uint16_t PCAP_VERSION_MAJOR = 2;
constexpr uint16_t PCAP_VERSION_MINOR = 4;
constexpr uint32_t SNAP_LEN = 65535; // PcapFileWrapper's default

struct FileHeader
{
    uint32_t magic;
    uint16_t versionMajor;
    uint16_t versionMinor;
    int32_t thisZone;
    uint32_t sigFigs;
    uint32_t snapLen;
    uint32_t dataLinkType;
};

struct RecordHeader
{
    uint32_t tsSec;
    uint32_t tsUsec;
    uint32_t inclLen;
    uint32_t origLen;
};

void
WriteAll(int fd, const uint8_t* data, size_t len, const std::string& path)
{
    while (len > 0)
    {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
        {
            continue;
        }
        if (n <= 0)
        {
            throw UmlError("setup", false, 0, "pcap " + path + ": " + std::strerror(errno));
        }
        data += n;
        len -= static_cast<size_t>(n);
    }
}
} // namespace

TypeId
BufferedPcapFile::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::BufferedPcapFile")
            .SetParent<Object>()
            .SetGroupName("Uml")
            .AddConstructor<BufferedPcapFile>()
            .AddAttribute("BufferSize",
                          "Bytes of records collected before they are written to the file.",
                          UintegerValue(256 * 1024),
                          MakeUintegerAccessor(&BufferedPcapFile::m_bufferSize),
                          MakeUintegerChecker<uint32_t>(1));
    return tid;
}

BufferedPcapFile::BufferedPcapFile()
    : m_fd(-1),
      m_bufferSize(256 * 1024)
{
}

BufferedPcapFile::~BufferedPcapFile()
{
    if (m_fd >= 0)
    {
        try
        {
            Close();
        }
        catch (const UmlError& e)
        {
            NS_LOG_ERROR(e.what()); // a destructor cannot throw: the error is logged
        }
    }
}

void
BufferedPcapFile::DoDispose()
{
    Close();
    Object::DoDispose();
}

void
BufferedPcapFile::Open(const std::string& path, uint32_t dataLinkType)
{
    NS_LOG_FUNCTION(this << path << dataLinkType);
    Close();
    m_path = path;
    m_fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (m_fd < 0)
    {
        throw UmlError("setup", false, 0, "pcap " + path + ": " + std::strerror(errno));
    }
    m_buffer.reserve(m_bufferSize + SNAP_LEN + sizeof(RecordHeader));
    FileHeader header{PCAP_MAGIC_USEC, PCAP_VERSION_MAJOR, PCAP_VERSION_MINOR, 0, 0,
                      SNAP_LEN,        dataLinkType};
    Append(&header, sizeof(header));
}

bool
BufferedPcapFile::Capture(Ptr<NetDevice> device, const std::string& traceSource)
{
    return device->TraceConnectWithoutContext(traceSource,
                                              MakeCallback(&BufferedPcapFile::Write, this));
}

void
BufferedPcapFile::Write(Ptr<const Packet> packet)
{
    if (m_fd < 0)
    {
        return;
    }
    // As PcapFileWrapper: the simulated time truncated to whole microseconds.
    uint64_t us = static_cast<uint64_t>(Simulator::Now().GetMicroSeconds());
    uint32_t size = packet->GetSize();
    uint32_t incl = std::min(size, SNAP_LEN);
    RecordHeader record{static_cast<uint32_t>(us / 1000000),
                        static_cast<uint32_t>(us % 1000000),
                        incl,
                        size};
    Append(&record, sizeof(record));
    size_t at = m_buffer.size();
    m_buffer.resize(at + incl);
    packet->CopyData(m_buffer.data() + at, incl);
    if (m_buffer.size() >= m_bufferSize)
    {
        Flush();
    }
}

void
BufferedPcapFile::Append(const void* data, size_t len)
{
    const auto* bytes = static_cast<const uint8_t*>(data);
    m_buffer.insert(m_buffer.end(), bytes, bytes + len);
}

void
BufferedPcapFile::Flush()
{
    if (m_fd >= 0 && !m_buffer.empty())
    {
        try
        {
            WriteAll(m_fd, m_buffer.data(), m_buffer.size(), m_path);
        }
        catch (...)
        {
            m_buffer.clear(); // nothing to write twice after an error
            throw;
        }
        m_buffer.clear(); // the capacity stays: no allocation per block
    }
}

void
BufferedPcapFile::Close()
{
    if (m_fd < 0)
    {
        return;
    }
    NS_LOG_FUNCTION(this << m_path);
    int fd = m_fd;
    try
    {
        Flush();
    }
    catch (...)
    {
        m_fd = -1;
        close(fd);
        throw;
    }
    m_fd = -1;
    if (close(fd) != 0)
    {
        throw UmlError("setup", false, 0, "pcap " + m_path + ": " + std::strerror(errno));
    }
}

std::string
BufferedPcapFile::GetPath() const
{
    return m_path;
}

} // namespace ns3
