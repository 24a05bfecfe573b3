"""Protocol conformance of the C++ calendar, with reference clients as separate processes."""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import ns3_uml
from ns3_uml import CalendarError, protocol
from ns3_uml.testing import HostileTTClient

US = 1_000


def run_log(log: Path) -> list[tuple[int, int]]:
    """(simulated ns, client id) of every RUN the calendar sent, in order."""
    runs = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[2] == "<-" and parts[3] == "RUN":
            runs.append((int(parts[0]), int(parts[1])))
    return runs


def messages(log: Path, client_id: int) -> list[tuple[int, str, str]]:
    """(simulated ns, direction, op) of one client's messages."""
    out = []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[1] == str(client_id):
            out.append((int(parts[0]), parts[2], parts[3]))
    return out


def sleeps(*ns: int) -> list[dict]:
    return [{"op": "sleep", "ns": n} for n in ns]


@contextlib.contextmanager
def on_message(cal: Any, op: int, hook: Callable[[], None]) -> Iterator[None]:
    """Call ``hook`` whenever a client sends ``op``, inside the calendar while it handles the
    message (before it is answered)."""
    import cppyy

    if not hasattr(cppyy.gbl, "ns3uml_hook"):
        cppyy.cppdef(
            """
            namespace ns3uml_hook {
            std::function<void()> g_hook;
            uint32_t g_op;
            void OnMessage(uint64_t, bool from, uint32_t op, uint32_t, uint64_t) {
                if (from && op == g_op && g_hook) g_hook();
            }
            bool Connect(ns3::Ptr<ns3::UmlCalendar> cal, uint32_t op, std::function<void()> hook) {
                g_op = op;
                g_hook = hook;
                return cal->TraceConnectWithoutContext("Message", ns3::MakeCallback(&OnMessage));
            }
            }"""
        )
    assert cppyy.gbl.ns3uml_hook.Connect(cal.impl, int(op), hook)
    try:
        yield
    finally:
        cppyy.gbl.ns3uml_hook.g_hook = cppyy.nullptr


def test_protocol_constants_match_the_core():
    import cppyy

    ns3_uml._native.load()
    tt = cppyy.gbl.ns3.tt
    for op in protocol.Op:
        assert int(getattr(tt, f"OP_{op.name}")) == op.value
    assert tt.SHM_VERSION == protocol.SHM_VERSION
    assert tt.SHM_HEADER_SIZE == protocol.SHM_HEADER_SIZE
    assert tt.SHM_CLIENT_SIZE == protocol.SHM_CLIENT_SIZE
    assert tt.CAP_TIME_SHARE == protocol.CAP_TIME_SHARE
    assert tt.FLAG_REQ_RUN == protocol.FLAG_REQ_RUN
    assert tt.START_ACK_ID_MASK == protocol.START_ACK_ID_MASK
    assert tt.ID_NONE == protocol.ID_NONE
    assert tt.TIME_NEVER == protocol.TIME_NEVER
    cppyy.cppdef(
        """
        #include <cstddef>
        namespace ns3uml_test {
        size_t header_off(int i) {
            using H = ns3::tt::ShmHeader;
            const size_t o[] = {offsetof(H, version), offsetof(H, len), offsetof(H, free_until),
                                offsetof(H, current_time), offsetof(H, running_id),
                                offsetof(H, max_clients)};
            return o[i];
        }
        size_t client_off(int i) {
            using C = ns3::tt::ShmClient;
            const size_t o[] = {offsetof(C, capa), offsetof(C, flags), offsetof(C, req_time),
                                offsetof(C, name)};
            return o[i];
        }
        }"""
    )
    f = cppyy.gbl.ns3uml_test
    assert [f.header_off(i) for i in range(6)] == [
        protocol.SHM_OFF_VERSION, protocol.SHM_OFF_LEN, protocol.SHM_OFF_FREE_UNTIL,
        protocol.SHM_OFF_CURRENT_TIME, protocol.SHM_OFF_RUNNING_ID, protocol.SHM_OFF_MAX_CLIENTS,
    ]
    assert [f.client_off(i) for i in range(4)] == [
        protocol.SHM_CLIENT_OFF_CAPA, protocol.SHM_CLIENT_OFF_FLAGS,
        protocol.SHM_CLIENT_OFF_REQ_TIME, protocol.SHM_CLIENT_OFF_NAME,
    ]


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_every_op(make_calendar, clients, socket_path, tmp_path, shm):
    log = tmp_path / "cal.log"
    epoch = 1_600_000_000 * 10**9
    cal = make_calendar(clients=2, shared_memory=shm, tod_epoch_ns=epoch, log=log)
    a = clients(
        socket_path,
        1,
        [{"op": "get_tod"}, *sleeps(10 * US), {"op": "update"}, {"op": "broadcast", "value": 0xAB},
         *sleeps(5 * US)],
        shm=shm,
    )
    b = clients(socket_path, 2, [{"op": "get_tod"}, *sleeps(12 * US, 20 * US)], shm=shm)
    summary = cal.run()
    ra, rb = a.result(), b.result()
    assert ra["status"] == rb["status"] == "ok"
    assert ra["shm"] is shm and rb["shm"] is shm
    # GET_TOD: the configured epoch plus the simulated time (0 at boot).
    assert ra["tods"] == [epoch] and rb["tods"] == [epoch]
    # RUN at exactly the requested times; b runs at 12 us and 32 us, a at 10 and 15 us.
    assert [r["local"] for r in ra["runs"]] == [10 * US, 15 * US]
    assert [r["local"] for r in rb["runs"]] == [12 * US, 32 * US]
    # BROADCAST relayed to the other client only.
    assert [m["value"] for m in rb["broadcasts"]] == [0xAB]
    assert ra["broadcasts"] == []
    assert summary["sim_time_ns"] == 32 * US
    assert [c["id"] for c in summary["clients"]] == [1, 2]
    assert all(c["departure"] == "left while running" for c in summary["clients"])
    assert all(c["shm"] is shm for c in summary["clients"])
    msgs = summary["messages"]
    assert msgs["START"]["from_clients"] == 2
    assert msgs["GET_TOD"]["from_clients"] == 2
    assert msgs["BROADCAST"] == {"from_clients": 1, "to_clients": 1}
    if shm:
        # Requests, time and free-until travel through the page: no REQUEST, UPDATE, GET
        # or FREE_UNTIL messages at all; RUN and WAIT are not acknowledged.
        for op in ("REQUEST", "UPDATE", "GET", "FREE_UNTIL"):
            assert op not in msgs
        assert msgs["RUN"]["to_clients"] == msgs["WAIT"]["from_clients"] == 4 - 2 + 2
    else:
        # a's "update" step, and b's time before its WAIT at 12 us (kernel patch 0004).
        assert msgs["UPDATE"]["from_clients"] == 2
        assert msgs["GET"]["from_clients"] == 2  # UML's boot: GET_TOD then GET
        assert msgs["FREE_UNTIL"]["to_clients"] == msgs["RUN"]["to_clients"]
    assert run_log(log) == [(10 * US, 1), (12 * US, 2), (15 * US, 1), (32 * US, 2)]


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_same_time_runs_in_id_order_every_time(make_calendar, clients, socket_path, tmp_path, shm):
    ids = [0x30, 0x5, 0x1A, 0x2]
    orders = []
    for attempt in range(2):
        log = tmp_path / f"cal{attempt}.log"
        cal = make_calendar(clients=len(ids), shared_memory=shm, log=log)
        # Started in a different order each time; all ask for the same times.
        started = ids if attempt == 0 else list(reversed(ids))
        procs = [clients(socket_path, i, sleeps(US, US, 3 * US), shm=shm) for i in started]
        cal.run()
        for p in procs:
            assert p.result()["status"] == "ok"
        orders.append(run_log(log))
        cal.close()
    expected = [(t, i) for t in (US, 2 * US, 5 * US) for i in sorted(ids)]
    assert orders[0] == expected
    assert orders[1] == expected


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_free_until_is_the_next_event_of_anybody(make_calendar, clients, socket_path, tmp_path, shm):
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=2, shared_memory=shm, log=log)
    # a's timers at 1, 2, ..., 10 us; b wants 3.5 us. a may run freely up to 3.5 us only.
    a = clients(socket_path, 1, sleeps(*[US] * 10), shm=shm)
    b = clients(socket_path, 2, sleeps(3500), shm=shm)
    cal.run()
    assert a.result()["status"] == b.result()["status"] == "ok"
    assert run_log(log) == [(US, 1), (3500, 2), (4 * US, 1)]
    assert [r["local"] for r in a.result()["runs"]] == [US, 4 * US]
    assert a.result()["timers_fired"] == 10
    if not shm:
        grants = [(t, m) for t, d, m in messages(log, 1) if m == "FREE_UNTIL"]
        times = [int(line.split("time=")[1]) for line in log.read_text().splitlines()
                 if " 1 <- FREE_UNTIL" in line]
        # Granted again before every RUN (UML forgets it at WAIT): b's request, then never.
        assert times == [3500, protocol.TIME_NEVER]
        assert len(grants) == 2


