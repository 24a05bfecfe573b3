"""The seam between devices and the calendar: a VirtioNetDevice driven by a minimal
``ns3::UmlGuestScheduler`` (``ns3_uml.testing.standalone_scheduler``), under ns-3's
DefaultSimulatorImpl (no UmlCalendar), with the reference vhost-user front-end as the
guest."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest

import ns3_uml
from ns3_uml.bridge import guest_mac
from ns3_uml.testing.standalone_scheduler import standalone_scheduler
from ns3_uml.testing.vhost_frontend import VhostUserFrontend

from conftest import _is_calendar_kind, open_fds

CLIENT_ID = 0x51
CONTEXT = 7  # the node id the device's frames enter ns-3 under

_RECORDER = r"""
#include "ns3/simulator.h"
namespace ns3uml_seam {
struct Recorder {
    std::vector<uint32_t> contexts;
    std::vector<uint32_t> sizes;
    void Record(ns3::Ptr<const ns3::Packet> p) {
        contexts.push_back(ns3::Simulator::GetContext());
        sizes.push_back(p->GetSize());
    }
    bool Connect(ns3::Ptr<ns3::VirtioNetDevice> dev) {
        return dev->TraceConnectWithoutContext("GuestTx",
                                               ns3::MakeCallback(&Recorder::Record, this));
    }
};
}
"""


def _mac(i: int) -> bytes:
    return bytes.fromhex(guest_mac(i).replace(":", ""))


def _seam() -> Any:
    import cppyy

    standalone_scheduler()  # loads ns-3
    if not hasattr(cppyy.gbl, "ns3uml_seam"):
        cppyy.cppdef(_RECORDER)
    return cppyy.gbl.ns3uml_seam


@pytest.fixture
def default_simulator() -> Iterator[Any]:
    """ns-3 with its DefaultSimulatorImpl for one test (a Calendar binds its own again)."""
    ns = ns3_uml._native.load()
    assert ns3_uml.Calendar._active is None
    ns.Simulator.Destroy()
    ns.GlobalValue.Bind("SimulatorImplementationType", ns.StringValue("ns3::DefaultSimulatorImpl"))
    yield ns
    ns.Simulator.Destroy()


def test_listen_needs_a_scheduler(default_simulator: Any, tmp_path: Path) -> None:
    ns = default_simulator
    dev = ns.CreateObject["ns3::VirtioNetDevice"]()
    dev.SetAttribute("SocketPath", ns.StringValue(str(tmp_path / "net.sock")))
    with pytest.raises(ns3_uml._native.error_class()) as info:
        dev.Listen()
    assert info.value.GetKind() == "setup"
    assert not (tmp_path / "net.sock").exists()


def test_device_with_a_scheduler_of_its_own(default_simulator: Any, tmp_path: Path) -> None:
    ns = default_simulator
    seam = _seam()
    fds_before = open_fds()
    path = tmp_path / "net.sock"
    sched = standalone_scheduler().Make()
    dev = ns.CreateObject["ns3::VirtioNetDevice"]()
    dev.SetAttribute("SocketPath", ns.StringValue(str(path)))
    dev.SetAttribute("ClientId", ns.UintegerValue(CLIENT_ID))
    dev.SetMac(ns.Mac48Address(guest_mac(1)))
    dev.SetContext(CONTEXT)
    dev.SetScheduler(standalone_scheduler().AsScheduler(sched))
    recorder = seam.Recorder()
    assert recorder.Connect(dev)
    dev.Listen()
    assert path.exists()

    frame = _mac(2) + _mac(1) + (0x88B5).to_bytes(2, "big") + bytes(range(64))
    sent = threading.Event()
    done = threading.Event()
    errors: list[BaseException] = []
    result: dict[str, Any] = {}

    def guest() -> None:
        fe = VhostUserFrontend(path, mem_size=16 << 20, timeout=10.0)
        try:
            fe.connect()
            result["mac"] = fe.mac
            fe.send_frame(frame)
            sent.set()
            while not done.is_set():  # answer the device's VRING_CALLs
                fe.poll(0.05)
            result["tx_completed"] = fe.stats["tx_completed"]
            fe.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
            sent.set()

    ns.Simulator.Run.__release_gil__ = True
    thread = threading.Thread(target=guest)
    thread.start()
    try:
        # The device's sockets are served by the scheduler's loop only.
        while not sent.is_set():
            sched.ServeFor(20)
        assert not errors, errors
        # The kick became one event at now, under the node's context: it drains the ring,
        # then interrupts the guest through the scheduler's WaitForReply.
        ns.Simulator.Run()
        assert list(recorder.contexts) == [CONTEXT]
        assert list(recorder.sizes) == [len(frame)]
        assert list(sched.waits) == [CLIENT_ID]
    finally:
        done.set()
        while thread.is_alive():
            sched.ServeFor(20)
            thread.join(0.01)
    assert not errors, errors
    assert result["mac"] == _mac(1)
    assert result["tx_completed"] == 1
    dev.Dispose()
    assert not path.exists()
    del dev, sched
    leaked = {fd for fd in open_fds() - fds_before if _is_calendar_kind(fd)}
    assert not leaked, [os.readlink(f"/proc/self/fd/{fd}") for fd in leaked]
