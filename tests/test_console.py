"""The console device (ns3::VirtioConsoleDevice), the guest agent's command channel.

Against the reference virtio-console driver in a fake guest process
(``ns3_uml.testing.fake_console_guest``) inside the calendar, and once with a real guest.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

import ns3_uml
from ns3_uml import CalendarError
from ns3_uml import agent_protocol as ap
from ns3_uml import vhost_protocol as vp
from ns3_uml.console import console_device, console_kernel_arg, send_bytes, take_received
from ns3_uml.testing import fake_console_guest

DRIVER = Path(fake_console_guest.__file__)
CLIENT_ID = 0x2A
CONTEXT = 7
BIT30 = 1 << vp.VHOST_USER_F_PROTOCOL_FEATURES

CONNECT = [{"op": "connect"}, {"op": "wait_port"}]
OPEN = {"op": "open"}


def sleep(ns: int) -> dict[str, Any]:
    return {"op": "sleep", "ns": ns}


def write(data: bytes) -> dict[str, Any]:
    return {"op": "write", "data": data.hex()}


def wait_bytes(n: int) -> dict[str, Any]:
    return {"op": "wait_bytes", "count": n}


_HELPERS = r"""
#include "ns3/simulator.h"
namespace ns3uml_console_test {
struct Recorder {
    std::vector<long long> times;
    std::vector<uint32_t> contexts, types, ids, lengths;
    void Record(uint16_t type, uint32_t id, uint32_t length) {
        times.push_back(ns3::Simulator::Now().GetNanoSeconds());
        contexts.push_back(ns3::Simulator::GetContext());
        types.push_back(type);
        ids.push_back(id);
        lengths.push_back(length);
    }
    bool Connect(ns3::Ptr<ns3::VirtioConsoleDevice> dev) {
        return dev->TraceConnectWithoutContext("GuestFrame",
                                               ns3::MakeCallback(&Recorder::Record, this));
    }
};
// Bytes for the guest at an absolute simulated time, as Python would send them then.
void SendAt(ns3::Ptr<ns3::VirtioConsoleDevice> dev, long long atNs, const std::string& hex) {
    std::vector<uint8_t> b(hex.size() / 2);
    for (size_t i = 0; i < b.size(); ++i) b[i] = std::stoi(hex.substr(2 * i, 2), nullptr, 16);
    ns3::Simulator::Schedule(ns3::NanoSeconds(atNs) - ns3::Simulator::Now(),
                             [dev, b]() { dev->Send(b.data(), b.size()); });
}
}
"""


def helpers() -> Any:
    import cppyy

    ns3_uml._native.load()
    if not hasattr(cppyy.gbl, "ns3uml_console_test"):
        cppyy.cppdef(_HELPERS)
    return cppyy.gbl.ns3uml_console_test


@pytest.fixture(scope="module", autouse=True)
def _compiled_helpers() -> None:
    # Before any calendar fixture notes the open descriptors (Cling keeps headers open).
    helpers()


class Sim:
    """A calendar, one console device and its recorder; fake guests on it."""

    def __init__(self, make_calendar: Any, tmp_path: Path, **device: Any) -> None:
        self.tmp = tmp_path
        self.cal = make_calendar(clients=1, shared_memory=True, yield_timeout=20.0,
                                 connect_timeout=20.0)
        self.path = tmp_path / "console.sock"
        self.dev = console_device(self.path, CLIENT_ID, CONTEXT, **device)
        self.rec = helpers().Recorder()
        assert self.rec.Connect(self.dev)
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, steps: list[dict[str, Any]]) -> int:
        out = self.tmp / f"guest{len(self.procs)}.json"
        cmd = [sys.executable, str(DRIVER), "--calendar", str(self.cal.socket_path),
               "--vhost", str(self.path), "--id", hex(CLIENT_ID),
               "--script", json.dumps(steps), "--out", str(out)]
        self.procs.append((subprocess.Popen(cmd, cwd=self.tmp), out))
        return len(self.procs) - 1

    def result(self, i: int = 0) -> dict[str, Any]:
        proc, out = self.procs[i]
        proc.wait(timeout=30)
        return json.loads(out.read_text())

    def ok(self, i: int = 0) -> dict[str, Any]:
        r = self.result(i)
        assert r["status"] == "ok", r["status"]
        assert r["fe"]["errors"] == [] and r["fe"]["warnings"] == [], r["fe"]
        return r

    def send_at(self, at_ns: int, data: bytes) -> None:
        helpers().SendAt(self.dev, at_ns, data.hex())

    def frames(self) -> list[tuple[int, int, int, int, int]]:
        """(time, context, type, id, length) of every complete frame from the guest."""
        r = self.rec
        return [(int(t), int(c), int(ty), int(i), int(n)) for t, c, ty, i, n in
                zip(r.times, r.contexts, r.types, r.ids, r.lengths)]

    def close(self) -> None:
        self.dev.Close()
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def sim(make_calendar: Any, tmp_path: Path) -> Iterator[Any]:
    made: list[Sim] = []

    def make(**device: Any) -> Sim:
        s = Sim(make_calendar, tmp_path, **device)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
        assert not s.path.exists()


def rx_data(r: dict[str, Any]) -> list[tuple[int, bytes]]:
    return [(e["t"], bytes.fromhex(e["data"])) for e in r["rx"]]


# ---------------------------------------------------------------- constants

def test_console_constants_match_the_core() -> None:
    import cppyy

    ns3_uml._native.load()
    v = cppyy.gbl.ns3.vhost
    assert v.VIRTIO_ID_CONSOLE == vp.VIRTIO_ID_CONSOLE == 3
    assert v.VIRTIO_CONSOLE_F_MULTIPORT == 1 << vp.ConsoleFeature.MULTIPORT
    assert (v.CONSOLE_RX_QUEUE, v.CONSOLE_TX_QUEUE, v.CONSOLE_CTRL_RX_QUEUE,
            v.CONSOLE_CTRL_TX_QUEUE) == (vp.CONSOLE_RX_QUEUE, vp.CONSOLE_TX_QUEUE,
                                         vp.CONSOLE_CTRL_RX_QUEUE, vp.CONSOLE_CTRL_TX_QUEUE)
    assert v.CONSOLE_BAD_ID == vp.CONSOLE_BAD_ID
    for event in vp.ConsoleEvent:
        assert int(getattr(v, f"CONSOLE_{event.name}")) == event, event
    assert v.CONSOLE_CONTROL_SIZE == vp.CONSOLE_CONTROL.size
    assert cppyy.sizeof(v.ConsoleConfig) == vp.CONSOLE_CONFIG.size
    assert console_kernel_arg("/x/c.sock") == "virtio_uml.device=/x/c.sock:3"


# ---------------------------------------------------------------- handshake

def test_handshake_and_port_name(sim: Any) -> None:
    s = sim()
    s.start([sleep(1000), *CONNECT, OPEN, sleep(1_000_000)])
    s.cal.run(until_ns=500_000)
    # Asked while the guest is still there: once it leaves, the port is closed.
    assert s.dev.IsPortOpen()
    s.cal.run()
    r = s.ok()["fe"]
    assert r["device_features"] == (1 << vp.VirtioFeature.VERSION_1
                                    | 1 << vp.ConsoleFeature.MULTIPORT
                                    | 1 << vp.VirtioFeature.RING_EVENT_IDX | BIT30)
    assert r["max_nr_ports"] == 1
    assert r["port_name"] == ap.PORT_NAME
    assert r["host_connected"]
    ev = vp.ConsoleEvent
    # As with Linux and QEMU: READY -> ADD, PORT_READY -> NAME + OPEN, then the guest's OPEN.
    assert r["control"] == [
        ["send", vp.CONSOLE_BAD_ID, ev.DEVICE_READY, 1],
        ["recv", 0, ev.PORT_ADD, 1],
        ["send", 0, ev.PORT_READY, 1],
        ["recv", 0, ev.PORT_NAME, 1],
        ["recv", 0, ev.PORT_OPEN, 1],
        ["send", 0, ev.PORT_OPEN, 1],
    ]
    assert s.dev.GetReceivedSize() == 0 and s.dev.GetRxBytes() == 0
    assert s.dev.GetTxBytes() == 0


# ---------------------------------------------------------------- both ways

def test_guest_frames_split_and_batched(sim: Any) -> None:
    s = sim()
    one = ap.encode(ap.Type.STDOUT, 5, b"x" * 100)
    two = ap.encode(ap.Type.STDERR, 5, b"")
    three = ap.exit_frame(5, 10, 20, 0)
    big = ap.encode(ap.Type.STDOUT, 6, bytes(range(256)) * 200)  # 51 KiB: two writes
    s.start([sleep(1000), *CONNECT, OPEN, sleep(5000),
             write(one[:7]),                    # a header in two pieces
             sleep(1000), write(one[7:50]),
             sleep(1000), write(one[50:] + two + three[:3]),  # several in one buffer
             sleep(1000), write(three[3:] + big),
             sleep(1000)])
    s.cal.run()
    r = s.ok()
    t = [e["t"] for e in r["tx"]]
    # Each frame completes at the simulated time of the write that finished it, under
    # the node's context; the big one (two buffers) at its own write.
    assert s.frames() == [
        (t[2], CONTEXT, ap.Type.STDOUT, 5, 100),
        (t[2], CONTEXT, ap.Type.STDERR, 5, 0),
        (t[3], CONTEXT, ap.Type.EXIT, 5, 20),
        (t[3], CONTEXT, ap.Type.STDOUT, 6, len(big) - ap.HEADER_SIZE),
    ]
    assert s.dev.GetTxFrameCount() == 4
    assert s.dev.GetReceivedSize() == len(one + two + three + big)
    assert take_received(s.dev) == one + two + three + big
    assert s.dev.GetReceivedSize() == 0 and take_received(s.dev) == b""
    assert s.dev.GetTxBytes() == len(one + two + three + big)


def test_take_received_takes_whole_frames(sim: Any) -> None:
    import numpy as np

    s = sim()
    a = ap.encode(ap.Type.STDOUT, 1, b"a" * 10)
    b = ap.encode(ap.Type.STDOUT, 1, b"b" * 10)
    s.start([sleep(1000), *CONNECT, OPEN, write(a + b + b"\x05"), sleep(1000)])
    s.cal.run()
    s.ok()
    # The incomplete third frame's byte is not counted; a short buffer gets whole frames.
    assert s.dev.GetReceivedSize() == len(a + b)
    buf = np.zeros(len(a) + 5, dtype=np.uint8)
    assert s.dev.TakeReceived(buf, len(buf)) == len(a)
    assert buf[:len(a)].tobytes() == a
    assert s.dev.TakeReceived(buf, 3) == 0
    assert take_received(s.dev) == b


def test_host_bytes_wait_for_the_open_port(sim: Any) -> None:
    s = sim()
    run = ap.run_frame(1, "true")
    big = ap.run_frame(2, "echo " + "y" * 6000)    # more than one page: two buffers
    sig = ap.signal_frame(2, 15)
    send_bytes(s.dev, run)                          # before the guest is even there
    s.send_at(50_000, big)                          # port ready but not open yet
    s.send_at(200_000, sig)                         # open: written at once
    s.start([sleep(1000), *CONNECT, sleep(99_000), OPEN,
             wait_bytes(len(run + big + sig))])
    s.cal.run()
    r = s.ok()
    got = rx_data(r)
    assert r["fe"]["discarded"] == 0                # never written while closed
    # What waited arrives with one call when the guest opens the port (after its sleeps).
    assert got[0][1] == run + big and 100_000 <= got[0][0] < 200_000
    assert got[1] == (200_000, sig)
    assert s.dev.GetRxBytes() == len(run + big + sig)
    assert s.dev.GetSendQueueSize() == 0


def test_port_closed_again_holds_bytes(sim: Any) -> None:
    s = sim()
    frame = ap.signal_frame(3, 9)
    s.send_at(50_000, frame)
    s.start([sleep(1000), *CONNECT, OPEN, sleep(10_000), {"op": "close_port"},
             sleep(100_000)])
    s.cal.run(until_ns=80_000)  # the port closed, the guest still there
    assert not s.dev.IsPortOpen()
    assert s.dev.GetSendQueueSize() == len(frame)
    s.cal.run()
    r = s.ok()
    assert r["rx"] == [] and r["fe"]["discarded"] == 0


# ---------------------------------------------------------------- stop types

def test_stop_types_stop_the_run_at_the_frame(sim: Any) -> None:
    s = sim(stop_types=1 << (ap.Type.EXIT - 16))
    out = ap.encode(ap.Type.STDOUT, 4, b"hi")
    done = ap.exit_frame(4, 1, 2, 0)
    s.start([sleep(1000), *CONNECT, OPEN, sleep(10_000), write(out), sleep(10_000),
             write(done), sleep(1_000_000), write(out), sleep(1000)])
    s.cal.run()
    t_exit = s.frames()[-1][0]
    assert [f[2] for f in s.frames()] == [ap.Type.STDOUT, ap.Type.EXIT]
    assert s.cal.now_ns() == t_exit
    assert take_received(s.dev) == out + done
    s.cal.run()                                     # goes on where it stopped
    r = s.ok()
    assert s.frames()[-1][0] == r["tx"][-1]["t"] >= t_exit + 1_000_000
    assert take_received(s.dev) == out


# ---------------------------------------------------------------- hostile and limits

@pytest.mark.parametrize("case,header,text", [
    ("huge", ap.HEADER.pack(ap.MAX_PAYLOAD + 1, ap.Type.STDOUT, 0, 1), "length 65537"),
    ("reserved", ap.HEADER.pack(0, ap.Type.STDOUT, 1, 1), "reserved 1"),
    ("host type", ap.HEADER.pack(0, ap.Type.RUN, 0, 1), "type 1,"),
    ("unknown type", ap.HEADER.pack(0, 32, 0, 1), "type 32,"),
])
def test_hostile_frames_are_a_guest_error(sim: Any, case: str, header: bytes,
                                          text: str) -> None:
    s = sim()
    good = ap.encode(ap.Type.STDOUT, 1, b"ok")
    s.start([sleep(1000), *CONNECT, OPEN, write(good), sleep(1000), write(header),
             sleep(1000)])
    with pytest.raises(CalendarError) as err:
        s.cal.run()
    assert err.value.kind == "device" and err.value.client_id == CLIENT_ID
    message = str(err.value)
    assert message.startswith(f"client {CLIENT_ID}: virtio device {s.path}: agent frame")
    assert text in message
    assert take_received(s.dev) == good              # what came before is kept


def test_send_limit_is_an_error(sim: Any) -> None:
    import ns3_uml._native as native

    s = sim()
    s.dev.SetAttribute("SendLimit", s.cal.ns.UintegerValue(1000))
    send_bytes(s.dev, bytes(600))
    with pytest.raises(native.error_class()) as err:
        send_bytes(s.dev, bytes(600))
    assert "host-to-guest queue full" in str(err.value)
    assert f"client {CLIENT_ID}" in str(err.value)
    assert s.dev.GetSendQueueSize() == 600          # nothing of the refused call queued


# ---------------------------------------------------------------- a real guest

def _octal(data: bytes) -> str:
    """``data`` as printf's octal escapes (dash's printf has no \\x)."""
    return "".join(f"\\{b:03o}" for b in data)


# What the guest's command does with a second console, beside its agent's: the agent's
# is the guest's first virtio device (vport0p0), this one the second.
def _port_script(to_host: bytes, from_host_len: int) -> str:
    return ("cat /sys/class/virtio-ports/vport1p0/name; exec 3<>/dev/vport1p0; "
            f"cat /proc/uptime; printf '{_octal(to_host)}' >&3; "
            f"head -c {from_host_len} <&3 | od -An -tx1 -v; cat /proc/uptime")


def test_real_guest_talks_over_the_port(uml_kernel: Path, tmp_path: Path) -> None:
    from ns3_uml.simulation import Simulation

    to_host = ap.ready_frame(123456789)
    from_host = ap.run_frame(7, "echo hello")
    with Simulation(workdir=tmp_path / "run", seed=1) as sim:
        path = sim._sockdir / "console.sock"
        node = sim.add_node("g", kernel_args=[console_kernel_arg(path)])
        node.run(_port_script(to_host, len(from_host)), name="port")
        dev = console_device(path, node.client_id, node.ns3_node.GetId(),
                             calendar=sim.calendar)
        rec = helpers().Recorder()
        assert rec.Connect(dev)
        send_bytes(dev, from_host)          # before boot: waits for the open port
        try:
            sim.run(until="20s")
            result = node.result("port")
            assert result.returncode == 0, (result.stderr,
                                            (node.workdir / "console.log").read_text())
            lines = result.stdout.splitlines()
            assert lines[0] == ap.PORT_NAME
            before, after = float(lines[1].split()[0]), float(lines[-1].split()[0])
            # The host's bytes, as they were sent.
            assert bytes.fromhex("".join(lines[2:-1])) == from_host
            # The guest's frame, complete, at the guest's own time (its uptime is the
            # simulation's time: it booted at 0).
            assert take_received(dev) == to_host
            assert [(int(t), int(ty), int(i), int(n)) for t, ty, i, n in
                    zip(rec.times, rec.types, rec.ids, rec.lengths)] == [
                (rec.times[0], ap.Type.READY, 0, 8)]
            assert before <= rec.times[0] / 1e9 <= after + 0.01  # uptime: 10 ms steps
            assert rec.contexts[0] == node.ns3_node.GetId()
            assert dev.GetRxBytes() == len(from_host)
            assert dev.GetTxBytes() == len(to_host)
            assert dev.IsConnected()  # the guest stays up until close()
        finally:
            sim.close()  # powers the guest off
            assert not dev.IsConnected() and not dev.IsPortOpen()
            dev.Close()
    assert not path.exists()