def _two_nodes(cal: Any, linked: bool) -> tuple[Any, Any]:
    """Two ns-3 nodes, joined by a point-to-point channel or not, whose guests are the
    clients 1 and 2."""
    nodes = cal.ns.NodeContainer()
    nodes.Create(2)
    if linked:
        cal.ns.PointToPointHelper().Install(nodes)
    cal.set_client_node(1, nodes.Get(0).GetId())
    cal.set_client_node(2, nodes.Get(1).GetId())
    return nodes.Get(0), nodes.Get(1)


STOPS_FOR_B = [(US, 1), (3500, 2), (4 * US, 1)]


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
@pytest.mark.parametrize("linked, groups, expected_groups, expected_runs", [
    (False, True, 2, [(US, 1), (3500, 2)]),
    (True, True, 1, STOPS_FOR_B),
    (False, False, 0, STOPS_FOR_B),
], ids=["apart", "linked", "grouping-off"])
def test_free_until_is_the_next_event_that_can_reach_the_client(
        make_calendar, clients, socket_path, tmp_path, shm, linked, groups, expected_groups,
        expected_runs):
    # As above, but a and b are the guests of two nodes: apart, they are two independent
    # groups, and a runs freely past b's request; linked, or with grouping off, a stops for
    # it.
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=2, shared_memory=shm, log=log, independent_groups=groups)
    _two_nodes(cal, linked)
    a = clients(socket_path, 1, sleeps(*[US] * 10) + [{"op": "idle"}], shm=shm)
    clients(socket_path, 2, sleeps(3500) + [{"op": "idle"}], shm=shm)
    summary = cal.run()
    cal.close()  # the idle clients then lose their calendar, like a guest would
    assert a.result()["timers_fired"] == 10
    assert summary["groups"] == expected_groups
    assert run_log(log) == expected_runs


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_a_client_stops_for_its_own_group_and_global_events_only(
        make_calendar, clients, socket_path, tmp_path, shm):
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=2, shared_memory=shm, log=log)
    ns = cal.ns
    node_a, node_b = _two_nodes(cal, linked=False)
    a = clients(socket_path, 1, sleeps(*[US] * 10) + [{"op": "idle"}], shm=shm)
    clients(socket_path, 2, [{"op": "idle"}], shm=shm)
    seen: list[int] = []

    def event() -> None:
        seen.append(int(ns.Simulator.Now().GetNanoSeconds()))

    schedule_on = ns.Simulator.ScheduleWithContext["std::function<void()>"]
    schedule_on(node_b.GetId(), ns.NanoSeconds(2500), event)  # b's group: a runs on
    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(5000), event)  # global
    schedule_on(node_a.GetId(), ns.NanoSeconds(7500), event)  # a's own group
    cal.run()
    cal.close()
    assert a.result()["timers_fired"] == 10
    assert seen == [2500, 5000, 7500]
    assert run_log(log) == [(US, 1), (5 * US, 1), (8 * US, 1)]


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_what_reaches_a_group_that_ran_ahead_happens_at_its_time(
        make_calendar, clients, socket_path, tmp_path, shm):
    # a's group reaches 10 us while b's group stops the run at 3.5 us. Then an event for a's
    # node cannot be in a's past: it happens at 10 us; b's node and global ones at now.
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=2, shared_memory=shm, log=log)
    ns = cal.ns
    node_a, node_b = _two_nodes(cal, linked=False)
    clients(socket_path, 1, sleeps(*[US] * 10) + [{"op": "idle"}], shm=shm)
    clients(socket_path, 2, [{"op": "idle"}], shm=shm)
    schedule_on = ns.Simulator.ScheduleWithContext["std::function<void()>"]
    def stop() -> None:
        ns.Simulator.Stop()

    schedule_on(node_b.GetId(), ns.NanoSeconds(3500), stop)
    cal.run()
    assert cal.now_ns() == 3500
    seen: list[tuple[str, int]] = []

    def event(name: str) -> Callable[[], None]:
        return lambda: seen.append((name, int(ns.Simulator.Now().GetNanoSeconds())))

    keep = [event("a"), event("b"), event("global")]  # cppyy holds no reference
    schedule_on(node_a.GetId(), ns.NanoSeconds(0), keep[0])
    schedule_on(node_b.GetId(), ns.NanoSeconds(0), keep[1])
    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(0), keep[2])
    cal.run()
    assert seen == [("b", 3500), ("global", 3500), ("a", 10 * US)]
    cal.close()


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_ns3_events_interleave_at_exact_times(make_calendar, clients, socket_path, tmp_path, shm):
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=1, shared_memory=shm, log=log)
    ns = cal.ns
    a = clients(socket_path, 7, sleeps(*[1000] * 5), shm=shm)
    seen: list[tuple[int, int]] = []

    def event() -> None:
        seen.append((int(ns.Simulator.Now().GetNanoSeconds()), int(cal.impl.GetHandoffCount())))

    for t in (500, 2500, 3000, 7000):
        ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(t), event)
    cal.run()
    assert a.result()["status"] == "ok"
    # Granted free running up to the next ns-3 event: its 2 us timer needs no RUN, its 3 us
    # one does (the event at 2.5 us intervenes), 4 and 5 us run freely until 7 us.
    assert run_log(log) == [(1000, 7), (3000, 7)]
    assert a.result()["timers_fired"] == 5
    # (time, RUNs before it): the event at 3000 was scheduled first, so it precedes the guest.
    assert seen == [(500, 0), (2500, 1), (3000, 1), (7000, 2)]


