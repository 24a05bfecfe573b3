"""A fake guest for the console device: the reference virtio-console driver and time-travel
client in one process, driven by a JSON script (as ``fake_guest`` does for virtio-net):

    python -m ns3_uml.testing.fake_console_guest --calendar SOCK --vhost SOCK --id ID
        --script JSON --out FILE

Device calls are time-travel interrupts, as in ``fake_guest`` (its ``GuestTT``). Steps:

* ``{"op": "sleep", "ns": N}``
* ``{"op": "connect"}``: probe (features, config, queues, DEVICE_READY)
* ``{"op": "wait_port"}``: idle until the handshake is done (PORT_ADD, NAME, OPEN)
* ``{"op": "open"}``, ``{"op": "close_port"}``: the agent opens / closes the port
* ``{"op": "write", "data": HEX}``: one ``write()`` per 32 KiB
* ``{"op": "wait_bytes", "count": K}``: idle until K bytes were read from the port in all
* ``{"op": "exit"}``: power off

The JSON result has ``status``, ``rx`` (calendar time and hex of what each call brought),
``tx`` (calendar time of every write step) and the driver's ``result()``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ns3_uml.testing.fake_guest import GuestTT, finish_script, run_script, script_parser
from ns3_uml.testing.vhost_frontend.console import VhostUserConsole
from ns3_uml.testing.vhost_frontend.ring import SplitQueue


class GuestConsole(VhostUserConsole):
    """Records the calendar time of what every call brought to the port's reader."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rx_log: list[dict[str, Any]] = []

    def _in_intr(self, vq: SplitQueue) -> None:
        before = len(self.port_data)
        super()._in_intr(vq)
        if len(self.port_data) > before:
            assert self.tt is not None
            self.rx_log.append({"t": self.tt.calendar_time(),
                                "data": self.port_data[before:].hex()})


def run(args: argparse.Namespace, steps: list[dict[str, Any]], out: dict[str, Any]) -> None:
    tt = GuestTT(args.calendar, args.id, use_shm=True, offset=0, timeout=30.0)
    fe = GuestConsole(args.vhost, mem_size=16 << 20, tt=tt, timeout=10.0)
    tt.fe = fe  # type: ignore[assignment] - GuestTT only uses the connection's interface
    out["_fe"], out["_tt"] = fe, tt
    tt.start()
    for step in steps:
        op = step["op"]
        if op == "sleep":
            tt.sleep(int(step["ns"]))
        elif op == "connect":
            fe.connect()
        elif op == "wait_port":
            while not fe.port_ready:
                tt.idle_sleep()
        elif op == "open":
            fe.open()
        elif op == "close_port":
            fe.close_port()
        elif op == "write":
            out["tx"].append({"t": tt.calendar_time()})
            fe.write_all(bytes.fromhex(step["data"]))
        elif op == "wait_bytes":
            while sum(len(e["data"]) // 2 for e in fe.rx_log) < int(step["count"]):
                tt.idle_sleep()
        elif op == "exit":
            break
        else:
            raise ValueError(f"unknown step {op!r}")
    tt.exit_running()


def main() -> int:
    """Command line entry point; returns the exit status."""
    args = script_parser("python -m ns3_uml.testing.fake_console_guest", __doc__).parse_args()
    out: dict[str, Any] = {"rx": [], "tx": []}
    status, code = run_script(run, args, out)
    fe: GuestConsole | None = out.pop("_fe", None)
    tt: GuestTT | None = out.pop("_tt", None)
    out["status"] = status
    if fe is not None:
        out["fe"] = fe.result()
        out["rx"] = fe.rx_log
        fe.close(teardown=False)
    finish_script(tt, out, args.out)
    return code


if __name__ == "__main__":
    sys.exit(main())
