"""``ns3-uml demo``: two real Linux guests on ns-3's clock, end to end, on defaults."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from .calendar import Calendar
from .guest import GuestConfig, GuestProcess
from .kernel import ensure_kernel

GUESTS = {
    "alpha": ["uname -sr", "cat /proc/uptime", "sleep 2", "cat /proc/uptime"],
    "beta": ["sleep 5", "date -u +%FT%TZ", "cat /proc/uptime"],
}


def run_demo(workdir: Path, out=sys.stdout) -> int:
    """Boot the two guests under the calendar, print what they printed; 0 on success."""
    kernel = ensure_kernel(progress=True)
    workdir.mkdir(parents=True, exist_ok=True)
    # Unix socket paths are limited to 107 bytes: keep the socket in a short private dir.
    with tempfile.TemporaryDirectory(prefix="ns3-uml-") as sockdir:
        sock = Path(sockdir) / "calendar.sock"
        wall = time.monotonic()
        guests: list[GuestProcess] = []
        # max_free_run: the calendar hears from a lone guest every 10 ms, so the simulated
        # time it reports is where the guests really got to.
        with Calendar(sock, clients=len(GUESTS), max_free_run="10ms") as cal:
            try:
                for client_id, (name, commands) in enumerate(GUESTS.items(), start=1):
                    cfg = GuestConfig(name=name, client_id=client_id, tt_socket=sock,
                                      workdir=workdir / name, commands=commands)
                    guest = GuestProcess(cfg, kernel=kernel)
                    guest.start()
                    cal.register_process(client_id, guest.pid)
                    guests.append(guest)
                summary = cal.run()
                for guest in guests:
                    guest.wait(timeout=60)
            finally:
                for guest in guests:
                    guest.kill()
        wall = time.monotonic() - wall
    status = 0
    for guest in guests:
        print(f"--- {guest.cfg.name} (console: {guest.console_log})", file=out)
        for result in guest.read_outputs():
            print(f"$ {result.command}    [exit {result.returncode}, "
                  f"t={result.start:.3f}..{result.end:.3f} s]", file=out)
            print(result.stdout.rstrip(), file=out)
            status |= result.returncode != 0
    print(f"simulated time: {summary['sim_time_ns'] / 1e9:.3f} s, wall time: {wall:.2f} s, "
          f"hand-offs: {summary['handoffs']}", file=out)
    return status