def _interrupt_scenario(make_calendar, clients, socket_path, log, shm):
    cal = make_calendar(clients=2, shared_memory=shm, log=log)
    ns = cal.ns
    a = clients(socket_path, 1, sleeps(*[1000] * 5), shm=shm)
    b = clients(socket_path, 2, [{"op": "wait_irq"}, *sleeps(700)], shm=shm, irq=True)
    replies = []

    def device() -> None:
        # A device raising b's interrupt and waiting for b's answer, as vhost-user does.
        b.irq.sendall(b"\x01")
        cal.impl.WaitForReply(b.irq.fileno(), 2)
        replies.append((int(ns.Simulator.Now().GetNanoSeconds()), b.irq.recv(1)))

    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(2500), device)
    cal.run()
    assert a.result()["status"] == b.result()["status"] == "ok"
    return cal, a, b, replies


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_interrupt_while_waiting(make_calendar, clients, socket_path, tmp_path, shm):
    log = tmp_path / "cal.log"
    _, a, b, replies = _interrupt_scenario(make_calendar, clients, socket_path, log, shm)
    assert [(t, len(r)) for t, r in replies] == [(2500, 1)]
    rb = b.result()
    assert [i["received_local"] for i in rb["irqs"]] == [2500]
    # b runs at the interrupt's time, before a's timer at 3000, then at its own timer; a
    # runs freely up to the next event of anybody (its 2 and 5 us timers need no RUN).
    assert run_log(log) == [(1000, 1), (2500, 2), (3000, 1), (3200, 2), (4000, 1)]
    assert a.result()["timers_fired"] == 5
    b_all = messages(log, 2)
    first_run = next(i for i, (t, d, m) in enumerate(b_all) if m == "RUN")
    b_msgs = [(t, d, m) for t, d, m in b_all[:first_run] if t == 2500 and d == "->"]
    if shm:
        assert b_msgs == []  # GET and REQUEST both went through the page
    else:
        assert b_msgs == [(2500, "->", "GET"), (2500, "->", "REQUEST")]


def test_message_and_shared_memory_modes_give_the_same_schedule(
    make_calendar, clients, socket_path, tmp_path
):
    schedules = []
    for shm in (True, False):
        log = tmp_path / f"cal-{shm}.log"
        _interrupt_scenario(make_calendar, clients, socket_path, log, shm)
        schedules.append(run_log(log))
        ns3_uml.Calendar._active.close()
    assert schedules[0] == schedules[1]


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_late_joiner_sees_its_own_time_zero(make_calendar, clients, socket_path, tmp_path, shm):
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=1, shared_memory=shm, log=log)
    ns = cal.ns
    clients(socket_path, 1, sleeps(*[1000] * 10), shm=shm)
    late = []

    def join() -> None:
        late.append(clients(socket_path, 2, sleeps(500, 500), shm=shm))
        cal.admit(1)

    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(4200), join)
    summary = cal.run()
    rb = late[0].result()
    assert rb["status"] == "ok"
    # Its clock starts at 0 when it joins at 4.2 us: local 500, 1000 = calendar 4.7, 5.2 us.
    assert [r["local"] for r in rb["runs"]] == [500, 1000]
    assert [t for t, i in run_log(log) if i == 2] == [4700, 5200]
    assert {c["id"]: c["offset_ns"] for c in summary["clients"]} == {1: 0, 2: 4200}


