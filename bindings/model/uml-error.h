// The one error type of ns3-uml's core: thrown by the calendar and by devices alike.
#ifndef NS3_UML_UML_ERROR_H
#define NS3_UML_UML_ERROR_H

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ns3
{

/**
 * Why a run stopped because of a client (or of the set-up). The message names the client
 * (docs/DESIGN.md rule 10); Python turns this into ns3_uml.CalendarError.
 *
 * kind is one of "protocol", "hang", "crash", "timeout", "interrupted", "setup", "device".
 */
class UmlError : public std::runtime_error
{
  public:
    UmlError(const std::string& kind, bool hasClient, uint64_t clientId, const std::string& what);
    const std::string& GetKind() const;
    bool HasClient() const;
    uint64_t GetClientId() const;

  private:
    std::string m_kind;
    bool m_hasClient;
    uint64_t m_clientId;
};

/** A client id as every message names it: decimal, as the user wrote it on the kernel
 * command line (time-travel=ext:42 is "42"); -1 for a client without one. */
std::string FormatClientId(uint64_t clientId);

} // namespace ns3

#endif
