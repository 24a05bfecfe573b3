#include "uml-error.h"

#include <cinttypes>
#include <cstdio>

namespace ns3
{

UmlError::UmlError(const std::string& kind,
                   bool hasClient,
                   uint64_t clientId,
                   const std::string& what)
    : std::runtime_error(what),
      m_kind(kind),
      m_hasClient(hasClient),
      m_clientId(clientId)
{
}

const std::string&
UmlError::GetKind() const
{
    return m_kind;
}

bool
UmlError::HasClient() const
{
    return m_hasClient;
}

uint64_t
UmlError::GetClientId() const
{
    return m_clientId;
}

std::string
FormatClientId(uint64_t clientId)
{
    char buf[24];
    std::snprintf(buf, sizeof(buf), "0x%" PRIx64, clientId);
    return buf;
}

} // namespace ns3
