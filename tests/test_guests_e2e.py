"""Real UML guests scheduled by the standalone calendar (ns3-uml calendar --clients 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ns3_uml.guest import GuestConfig, GuestProcess, process_group_members
from ns3_uml.protocol import ID_NONE

SLEEPS = {1: 3, 2: 5}  # guest id -> simulated seconds it sleeps


def _start_calendar(socket_path: Path, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ns3_uml", "calendar", "--socket", str(socket_path),
         "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=socket_path.parent,
    )
    for line in proc.stderr:
        if "listening" in line:
            return proc
    raise AssertionError(f"calendar did not start: {proc.communicate()}")


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_two_guests_sleep_in_simulated_time(uml_kernel, tmp_path, shm):
    sock = tmp_path / "cal.sock"
    # A lone guest otherwise runs to its power-off without the calendar hearing of it.
    cal = _start_calendar(sock, "--clients", "2", "--max-free-run", "1ms",
                          *([] if shm else ["--no-shm"]))
    guests = []
    try:
        for gid, seconds in SLEEPS.items():
            cfg = GuestConfig(
                name=f"g{gid}", client_id=gid, tt_socket=sock, workdir=tmp_path / f"g{gid}",
                commands=["cat /proc/uptime", f"sleep {seconds}", "cat /proc/uptime", "date +%s"],
            )
            g = GuestProcess(cfg, kernel=uml_kernel)
            g.start()
            guests.append(g)
        for g in guests:
            assert g.wait(timeout=120) == 0, g.console_log.read_text()
        out, err = cal.communicate(timeout=120)
    finally:
        for g in guests:
            g.kill()
        if cal.poll() is None:
            cal.kill()
            cal.wait()
    assert cal.returncode == 0, err
    summary = json.loads(out)
    assert [c["id"] for c in summary["clients"]] == [1, 2]
    assert all(c["shm"] is shm for c in summary["clients"])
    assert all(c["departure"] == "left while running" for c in summary["clients"])
    end_s = summary["sim_time_ns"] / 1e9
    last_run_s = {c["id"]: c["last_run_ns"] / 1e9 for c in summary["clients"]}
    for g, (gid, seconds) in zip(guests, SLEEPS.items()):
        results = g.read_outputs()
        assert [r.returncode for r in results] == [0, 0, 0, 0]
        before = float(results[0].stdout.split()[0])
        after = float(results[2].stdout.split()[0])
        # The guest's clock is the simulation's: the sleep takes exactly its simulated time,
        # (its idle time equals its uptime: nothing ran on a host clock in between).
        assert after - before == pytest.approx(seconds, abs=0.01)
        # The calendar ran it at most 1 ms apart: its last RUN is its power-off time, just
        # after it printed its uptime.
        assert 0 <= last_run_s[gid] - after < 0.05
        # Its wall clock comes from GET_TOD: the calendar's fixed epoch plus simulated time.
        assert int(results[3].stdout) == pytest.approx(1704067200 + after, abs=1)
        assert not process_group_members(g.pid)
    # The run ends when the last guest powers off, shortly after its sleep.
    assert max(SLEEPS.values()) < end_s < max(SLEEPS.values()) + 2
    assert not sock.exists()


def test_a_guest_without_id_beside_a_client_without_id(uml_kernel, tmp_path, clients):
    # time-travel=ext:PATH (no id): the guest sends START(-1), as the reference client
    # does; both share the calendar, in the order they connected, which the summary says.
    sock = tmp_path / "cal.sock"
    cal = _start_calendar(sock, "--clients", "2", "--max-free-run", "1ms")
    cfg = GuestConfig(name="bare", client_id=0, tt_socket=sock, workdir=tmp_path / "bare",
                      time_travel=f"ext:{sock}", commands=["sleep 1", "cat /proc/uptime"])
    guest = GuestProcess(cfg, kernel=uml_kernel)
    try:
        peer = clients(sock, ID_NONE, [{"op": "repeat", "count": 20,
                                        "steps": [{"op": "sleep", "ns": 10_000_000}]}])
        guest.start()
        assert guest.wait(timeout=120) == 0, guest.console_log.read_text()
        out, err = cal.communicate(timeout=120)
    finally:
        guest.kill()
        if cal.poll() is None:
            cal.kill()
            cal.wait()
    assert cal.returncode == 0, err
    assert peer.result()["status"] == "ok"
    [uptime] = [r for r in guest.read_outputs() if r.command == "cat /proc/uptime"]
    assert uptime.returncode == 0 and float(uptime.stdout.split()[0]) > 1
    summary = json.loads(out)
    entries = {c["pid"]: c for c in summary["clients"]}
    assert set(entries) == {guest.pid, peer.proc.pid}
    assert {c["name"] for c in summary["clients"]} == {"client without id #1",
                                                       "client without id #2"}
    for c in summary["clients"]:
        assert (c["id"], c["ordered_by"], c["departure"], c["process"]) == (
            -1, "connection", "left while running", "exited with status 0")
    assert entries[guest.pid]["runs"] > 1 and entries[guest.pid]["command"]
    [warning] = summary["warnings"]
    assert "in the order they connected" in warning
    assert "ns3-uml: warning: calendar: client without id #2" in err
    assert not sock.exists()
