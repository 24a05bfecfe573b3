// What every fuzz target needs around one input: a private directory for its sockets, and
// the check that an input leaves no descriptor open.
#ifndef NS3_UML_FUZZ_SCRATCH_H
#define NS3_UML_FUZZ_SCRATCH_H

#include <string>

namespace ns3
{
namespace fuzz
{

/** A directory of this process's own (TMPDIR/ns3-uml-fuzz-PID, removed at exit or by the next
 * target), short enough for socket paths. */
const std::string& ScratchDir();

/** How many descriptors this process has open. */
int OpenFds();

/** Abort (a finding) if the descriptors open now are not the `before` an input started with:
 * the core must close whatever a session gave it, however the session ended. */
void CheckNoFdLeak(int before, const char* what);

/** Abort with a message: what the sanitizers would not see (an invariant of the core). */
[[noreturn]] void Finding(const std::string& what);

} // namespace fuzz
} // namespace ns3

#endif