def test_free_until_lowered_when_a_device_creates_an_earlier_event(
    make_calendar, clients, socket_path, tmp_path
):
    # A device handler running while the guest is blocked in a kick schedules an ns-3 event
    # earlier than the guest's free-until: the guest's free-until must come down before the
    # kick is answered (message mode: a FREE_UNTIL message on the time socket).
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=1, shared_memory=False, log=log)
    ns = cal.ns
    a = clients(socket_path, 1, [*sleeps(1000), {"op": "update"}, *sleeps(*[1000] * 4)],
                shm=False)
    fired = []

    def on_update() -> None:
        fired.append(int(ns.Simulator.Now().GetNanoSeconds()))

    def device() -> None:
        if not fired and not scheduled:  # the first UPDATE only: the script's, before a kick
            scheduled.append(True)
            ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(1500), on_update)

    scheduled: list[bool] = []

    # Fire the "device" when the guest's UPDATE (sent before every kick) arrives.
    with on_message(cal, protocol.Op.UPDATE, device):
        cal.run()
    assert a.result()["status"] == "ok"
    assert fired == [2500]
    lines = [line for line in log.read_text().splitlines() if " 1 " in line]
    update = next(i for i, line in enumerate(lines) if "-> UPDATE" in line)
    # Lowered to 2500, and acknowledged by the guest, before its UPDATE is answered.
    assert "<- FREE_UNTIL" in lines[update + 1] and lines[update + 1].endswith("time=2500")
    assert "-> ACK" in lines[update + 2]
    assert "<- ACK" in lines[update + 3]
    # The guest runs freely to 2 us only, yields, and runs again after the event.
    assert run_log(log) == [(1000, 1), (3000, 1)]
    assert a.result()["timers_fired"] == 5


# A device that another client serves (as wmediumd serves UML's hwsim radios) is kicked at
# KICK_AT; before it answers, its client asks to run DELIVERY later (a frame's arrival).
KICK_AT = 2 * US
DELIVERY = 591 * US
REQUESTED = KICK_AT + DELIVERY


def _kicked_device_scenario(make_calendar, clients, socket_path, log, a_shm, b_shm,
                            nodes: Callable[[Any], None] | None = None
                            ) -> tuple[Any, Any, list[int]]:
    """a runs from 1 us with no event ahead, kicks b's device at KICK_AT and, after the
    reply, broadcasts (the calendar then schedules an ns-3 event at KICK_AT + 800 us, between
    b's request and a's old free-until) and runs on in 100 us steps; b serves the device."""
    cal = make_calendar(clients=2, log=log)
    ns = cal.ns
    if nodes is not None:
        nodes(cal)
    device, line = socket.socketpair()
    a = clients(socket_path, 1,
                [*sleeps(US, KICK_AT - US), {"op": "kick"}, {"op": "broadcast", "value": 1},
                 *sleeps(*[100 * US] * 20)], shm=a_shm, device=device)
    b = clients(socket_path, 2, [{"op": "wait_irq", "delay_ns": DELIVERY}], shm=b_shm, irq=line)
    fired: list[int] = []

    def event() -> None:
        fired.append(int(ns.Simulator.Now().GetNanoSeconds()))

    def schedule_later() -> None:
        ns.Simulator.Schedule["std::function<void()>"](ns.MicroSeconds(800), event)

    with on_message(cal, protocol.Op.BROADCAST, schedule_later):
        cal.run()
    assert a.result()["status"] == "ok"
    return a, b, fired


def _stopped_for(log: Path, runner: int, other: int, kick: int, requested: int) -> bool:
    """Whether the runner, after its kick at ``kick``, yielded (WAIT) without passing
    ``requested`` before the other client's first RUN (the times are the calendar's clock at
    each message: the runner's own while it runs)."""
    times, waits = [], []
    for line in log.read_text().splitlines():
        t, cid, direction, op = line.split()[:4]
        if int(cid) == other and direction == "<-" and op == "RUN":
            break
        if int(cid) == runner:
            times.append(int(t))
            if direction == "->" and op == "WAIT" and int(t) >= kick:
                waits.append(int(t))
    return bool(waits) and max(times) <= requested


@pytest.mark.parametrize("a_shm, b_shm", [(False, False), (True, False), (False, True),
                                          (True, True)],
                         ids=["messages", "shm-runner", "shm-device", "shm"])
def test_a_waiting_clients_request_stops_the_running_client(
        make_calendar, clients, socket_path, tmp_path, a_shm, b_shm):
    # docs/DESIGN.md rule 2: b's request (made while it waits, a runs) lowers a's free-until
    # before it is answered, whichever of them shares time through the page.
    log = tmp_path / "cal.log"
    a, b, fired = _kicked_device_scenario(make_calendar, clients, socket_path, log, a_shm,
                                          b_shm)
    rb = b.result()
    assert rb["status"] == "ok"  # its interrupt's work ran at exactly its time
    assert [i["received_calendar"] for i in rb["irqs"]] == [KICK_AT]
    assert b.run_times() == [REQUESTED]
    assert _stopped_for(log, 1, 2, KICK_AT, REQUESTED)
    # a stopped at its last step before b's time (502 us), and for the ns-3 event at 802 us.
    assert run_log(log) == [(US, 1), (REQUESTED, 2), (602 * US, 1), (802 * US, 1)]
    assert fired == [802 * US]
    if not (a_shm and b_shm):
        # b's REQUEST is answered only once a has acknowledged its lowered free-until.
        lines = log.read_text().splitlines()
        req = next(i for i, line in enumerate(lines) if " 2 -> REQUEST " in line
                   and int(line.split("time=")[1]) < protocol.TIME_NEVER)
        after = [" ".join(line.split()[1:4]) for line in lines[req + 1:req + 4]]
        if a_shm:
            assert after[0] == "2 <- ACK"  # lowered in a's page
        else:
            assert lines[req + 1].endswith(f"time={REQUESTED}")
            assert after == ["1 <- FREE_UNTIL", "1 -> ACK", "2 <- ACK"]


@pytest.mark.parametrize("b_node, stops", [("none", True), ("same", True), ("other", False)],
                         ids=["device-global", "device-in-group", "device-in-other-group"])
