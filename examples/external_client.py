"""Programs outside ns3-uml on the simulation's calendar, and a device another process
serves a guest: what a wmediumd user needs, shown with what ns3-uml ships.

Guests alpha and beta ping each other over a point-to-point link of 100 Mbit/s and 5 ms.
Beside them:

* an external time-travel client, ``ticker``: the reference client of ns3-uml's tests
  (``python -m ns3_uml.testing.tt_client``), a process of its own that joins the calendar
  as any UML or usfstl client does and asks to wake every 100 ms. It stands where a device
  simulator such as wmediumd would (``sim.add_client``);
* a virtio-net device that another process serves alpha over vhost-user
  (``ns3_uml.testing.external_device``, ns3-uml's own back-end run on its own), where
  wmediumd's ``-u`` socket would serve an hwsim radio (``alpha.add_vhost_user_device``).

The example fails unless the ticker woke exactly at every 100 ms it asked for, ping
measured the link model's RTT as without it, and alpha found the other process's device
(its MAC) as eth1. With wmediumd built with vhost-user and time-travel support, the same
is (not run here: wmediumd is not a Debian package):

    sim.add_client(["wmediumd", "-c", "wmediumd.cfg", "-t", sim.calendar_socket,
                    "-u", sim.socket_dir / "hwsim.sock"], name="wmediumd")
    alpha.add_vhost_user_device(sim.socket_dir / "hwsim.sock", VIRTIO_ID_MAC80211_HWSIM)

Run:  python examples/external_client.py [WORKDIR]   (default: runs/external_client)
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time

import ns3_uml as nu
from ns3_uml.external import listening_problem
from ns3_uml.vhost_protocol import VIRTIO_ID_NET

TICK_NS = 100_000_000
TICKS = 20
DEVICE_MAC = "02:ee:00:00:00:01"
# The link model's RTT for ping: 2 x 5 ms + 2 x 86 bytes at 100 Mbit/s (examples/demo.py).
PREDICTED_RTT_MS = 10.01376
TOLERANCE_MS = 0.021


def start_device(socket: str) -> subprocess.Popen[str]:
    """The other process that serves alpha's device, listening once this returns."""
    device = subprocess.Popen(
        [sys.executable, "-m", "ns3_uml.testing.external_device", "--socket", socket,
         "--mac", DEVICE_MAC], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while listening_problem(socket) is not None:
        if device.poll() is not None or time.monotonic() > deadline:
            device.kill()
            sys.exit(f"the device process did not start: {device.communicate()[1]}")
        time.sleep(0.05)
    return device


def main(workdir: str) -> None:
    with nu.Simulation(workdir=workdir, seed=1) as sim:
        alpha = sim.add_node("alpha")
        beta = sim.add_node("beta")
        sim.point_to_point(alpha, beta, rate="100Mbps", delay="5ms")
        alpha.run(f"ping -c 5 -i 0.2 {beta.ip}")
        alpha.run("ip -o link show eth1")

        ticks = sim.workdir / "ticker.json"
        steps = [{"op": "repeat", "count": TICKS, "steps": [{"op": "sleep", "ns": TICK_NS}]}]
        ticker = sim.add_client(
            [sys.executable, "-m", "ns3_uml.testing.tt_client", "--socket",
             sim.calendar_socket, "--id", "1000", "--script", json.dumps(steps),
             "--out", ticks], name="ticker", client_id=1000)

        socket = str(sim.socket_dir / "net.sock")
        device = start_device(socket)
        try:
            alpha.add_vhost_user_device(socket, VIRTIO_ID_NET)
            sim.run(until="3s")
            ping, link = alpha.result("ping"), alpha.result("ip")
        finally:
            device.send_signal(signal.SIGTERM)
            device.communicate(timeout=30)
    # The ticker wrote its log when it left (after its last tick).
    woke = [e["calendar"] for e in json.loads(ticks.read_text())["log"]
            if e["event"] == "timer"]

    print(f"ticker (client {ticker.client_id}) woke at (ms):",
          " ".join(f"{t / 1e6:g}" for t in woke))
    print(ping.stdout.rstrip())
    print("alpha's device from the other process:", link.stdout.strip())
    rtts = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/", ping.stdout)
    checks = {
        "the ticker woke exactly when it asked":
            woke == [TICK_NS * k for k in range(1, TICKS + 1)],
        "ping measured the link model's RTT":
            ping.returncode == 0 and rtts is not None
            and all(abs(float(x) - PREDICTED_RTT_MS) <= TOLERANCE_MS for x in rtts.groups()),
        "alpha has the other process's device as eth1":
            link.returncode == 0 and f"link/ether {DEVICE_MAC} " in link.stdout,
    }
    for what, ok in checks.items():
        print(f"{'OK' if ok else 'FAILED'}: {what}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/external_client")
    main(parser.parse_args().workdir)
