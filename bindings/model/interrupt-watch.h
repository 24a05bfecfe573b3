// Ctrl-C while C++ blocks in the poll loop: Python's signal wakeup descriptor, watched.
#ifndef NS3_UML_INTERRUPT_WATCH_H
#define NS3_UML_INTERRUPT_WATCH_H

#include "event-loop.h"

namespace ns3
{

/**
 * Watches a descriptor that receives signal numbers (Python's signal.set_wakeup_fd) as an
 * inner descriptor of an EventLoop, so that it is served in nested waits too: a SIGINT or
 * SIGTERM byte stops the run with an "interrupted" UmlError.
 */
class InterruptWatch
{
  public:
    /** Watch fd on loop (fd < 0: watch nothing); replaces what was watched before. */
    void Set(EventLoop& loop, int fd);
    /** Stop watching (the loop may be gone: then only forget the descriptor). */
    void Clear(EventLoop* loop);

  private:
    void OnReadable();

    int m_fd = -1;
};

} // namespace ns3

#endif
