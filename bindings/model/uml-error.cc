#include "uml-error.h"

#include "tt-protocol.h"

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
    // (u64)-1 is what a client without an id sends; nobody writes it as 2^64 - 1.
    return clientId == tt::ID_NONE ? "-1" : std::to_string(clientId);
}

} // namespace ns3