def test_a_waiting_clients_request_stops_only_a_client_it_can_reach(
        make_calendar, clients, socket_path, tmp_path, b_node, stops):
    # With independent groups, b's request stops a if b is global (no node) or in a's group;
    # b in another group cannot reach a (a kicking it directly is a link the calendar does
    # not see), and a runs on to its own limit (MaxAhead after its run's start).
    log = tmp_path / "cal.log"

    def nodes(cal: Any) -> None:
        made = cal.ns.NodeContainer()
        made.Create(3)
        cal.ns.PointToPointHelper().Install(made.Get(0), made.Get(1))
        cal.set_client_node(1, made.Get(0).GetId())
        if b_node != "none":
            cal.set_client_node(2, made.Get(1 if b_node == "same" else 2).GetId())

    _, b, _ = _kicked_device_scenario(make_calendar, clients, socket_path, log, False, False,
                                      nodes)
    assert b.result()["status"] == "ok"
    assert b.run_times() == [REQUESTED]
    lowered = [line for line in log.read_text().splitlines()
               if " 1 <- FREE_UNTIL" in line and line.endswith(f"time={REQUESTED}")]
    assert bool(lowered) is stops
    assert _stopped_for(log, 1, 2, KICK_AT, REQUESTED) is stops


_KICK_RELAY = r"""
#include "ns3/string.h"
#include "ns3/uinteger.h"
namespace ns3uml_relay {
// A guest's network interface whose transmit kicks go to a device that another client
// serves, as wmediumd serves UML's radios: the hook runs while the guest waits for the
// kick's reply. Its frames are never taken (nothing in ns-3 is scheduled for them).
class Device : public ns3::VirtioNetDevice {
  public:
    std::function<void()> onTxKick; // set through SetHook

  protected:
    void OnKick(uint32_t queue) override {
        if (queue != ns3::vhost::NET_TX_QUEUE) {
            ns3::VirtioNetDevice::OnKick(queue);
        } else if (onTxKick) {
            onTxKick();
        }
    }
};
ns3::Ptr<Device> Make(ns3::Ptr<ns3::UmlGuestScheduler> scheduler, const std::string& path,
                      uint64_t clientId) {
    ns3::Ptr<Device> d = ns3::CreateObject<Device>();
    d->SetAttribute("SocketPath", ns3::StringValue(path));
    d->SetAttribute("ClientId", ns3::UintegerValue(clientId));
    d->SetMac(ns3::Mac48Address("02:75:00:00:00:01"));
    d->SetScheduler(scheduler);
    d->Listen();
    return d;
}
void SetHook(ns3::Ptr<Device> d, std::function<void()> hook) { d->onTxKick = hook; }
}
"""


@pytest.mark.parametrize("shm, b_shm", [(False, False), (True, True), (True, False)],
                         ids=["messages", "shm", "shm-guest"])
def test_a_guest_never_passes_the_request_of_the_device_client_it_kicked(
        uml_kernel, make_calendar, clients, socket_path, tmp_path, shm, b_shm):
    # A real guest sends its first frame; the device is b's, which asks to run DELIVERY
    # later before it answers the kick. The guest, with no event ahead, must stop there.
    # (With both on the page, the guest's own kernel reads b's lowering there; otherwise
    # the calendar must lower it.)
    import cppyy

    from ns3_uml.guest import GuestConfig, GuestProcess, InterfaceConfig

    log = tmp_path / "cal.log"
    cal = make_calendar(clients=2, shared_memory=shm, log=log)
    if not hasattr(cppyy.gbl, "ns3uml_relay"):
        cppyy.cppdef(_KICK_RELAY)
    net = tmp_path / "net.sock"
    relay = cppyy.gbl.ns3uml_relay.Make(cal.impl.GetGuestScheduler(), str(net), 1)
    device, line = socket.socketpair()
    b = clients(socket_path, 2, [{"op": "wait_irq", "delay_ns": DELIVERY}], shm=b_shm, irq=line)
    kicks: list[tuple[int, str]] = []

    def on_tx_kick() -> None:
        if kicks:
            return
        state = {c["id"]: c["state"] for c in cal.summary()["clients"]}[1]
        kicks.append((cal.now_ns(), state))
        device.sendall(b"\x01")
        cal.impl.WaitForReply(device.fileno(), 2)
        assert device.recv(1) == b"\x00"

    cppyy.gbl.ns3uml_relay.SetHook(relay, on_tx_kick)
    cfg = GuestConfig(name="g", client_id=1, tt_socket=socket_path, workdir=tmp_path / "g",
                      commands=["ping -c 1 -W 1 10.0.0.2"],
                      interfaces=[InterfaceConfig(net, "10.0.0.1/24")])
    try:
        with GuestProcess(cfg, uml_kernel) as guest:
            cal.register_process(1, guest.pid)
            cal.run()
            assert guest.wait(timeout=60) == 0, guest.console_log.read_text(errors="replace")
    finally:
        cppyy.gbl.ns3uml_relay.SetHook(relay, cppyy.nullptr)
        relay.Close()
        device.close()
    assert len(kicks) == 1 and kicks[0][1] == "running"
    requested = kicks[0][0] + DELIVERY
    rb = b.result()
    assert rb["status"] == "ok"  # its interrupt's work ran at exactly its time
    assert b.run_times() == [requested]
    assert _stopped_for(log, 1, 2, kicks[0][0], requested)


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_an_idle_client_is_never_run(make_calendar, clients, socket_path, tmp_path, shm):
    # A UML with nothing pending asks for S64_MAX (with shm: plus its offset, past S64_MAX,
    # so a late joiner's request overflows a signed time): that means "never".
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=1, shared_memory=shm, log=log)
    ns = cal.ns
    clients(socket_path, 1, sleeps(*[1000] * 5), shm=shm)
    late = []

    def join() -> None:
        late.append(clients(socket_path, 2, [{"op": "idle"}], shm=shm))
        cal.admit(1)

    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(2500), join)
    summary = cal.run()
    # Client 1 runs at 1 us, again after the join at 3 us, then freely to its end; the
    # idle client is never run, and time does not jump to "never".
    assert run_log(log) == [(1000, 1), (3000, 1)]
    assert summary["sim_time_ns"] == 3000
    cal.close()  # the idle client then loses its calendar, like a guest would
    assert late[0].result()["runs"] == []


def test_clean_departure_is_not_an_error(make_calendar, clients, socket_path):
    cal = make_calendar(clients=2)
    a = clients(socket_path, 1, [*sleeps(1000), {"op": "exit"}])
    b = clients(socket_path, 2, sleeps(5000))
    summary = cal.run()
    assert a.result()["status"] == b.result()["status"] == "ok"
    assert [c["departure"] for c in summary["clients"]] == ["left while running"] * 2
    assert summary["sim_time_ns"] == 5000


