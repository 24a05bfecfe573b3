"""``python -m ns3_uml.testing.external_device --socket PATH --mac MAC``: a virtio-net
device served over vhost-user by a process of its own, as wmediumd serves hwsim radios:
the stand-in for a device another program serves a guest (``add_vhost_user_device``).

It is ns3-uml's own back-end (``VirtioNetDevice``) with a scheduler of its own
(``standalone_scheduler``), outside any Simulation. It answers the guest's negotiation,
config reads (the MAC given) and kicks, but processes no frames: its ns-3 events never
run, so it never interrupts the guest (only a time-travel client of the calendar could do
that at a simulated time). So it shows a guest probing a device another process serves,
not a medium. It serves until SIGTERM or SIGINT, then prints a JSON summary (kicks, calls,
the negotiated features, whether a guest is still connected) and exits 0; on a device
error, the message on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

__all__ = ["main"]

#: How long one serve lasts (ms) before the loop looks for a signal.
_SERVE_MS = 50


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ns3_uml.testing.external_device",
                                     description="A virtio-net device served on its own.")
    parser.add_argument("--socket", required=True, help="vhost-user socket to listen on")
    parser.add_argument("--mac", required=True, help="the device's MAC (config space)")
    parser.add_argument("--client-id", type=int, default=0,
                        help="the id its errors name the guest by")
    args = parser.parse_args(argv)

    stop = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)

    from ns3_uml import _native
    from ns3_uml.testing.standalone_scheduler import standalone_scheduler

    ns = _native.load()
    ns.GlobalValue.Bind("SimulatorImplementationType",
                        ns.StringValue("ns3::DefaultSimulatorImpl"))
    scheduler = standalone_scheduler()
    sched = scheduler.Make()
    dev = ns.CreateObject["ns3::VirtioNetDevice"]()
    dev.SetAttribute("SocketPath", ns.StringValue(args.socket))
    dev.SetAttribute("ClientId", ns.UintegerValue(args.client_id))
    dev.SetMac(ns.Mac48Address(args.mac))
    dev.SetScheduler(scheduler.AsScheduler(sched))
    try:
        dev.Listen()
        while not stop:
            sched.ServeFor(_SERVE_MS)
    except _native.error_class() as exc:
        print(f"external_device: {exc.what()}", file=sys.stderr)
        return 1
    finally:
        summary = {"kicks": int(dev.GetKickCount()), "calls": int(dev.GetCallCount()),
                   "features": int(dev.GetNegotiatedFeatures()),
                   "connected": bool(dev.IsConnected())}
        dev.Dispose()  # closes the sockets and removes the socket file
        ns.Simulator.Destroy()
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
