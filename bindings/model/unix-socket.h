// Listening unix stream sockets, as the calendar and every device make them.
#ifndef NS3_UML_UNIX_SOCKET_H
#define NS3_UML_UNIX_SOCKET_H

#include <string>

namespace ns3
{

/**
 * A non-blocking, close-on-exec unix stream socket listening at path. Returns the fd, or -1
 * with `error` saying why (a path too long for sockaddr_un, bind or listen failing).
 */
int ListenUnixSocket(const std::string& path, int backlog, std::string& error);

} // namespace ns3

#endif
