"""A guest that shrinks its memory file under its devices (docs/DESIGN.md rule 10).

Run by tests/test_shrunk_memory.py, each case in a pytest of its own (the file is not
collected by itself: its name does not start with ``test_``): without the device's guard the
first access past the file's end raises SIGBUS and kills the whole process.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from leftovers import processes_mentioning
from pcapfile import read_pcap
from test_vhost_backend import (  # noqa: F401 (fixtures used by name)
    CLIENT_IDS,
    CONNECT,
    CONNECT_NO_RX,
    DELAY_NS,
    HDR,
    MEM_END,
    REGION_SIZE,
    REGION_START,
    WRITE,
    _compiled_helpers,
    _good_run_after,
    body,
    chain,
    csma_ns,
    eth,
    mac,
    send,
    sim,
    sleep,
    wait_frames,
)

from ns3_uml import CalendarError
from ns3_uml.simulation import GuestError, Simulation

# Where the file ends once the guest shrank it: 8 pages before the region's end.
CUT = MEM_END - 8 * 4096
SHRANK = (f"its memory file shrank under the device (region 0: guest address {REGION_START:#x}, "
          f"{REGION_SIZE:#x} bytes from file offset {REGION_START:#x}; file offset 0x")
TO_B = eth(mac(1), mac(0), 0x88B5, body(100, 1))
STRADDLING = HDR + eth(b"\xff" * 6, mac(0), 0x88B5, body(300, 2))  # from CUT - 100 on


def shrink(size: int, kick: int | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"op": "shrink_memory", "size": size}
    if kick is not None:
        step["kick"] = kick
    return step


# name: guest a's steps once b has received TO_B (at 16.44 us), and when a frame for a is
# injected (a's steps take place at 52 us)
CASES: dict[str, tuple[list[dict[str, Any]], int | None]] = {
    # a frame whose second part lies past the new end: not a byte of it may enter ns-3
    "tx frame straddles the end": (
        [{"op": "poke", "addr": CUT - 100, "data": STRADDLING.hex()},
         {**chain({"addr": CUT - 100, "len": len(STRADDLING)}), "kick": False},
         shrink(CUT, kick=1)],
        None),
    # a receive buffer past the new end: the frame written there is not delivered
    "rx buffer straddles the end": (
        [{**chain({"addr": CUT - 100, "len": 1530, "flags": WRITE}, queue=0), "kick": False},
         shrink(CUT)],
        100_000),
    # everything gone, rings included: the ring's zeros are not taken for the guest's word
    "rings gone": (
        [{**chain({"data": STRADDLING.hex()}), "kick": False}, shrink(0, kick=1)],
        None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_guest_that_shrinks_its_memory_is_a_device_error(sim: Any, case: str) -> None:
    steps, inject_at = CASES[case]
    s = sim()
    connect = CONNECT_NO_RX if inject_at is not None else CONNECT
    a = s.start(0, [sleep(1000), connect, sleep(1000), send(TO_B), sleep(50_000), *steps,
                    sleep(100_000), sleep(100_000)])
    b = s.start(1, [sleep(1000), CONNECT, wait_frames(1), sleep(1_000_000)])
    if inject_at is not None:
        s.inject(0, inject_at, eth(mac(0), mac(1), 0x88B5, body(200, 3)))
    with pytest.raises(CalendarError) as err:
        s.run()
    # This process is alive and the error names guest a and what it did.
    e = err.value
    assert e.kind == "device" and e.client_id == CLIENT_IDS[0], str(e)
    assert str(e).startswith(f"client {CLIENT_IDS[0]}: virtio device {s.paths[0]}: {SHRANK}")
    # Nothing read from the shrunk file entered ns-3 and nothing was delivered into it: the
    # only frame a sent is the one before, and a received none.
    assert s.trace("GuestTx0") == [(2000, TO_B)]
    assert len(s.trace("link.MacTx0")) == 1
    assert s.trace("GuestRx0") == []
    # Guest b is untouched: it received that frame whole, at its time, and ended by itself
    # when the calendar closed (its record written, not killed).
    arrival = 2000 + csma_ns(TO_B) + DELAY_NS
    assert s.trace("GuestRx1") == [(arrival, TO_B)]
    s.close()
    assert b.proc.returncode >= 0, b.proc.returncode
    assert b.rx() == [(arrival, TO_B)]
    assert b.result()["fe"]["errors"] == []
    assert a.proc.returncode is not None and a.proc.returncode >= 0
    # And ns-3 goes on in this process.
    _good_run_after(sim)


def memory_file(pid: int) -> Path:
    """A UML guest's memory file: the unlinked regular file its process holds open (UML's
    ``create_mem_file``, in $TMPDIR), the largest if there are several."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            st = fd.stat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 0:
            found.append((st.st_size, fd))
    assert found, f"no memory file among the descriptors of process {pid}"
    return max(found)[1]


def test_a_real_guest_whose_memory_file_shrinks(uml_kernel: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shrunk: list[int] = []
    with Simulation(workdir=run, seed=1) as sim:
        a = sim.add_node("a", run=["ping -i 0.1 -c 1000 10.0.0.2"])
        b = sim.add_node("b", run=["sleep 100"])
        sim.point_to_point(a, b, rate="100Mbps", delay="1ms")

        def strike() -> None:
            # Paused here, both guests waiting, a's pings on their way: b's file loses all
            # its pages (as if its owner truncated it), and the host sends b a command, so
            # that b's device, not b, is the first to touch the memory.
            fd = os.open(memory_file(b.process.pid), os.O_RDWR)
            try:
                shrunk.append(os.fstat(fd).st_size)
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)
            b.start("true")

        sim.at("2.5s", strike)
        with pytest.raises(GuestError) as err:
            sim.run(until="20s")
        sockets = list(sim._sockdir.iterdir())
    assert shrunk and shrunk[0] > 0
    e = err.value
    assert e.node == "b" and e.client_id == b.client_id and e.kind == "device", str(e)
    assert "guest 'b'" in str(e) and "its memory file shrank under the device" in str(e)
    # Guest a was stopped and is gone, nothing is left behind, the files stay: both
    # consoles' logs and the captures, whole, with a's pings until the strike.
    assert a.process.poll() is not None and b.process.poll() is not None
    assert not processes_mentioning(run)
    assert not any(p.exists() for p in sockets)
    assert a.console_log.exists() and b.console_log.exists()
    for name in ("p2p0-a.pcap", "p2p0-b.pcap"):
        _, records = read_pcap(run / "pcap" / name)
        assert len(records) >= 20, (name, len(records))