# ---------------------------------------------------------------- errors

ERROR_CASES = {
    "short message": ([{"op": "short_and_close", "bytes": 9}], "middle of a message"),
    "unknown op": ([{"op": "unknown_op", "value": 77}], "unknown op 77"),
    "RUN from a client": ([{"op": "send_as_calendar", "msg": "RUN"}], "only the calendar"),
    "FREE_UNTIL from a client": (
        [{"op": "send_as_calendar", "msg": "FREE_UNTIL"}],
        "only the calendar",
    ),
    "ACK with a wrong seq": ([{"op": "wrong_seq_ack"}, *sleeps(1000)], "ACK with seq"),
    # A stream has no message boundaries: bytes past a message start the next one.
    "oversized message": ([{"op": "raw", "hex": "02000000" + "05000000" + "00" * 8 + "ff" * 4}],
                          "middle of a message"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_protocol_errors_stop_the_run_naming_the_client(
    make_calendar, clients, socket_path, case, shm
):
    steps, text = ERROR_CASES[case]
    cal = make_calendar(clients=2, shared_memory=shm, yield_timeout=20)
    # Its broadcast gives the other client a message to acknowledge in shared-memory mode.
    good = clients(socket_path, 1, [*sleeps(1000), {"op": "broadcast", "value": 1},
                                    *sleeps(*[1000] * 4)], shm=shm)
    clients(socket_path, 0x2A, steps, shm=shm)
    with pytest.raises(CalendarError) as err:
        cal.run()
    assert err.value.kind == "protocol"
    assert err.value.client_id == 0x2A
    assert "client 42" in str(err.value) and text in str(err.value)
    assert not socket_path.exists()
    # The other client's socket was closed: it stops on its own (like UML's panic).
    assert good.proc.wait(timeout=30) != 0


def test_duplicate_ids_are_refused(make_calendar, clients, socket_path):
    cal = make_calendar(clients=2)
    clients(socket_path, 5, sleeps(1000))
    clients(socket_path, 5, sleeps(1000))
    with pytest.raises(CalendarError, match="two clients sent START with id 5:"):
        cal.run()


def test_clients_without_id_share_a_calendar_in_connection_order(
    make_calendar, clients, socket_path, tmp_path, caplog
):
    # UML's time-travel=ext:PATH and wmediumd send START(-1): two of them are accepted and
    # come after every client with an id, among themselves in the order they connected.
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=3, log=log)
    procs = [clients(socket_path, protocol.ID_NONE, sleeps(1000, 1000)),
             clients(socket_path, 5, sleeps(1000, 1000)),
             clients(socket_path, protocol.ID_NONE, sleeps(1000, 1000))]
    with caplog.at_level("WARNING", logger="ns3_uml"):
        summary = cal.run()
    assert [c.result()["status"] for c in procs] == ["ok"] * 3
    assert [(c["id"], c["name"], c["ordered_by"]) for c in summary["clients"]] == [
        (5, "client 5", "id"),
        (-1, "client without id #1", "connection"),
        (-1, "client without id #2", "connection"),
    ]
    pids = {c["name"]: c["pid"] for c in summary["clients"]}
    assert pids["client 5"] == procs[1].proc.pid
    # Which of the two connected first is the host's doing.
    assert {pids["client without id #1"], pids["client without id #2"]} == {
        procs[0].proc.pid, procs[2].proc.pid}
    # At the same time they run in that order, every time (the log names them -1#N).
    runs = [(int(t), who) for t, who, way, op, *_ in map(str.split, log.read_text().splitlines())
            if way == "<-" and op == "RUN"]
    assert runs == [(t, who) for t in (1000, 2000) for who in ("5", "-1#1", "-1#2")]
    [warning] = summary["warnings"]
    assert warning.startswith(f"client without id #2 (pid {pids['client without id #2']}, ")
    assert "in the order they connected" in warning and "time-travel=ext:ID:PATH" in warning
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        f"calendar: {warning}"]


def test_id_minus_one_names_no_single_client(make_calendar):
    cal = make_calendar()
    for call in (cal.register_process, cal.set_client_node):
        with pytest.raises(CalendarError) as err:
            call(-1, 1)
        assert err.value.kind == "setup" and "id of every client without one" in str(err.value)


def test_hang_is_detected(make_calendar, clients, socket_path):
    cal = make_calendar(clients=1, yield_timeout=1.0)
    clients(socket_path, 3, [*sleeps(1000), {"op": "hang"}])
    with pytest.raises(CalendarError) as err:
        cal.run()
    assert err.value.kind == "hang" and err.value.client_id == 3
    assert "did not yield within 1" in str(err.value)


def test_killed_client_is_a_crash(make_calendar, clients, socket_path):
    cal = make_calendar(clients=2)
    victim = clients(socket_path, 9, [*sleeps(1000), {"op": "hang"}])
    clients(socket_path, 1, sleeps(*[1000] * 5))
    cal.register_process(9, victim.proc.pid)
    # Killed while it is the running client (it hangs after its RUN at 1 us).
    timer = threading.Timer(1.0, victim.proc.send_signal, args=(signal.SIGKILL,))
    timer.start()
    try:
        with pytest.raises(CalendarError) as err:
            cal.run()
    finally:
        timer.cancel()
    assert err.value.kind == "crash" and err.value.client_id == 9
    assert "killed by signal 9" in str(err.value)
    assert f"pid {victim.proc.pid}" in str(err.value)


def test_missing_clients_time_out(make_calendar, clients, socket_path):
    cal = make_calendar(clients=2, connect_timeout=1.0)
    clients(socket_path, 1, sleeps(1000))
    with pytest.raises(CalendarError) as err:
        cal.run()
    assert err.value.kind == "timeout"
    assert "only 1 of 2 clients" in str(err.value)


