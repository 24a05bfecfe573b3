"""A minimal ``ns3::UmlGuestScheduler``: what a device needs from a scheduler and nothing
of the calendar's, for a vhost-user device served without one (a test's seam, or a device
in a process of its own: ``external_device``). Unlike the rest of ``ns3_uml.testing`` it
loads ns-3 (through cppyy)."""

from __future__ import annotations

from typing import Any

__all__ = ["standalone_scheduler"]

_SOURCE = r"""
namespace ns3uml_standalone {
class Scheduler : public ns3::SimpleRefCount<Scheduler, ns3::UmlGuestScheduler> {
  public:
    ns3::EventLoop& GetEventLoop() override { return m_loop; }
    void WaitForReply(int fd, uint64_t clientId) override {
        waits.push_back(clientId);
        if (!m_loop.WaitReadable(fd, 10000))
            throw ns3::UmlError("hang", true, clientId, "no reply");
    }
    void ReportDeparture(uint64_t clientId) override { departures.push_back(clientId); }
    double GetReplyTimeout() const override { return 5.0; }
    /** Serve the device's sockets for ms milliseconds of wall time. */
    void ServeFor(int ms) { m_loop.ServeUntil([] { return false; }, ms); }
    std::vector<uint64_t> waits;       //!< clients whose reply a device waited for
    std::vector<uint64_t> departures;  //!< clients whose device connection closed
  private:
    ns3::EventLoop m_loop;
};
ns3::Ptr<Scheduler> Make() { return ns3::Create<Scheduler>(); }
ns3::Ptr<ns3::UmlGuestScheduler> AsScheduler(ns3::Ptr<Scheduler> s) { return s; }
}
"""


def standalone_scheduler() -> Any:
    """The C++ namespace with ``Scheduler``, ``Make()`` and ``AsScheduler(s)`` (for
    ``SetScheduler``), compiled on first use; ``ServeFor`` releases the GIL."""
    import cppyy

    from ns3_uml import _native

    _native.load()
    if not hasattr(cppyy.gbl, "ns3uml_standalone"):
        cppyy.cppdef(_SOURCE)
        cppyy.gbl.ns3uml_standalone.Scheduler.ServeFor.__release_gil__ = True
    return cppyy.gbl.ns3uml_standalone