def test_a_connection_that_closes_before_start_is_forgotten(make_calendar, clients,
                                                             socket_path, tmp_path):
    # Readiness probes (connect, close): one waits before the client, one joins mid-run;
    # neither holds up admission nor appears anywhere.
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=1, connect_timeout=5.0, log=log)
    HostileTTClient.probe(str(socket_path))
    a = clients(socket_path, 1, sleeps(*[1000] * 3))

    def probe() -> None:
        HostileTTClient.probe(str(socket_path))

    cal.ns.Simulator.Schedule["std::function<void()>"](cal.ns.NanoSeconds(1500), probe)
    summary = cal.run()
    assert a.result()["status"] == "ok"
    assert [c["id"] for c in summary["clients"]] == [1]
    # As without the probes: run at 1 us, again after the probe's event, then free to the end.
    assert run_log(log) == [(1000, 1), (2000, 1)]
    assert summary["handoffs"] == 2


def test_a_connection_that_sends_a_few_bytes_has_no_id(make_calendar, socket_path):
    cal = make_calendar(clients=1, connect_timeout=5.0)
    hostile = HostileTTClient(str(socket_path))
    hostile.connect()
    hostile.send_short_and_close(5)
    with pytest.raises(CalendarError) as err:
        cal.run()
    assert err.value.kind == "protocol" and err.value.client_id is None
    assert str(err.value) == (
        "a connection that sent no START: disconnected in the middle of its first message")


def test_a_message_that_stops_halfway_fails_within_one_limit(make_calendar, socket_path):
    # Nothing else happens, and the admission's own limit is far: the message's deadline
    # (MessageTimeout from its first byte) is what ends the wait.
    cal = make_calendar(clients=1, message_timeout=1.0, connect_timeout=30.0)
    hostile = HostileTTClient(str(socket_path))
    hostile.connect()
    hostile.send_raw(bytes(5))
    start = time.monotonic()
    try:
        with pytest.raises(CalendarError) as err:
            cal.run()
        took = time.monotonic() - start
    finally:
        hostile.close()
    assert err.value.kind == "protocol" and err.value.client_id is None
    assert str(err.value) == ("a connection that sent no START: sent a partial time-travel "
                              "message and stopped: 5 of 16 bytes in 1 s")
    assert 0.9 < took < 5


def test_a_busy_loop_keeps_its_time_limit():
    # A descriptor that is always ready (nobody reads it) keeps epoll_wait from ever
    # returning 0: the limit must hold anyway.
    import socket

    import cppyy

    ns3_uml._native.load()
    cppyy.cppdef(
        """
        #include <chrono>
        namespace ns3uml_test {
        double BusyLoopGivesUpAfter(int fd, int64_t limitMs) {
            ns3::EventLoop loop;
            loop.Watch(fd, [](uint32_t) {}, true);
            auto t0 = std::chrono::steady_clock::now();
            auto s = [t0] {
                return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                    .count();
            };
            bool done = loop.ServeUntil([&s] { return s() > 10.0; }, limitMs);
            return done ? -1.0 : s();
        }
        }"""
    )
    a, b = socket.socketpair()
    with a, b:
        b.send(b"x")
        start = time.monotonic()
        gave_up = cppyy.gbl.ns3uml_test.BusyLoopGivesUpAfter(a.fileno(), 200)
        assert 0.2 <= gave_up < 2.0, (gave_up, time.monotonic() - start)


@pytest.mark.parametrize("when", ["admission", "running"])
def test_a_get_storm_does_not_postpone_the_limits(make_calendar, clients, socket_path, when):
    # GETs back to back for far longer than the limit: it must hold all the same.
    storm = [{"op": "get_storm", "seconds": 30}]
    if when == "admission":
        cal = make_calendar(clients=1, connect_timeout=1.0)
        stormer = clients(socket_path, 7, storm)
    else:
        cal = make_calendar(clients=1, yield_timeout=1.0)
        stormer = clients(socket_path, 7, [*sleeps(1000), *storm])
    start = time.monotonic()
    with pytest.raises(CalendarError) as err:
        cal.run()
    elapsed = time.monotonic() - start
    if when == "admission":
        assert err.value.kind == "timeout" and "only 0 of 1 clients" in str(err.value)
    else:
        assert err.value.kind == "hang" and err.value.client_id == 7
        # Named with its process, which the calendar learnt from its socket.
        assert f"client 7 (pid {stormer.proc.pid}, " in str(err.value)
        assert "): did not yield within 1" in str(err.value)
    assert elapsed < 10, elapsed
    stormer.proc.wait(timeout=30)  # it sees the calendar close and ends


def test_a_second_calendar_is_refused(make_calendar, tmp_path):
    make_calendar()
    with pytest.raises(RuntimeError, match="already exists"):
        ns3_uml.Calendar(tmp_path / "other.sock")


# ---------------------------------------------------------------- the command line

def _cli(socket_path: Path, *args: str) -> subprocess.Popen[str]:
    """The standalone calendar, returned once it listens (as a guest would need it)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ns3_uml", "calendar", "--socket", str(socket_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=socket_path.parent,
    )
    for line in proc.stderr:
        if "listening" in line:
            return proc
    raise AssertionError(f"the calendar did not start: {proc.communicate()}")


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_standalone_calendar(clients, socket_path, tmp_path, shm):
    import json

    log = tmp_path / "cli.log"
    args = ["--clients", "2", "--json", "--log", str(log)] + ([] if shm else ["--no-shm"])
    cli = _cli(socket_path, *args)
    a = clients(socket_path, 0x11, sleeps(*[1000] * 3), shm=shm)
    b = clients(socket_path, 0x22, sleeps(2500), shm=shm)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    summary = json.loads(out)
    # 0x11 runs freely from 1 us to the next event (2.5 us): its 2 us timer needs no RUN.
    assert [(c["id"], c["runs"]) for c in summary["clients"]] == [(0x11, 2), (0x22, 1)]
    assert summary["sim_time_ns"] == 3000
    assert summary["messages"]["START"]["from_clients"] == 2
    assert summary["wall_s"] > 0
    assert run_log(log) == [(1000, 0x11), (2500, 0x22), (3000, 0x11)]
    assert a.result()["status"] == b.result()["status"] == "ok"
    assert not socket_path.exists()


def test_standalone_calendar_until(clients, socket_path):
    cli = _cli(socket_path, "--clients", "1", "--until", "4500ns")
    a = clients(socket_path, 1, sleeps(*[1000] * 10))
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert "simulated time reached: 4.5 us" in out
    # Free to run up to the stop event at 4.5 us; named with the process behind its socket.
    assert re.search(rf"id 1 \(pid {a.proc.pid}, [^)]+\): 1 runs", out), out
    # The calendar went away: the client's link broke, as a guest's would.
    assert a.proc.wait(timeout=30) != 0
    assert not socket_path.exists()


def test_standalone_calendar_error_is_one_line(clients, socket_path):
    cli = _cli(socket_path, "--clients", "1")
    clients(socket_path, 0x2B, [{"op": "unknown_op", "value": 99}])
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1
    lines = err.strip().splitlines()
    assert re.fullmatch(r"ns3-uml calendar: protocol error: client 43.*unknown op 99", lines[-1])
    assert not socket_path.exists()


def test_standalone_calendar_stops_on_ctrl_c(socket_path):
    cli = _cli(socket_path, "--clients", "1")
    # Interrupt it while it waits for its client, inside the C++ poll loop.
    time.sleep(1.0)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130
    assert "interrupted by SIGINT" in err
    assert not socket_path.exists()


def test_standalone_calendar_takes_clients_without_id(clients, socket_path):
    cli = _cli(socket_path, "--clients", "2")
    a = clients(socket_path, protocol.ID_NONE, sleeps(1000, 1000))
    b = clients(socket_path, protocol.ID_NONE, sleeps(1500))
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    assert a.result()["status"] == b.result()["status"] == "ok"
    # Which connected first is the host's doing: the summary and the warning say so.
    pids = sorted(int(p) for p in re.findall(r"without id #[12] \(pid (\d+)", out))
    assert pids == sorted((a.proc.pid, b.proc.pid)), out
    assert "in the order they connected" in out
    assert re.search(r"ns3-uml: warning: calendar: client without id #2 .*in the order they "
                     r"connected", err), err


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def _exec_comm() -> str:
    """The command name of a reference client: the interpreter it is exec'd as."""
    return Path(sys.executable).name[:15]


@pytest.mark.parametrize("reaped", [False, True], ids=["zombie", "reaped"])
def test_standalone_calendar_names_a_killed_client_as_a_crash(clients, socket_path, tmp_path,
                                                              reaped):
    # Nobody registered its pid: the calendar learnt it from the socket. It is not the
    # calendar's child: its status is read while it is a zombie, or from its pidfd once
    # its parent (here, the test) has reaped it (Linux 6.15; the host runs 6.18).
    cli = _cli(socket_path, "--clients", "2")
    mark = tmp_path / "hanging"
    victim = clients(socket_path, 9, [*sleeps(1000), {"op": "hang", "mark": str(mark)}])
    clients(socket_path, 1, sleeps(*[1000] * 5))
    deadline = time.monotonic() + 60
    while not mark.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    comm = _comm(victim.proc.pid)
    if reaped:
        cli.send_signal(signal.SIGSTOP)  # so that it looks only once the test has reaped it
    victim.proc.send_signal(signal.SIGKILL)  # while it is the running client
    if reaped:
        victim.proc.wait()
        cli.send_signal(signal.SIGCONT)
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        f"ns3-uml calendar: crash error: client 9 (pid {victim.proc.pid}, {comm}): "
        "died: killed by signal 9")


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_nobody_waits_for_the_process_of_a_client_that_left(
        make_calendar, clients, socket_path, shm):
    # Client 3 closes its socket at 1 us and its process lingers; client 4 goes on. The
    # verdict on 3's process comes when it ends or its grace (2 s) is over, and 4's runs do
    # not wait for it meanwhile (they did: the calendar sat out the grace at the departure).
    cal = make_calendar(clients=2, shared_memory=shm)
    ns = cal.ns
    lingers = clients(socket_path, 3, [*sleeps(US), {"op": "exit", "linger": 10}], shm=shm)
    goes_on = clients(socket_path, 4, sleeps(*[US] * 5), shm=shm)
    walls: dict[str, float] = {}

    def mark(name: str) -> Callable[[], None]:
        return lambda: walls.__setitem__(name, time.monotonic())

    keep = [mark("before"), mark("after")]  # cppyy holds no reference
    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(US // 2), keep[0])
    ns.Simulator.Schedule["std::function<void()>"](ns.NanoSeconds(5 * US // 2), keep[1])
    summary = cal.run()
    assert goes_on.result()["timers_fired"] == 5
    assert walls["after"] - walls["before"] < 1.0
    # The run's end waits out the grace, so the summary has both verdicts.
    assert [(c["id"], c["departure"], c["process"]) for c in summary["clients"]] == [
        (3, "left while running", "still runs"),
        (4, "left while running", "exited with status 0"),
    ]
    assert summary["warnings"] == [
        f"client 3 (pid {lingers.proc.pid}, {_exec_comm()}) left while running: it closed "
        "its socket, but its process still runs (a departure, not a crash)"]


def test_standalone_calendar_names_a_client_whose_process_outlives_its_socket(
    clients, socket_path
):
    import json

    cli = _cli(socket_path, "--clients", "2", "--json")
    lingers = clients(socket_path, 3, [*sleeps(1000), {"op": "exit", "linger": 10}])
    ends = clients(socket_path, 4, [*sleeps(1000, 1000), {"op": "exit"}])
    # What they run once exec'd (read now, /proc could still show pytest's fork).
    comms = {3: _exec_comm(), 4: _exec_comm()}
    out, err = cli.communicate(timeout=120)
    assert cli.returncode == 0, err
    summary = json.loads(out)
    assert [(c["id"], c["pid"], c["command"], c["departure"], c["process"])
            for c in summary["clients"]] == [
        (3, lingers.proc.pid, comms[3], "left while running", "still runs"),
        (4, ends.proc.pid, comms[4], "left while running", "exited with status 0"),
    ]
    [warning] = summary["warnings"]
    assert warning == (f"client 3 (pid {lingers.proc.pid}, {comms[3]}) left while running: it "
                       "closed its socket, but its process still runs (a departure, not a "
                       "crash)")
    assert f"ns3-uml: warning: calendar: {warning}" in err
    assert lingers.proc.poll() is None  # still there: cleanup ends it
