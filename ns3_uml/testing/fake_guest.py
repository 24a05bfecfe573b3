"""A fake guest for vhost-user back-ends: the reference front-end and time-travel client.

The reference vhost-user front-end coupled to the reference time-travel client in one
process, driven by a JSON script, as a UML guest's virtio-net interface would be:

    python -m ns3_uml.testing.fake_guest --calendar SOCK --vhost SOCK --id ID --script JSON
        --out FILE [--no-shm] [--initial-index N] [--queue-size N] [--protocol-mask M]
        [--features F]

``--features`` adds device features to accept (e.g. the offloads, to send GSO frames with
hand-made headers through ``chain`` steps).

Like UML, the front-end only talks to its device while the client runs (a kick is preceded by
propagate_time), and device interrupts (VRING_CALL on the backend channel) are taken as
time-travel IRQs: while waiting for RUN the channel is watched with the time socket, each call
costs a GET and a REQUEST(now) before it is acknowledged, and the vring work runs when the
interrupt event fires (at the same simulated time). Steps run in order while running:

* ``{"op": "sleep", "ns": N}``, ``{"op": "sleep_until", "t": T}``
* ``{"op": "connect", "open": true}``, ``{"op": "open"}``, ``{"op": "close"}``,
  ``{"op": "reconnect"}`` (close, then a new front-end with fresh memory connects)
* ``{"op": "disable_rx_cb"}`` (VRING_AVAIL_F_NO_INTERRUPT on RX), ``{"op": "rx_poll"}`` (NAPI)
* ``{"op": "send", "frames": [HEX...], "chain": [LEN...]}``: one kick for all of them
* ``{"op": "post_rx_chain", "lengths": [LEN...]}``: one RX buffer over several descriptors
* ``{"op": "wait_frames", "count": K}``: idle until K frames were received in all
* ``{"op": "read_config", "offset": O, "length": L}``
* ``{"op": "hostile", "name": "corrupt_tx_chain_loop", "args": {...}}``: a hostile helper
* ``{"op": "raw", "request": R, "payload": HEX, "flags": F, "size": S, "mem_fds": N,
  "timeout": S, "expect_reply": B}``: one raw message (``mem_fds`` copies of the memory fd)
* ``{"op": "chain", "queue": Q, "specs": [{"addr": A|"buf", "len": L, "flags": F, "data": HEX,
  "next": N, "to": POS}...], "kick": true}``: a hand-made chain, published and (unless
  ``kick`` is false) kicked (``"buf"``: a fresh 64-byte buffer; ``data``: a fresh buffer
  holding these bytes)
* ``{"op": "poke", "addr": A, "data": HEX}``: write guest memory
* ``{"op": "shrink_memory", "size": S, "kick": Q}``: truncate the memory file to S bytes
  behind the device's back, then kick queue Q (if given) without touching the memory
* ``{"op": "mem_table", "size_delta": D}``: SET_MEM_TABLE again (region size changed by D)
* ``{"op": "flood", "count": N}``: N GET_FEATURES whose replies are never read
* ``{"op": "hang", "seconds": S}``: stop doing anything for a while (wall clock)
* ``{"op": "deaf"}``: from now on never read the backend channel (calls stay unanswered)
* ``{"op": "shutdown_vhost"}``: end our side of the vhost-user socket (EOF for the device)
* ``{"op": "exit"}``: power off (close the time socket while running)

The JSON result has ``status`` ("ok" or the error), ``rx`` (calendar time and hex of every
received frame), ``tx`` (calendar time of every send step), ``hostile`` outcomes, ``config``
reads, the front-end's ``result()`` and ring indices. Never imports ns-3.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ns3_uml.testing.tt_client import TTClient, TTLinkBroken, TTPanic, TTTimeout
from ns3_uml.testing.vhost_frontend import (
    DEFAULT_ACCEPTED_FEATURES,
    HostileFrontend,
    HostileResult,
    PostedChain,
    VhostFrontendError,
    VhostTimeout,
)
from ns3_uml.vhost_protocol import (
    UML_PROTOCOL_FEATURES,
    UML_QUEUE_SIZE,
    VHOST_USER_FLAG_NEED_REPLY,
    VHOST_USER_VERSION,
)

class GuestTT(TTClient):
    """A TTClient whose SIGIO path also serves the front-end's backend channel."""

    fe: "GuestFrontend | None" = None
    deaf = False  # never read the backend channel (a guest that ignores its device)

    def _backend_channel(self) -> socket.socket | None:
        fe = self.fe
        if fe is None or self.deaf:
            return None
        return fe.backend_channel

    def _service_backend(self) -> None:
        # vu_req_read_message() as a time-travel IRQ handler: read, GET + REQUEST, ack.
        fe = self.fe
        assert fe is not None
        self._in_irq = True
        try:
            fe.read_backend_messages(ev=True)
        finally:
            self._in_irq = False
        if fe.backend_channel_failed:
            fe.deliver_interrupt()  # connection error: raises at once, like UML's handler

    def _idle_poll(self) -> None:
        req = self._backend_channel()
        if req is None or self._in_irq or self._signals_blocked:
            super()._idle_poll()
            return
        sock = self._require_sock()
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        poller.register(req, select.POLLIN)
        timeout = None if self.timeout is None else self.timeout * 1000.0
        while True:
            ready = poller.poll(timeout)
            if not ready:
                raise TTTimeout(f"no message from the calendar in {self.timeout} s")
            if any(fd == sock.fileno() for fd, _ in ready):
                return
            self._service_backend()
            if self._backend_channel() is None:
                self._wait_time_readable()
                return

    def _irq_point(self) -> None:
        super()._irq_point()
        req = self._backend_channel()
        if req is None or self._in_irq or self._signals_blocked or self.closed:
            return
        if select.select([req], [], [], 0)[0]:
            self._service_backend()

    def _irq_fired(self, event: Any) -> None:
        super()._irq_fired(event)
        if self.fe is not None:
            self.fe.deliver_interrupt()  # the vring callbacks run when the IRQ event fires


class GuestFrontend(HostileFrontend):
    """Records the calendar time of every received frame."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rx_log: list[dict[str, Any]] = []

    def _receive_buf(self, chain: PostedChain, length: int) -> None:
        before = len(self._rx_frames)
        super()._receive_buf(chain, length)
        if len(self._rx_frames) > before:
            assert self.tt is not None
            self.rx_log.append({"t": self.tt.calendar_time(),
                                "frame": self._rx_frames[-1].hex()})

    def post_rx_chain(self, lengths: list[int]) -> int:
        """One writable buffer, contiguous in memory, described by several descriptors."""
        total = sum(lengths)
        addr = self.mem.alloc(total)
        segments, pos = [], addr
        for n in lengths:
            segments.append((pos, n, True))
            pos += n
        head = self.rxq.add(segments, PostedChain("rx", [], [(addr, total)], [total]))
        self.kick(0)
        return head


def _hostile_record(res: HostileResult) -> dict[str, Any]:
    details = {k: v for k, v in res.details.items() if k != "written"}
    reply = None
    if res.reply is not None:
        request, flags, size, payload = res.reply
        reply = [request, flags, size, payload.hex()]
    return {"name": res.name, "outcome": res.outcome, "head": res.head, "reply": reply,
            "details": json.loads(json.dumps(details, default=str))}


def run(args: argparse.Namespace, steps: list[dict[str, Any]], out: dict[str, Any]) -> None:
    tt = GuestTT(args.calendar, args.id, use_shm=not args.no_shm, offset=0, timeout=30.0)

    def frontend() -> GuestFrontend:
        return GuestFrontend(args.vhost, mem_size=16 << 20, tt=tt, timeout=10.0,
                             queue_size=args.queue_size, initial_index=args.initial_index,
                             protocol_features=args.protocol_mask,
                             features=DEFAULT_ACCEPTED_FEATURES | args.features,
                             strict=args.protocol_mask == UML_PROTOCOL_FEATURES)

    fe = frontend()
    tt.fe = fe
    out["_fe"], out["_tt"] = fe, tt
    tt.start()
    for step in steps:
        op = step["op"]
        if op == "sleep":
            tt.sleep(int(step["ns"]))
        elif op == "sleep_until":
            tt.sleep_until(int(step["t"]))
        elif op == "connect":
            fe.connect(open=bool(step.get("open", True)))
        elif op == "open":
            fe.open()
        elif op == "close":
            fe.close()
        elif op == "reconnect":
            # a new front-end (fresh memory and rings) on the same device, as after a reboot
            fe.close()
            old, fe = fe, frontend()
            fe.rx_log = old.rx_log
            tt.fe = fe
            out["_fe"] = fe
            fe.connect()
        elif op == "disable_rx_cb":
            fe.rxq.disable_cb()
        elif op == "rx_poll":
            fe.napi_poll()
        elif op == "send":
            frames = [bytes.fromhex(f) for f in step["frames"]]
            t = tt.calendar_time()
            heads = fe.send_frames(frames, chain=step.get("chain"))
            out["tx"].append({"t": t, "heads": heads})
        elif op == "post_rx_chain":
            fe.post_rx_chain([int(n) for n in step["lengths"]])
        elif op == "wait_frames":
            while len(fe.rx_log) < int(step["count"]):
                tt.idle_sleep()
        elif op == "read_config":
            data = fe.read_config(int(step["offset"]), int(step["length"]))
            out["config"].append(None if data is None else data.hex())
        elif op == "hostile":
            res = getattr(fe, step["name"])(**step.get("args", {}))
            out["hostile"].append(_hostile_record(res))
        elif op == "raw":
            flags = step.get("flags", VHOST_USER_VERSION | VHOST_USER_FLAG_NEED_REPLY)
            res = fe.raw_request(int(step["request"]), bytes.fromhex(step.get("payload", "")),
                                  flags=flags, size=step.get("size"),
                                  fds=[fe.mem.fd] * int(step.get("mem_fds", 0)),
                                  expect_reply=bool(step.get("expect_reply", True)),
                                  timeout=float(step.get("timeout", 1.0)))
            out["hostile"].append(_hostile_record(res))
        elif op == "chain":
            specs = []
            for spec in step["specs"]:
                spec = dict(spec)
                if "data" in spec:
                    data = bytes.fromhex(spec.pop("data"))
                    spec["addr"] = fe.mem.alloc(len(data))
                    fe.mem.write(spec["addr"], data)
                    spec.setdefault("len", len(data))
                elif spec.get("addr") == "buf":
                    spec["addr"] = fe.payload_buf(64)
                spec.setdefault("flags", 0)
                specs.append(spec)
            res = fe.hostile_chain("chain", int(step.get("queue", 1)), specs,
                                    kick=bool(step.get("kick", True)), timeout=None)
            out["hostile"].append(_hostile_record(res))
        elif op == "poke":
            fe.mem.write(int(step["addr"]), bytes.fromhex(step["data"]))
        elif op == "shrink_memory":
            kick = step.get("kick")
            res = fe.shrink_memory(int(step["size"]), kick=None if kick is None else int(kick))
            out["hostile"].append(_hostile_record(res))
        elif op == "mem_table":
            out["hostile"].append({"name": "mem_table",
                                   "outcome": fe.send_mem_table_resized(int(step["size_delta"]))})
        elif op == "flood":
            sent = fe.flood(int(step["count"]))
            out["hostile"].append({"name": "flood", "outcome": f"{sent} sent"})
        elif op == "deaf":
            tt.deaf = True
        elif op == "hang":
            time.sleep(float(step["seconds"]))
        elif op == "shutdown_vhost":
            fe.shutdown_front()
        elif op == "exit":
            tt.exit_running()
            return
        else:
            raise ValueError(f"unknown step {op!r}")
    tt.exit_running()


def script_parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """The options every fake guest takes (calendar, vhost socket, id, script, out)."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--calendar", required=True)
    parser.add_argument("--vhost", required=True)
    parser.add_argument("--id", type=lambda s: int(s, 0), required=True)
    parser.add_argument("--script", required=True)
    parser.add_argument("--out", required=True)
    return parser


def run_script(run: Callable[[argparse.Namespace, list[dict[str, Any]], dict[str, Any]], None],
               args: argparse.Namespace, out: dict[str, Any]) -> tuple[str, int]:
    """Run a fake guest's script: (status, exit code), "ok" and 0 when it went through."""
    try:
        run(args, json.loads(args.script), out)
    except TTLinkBroken as exc:
        return f"link broken: {exc}", 2
    except (TTPanic, TTTimeout, VhostFrontendError, VhostTimeout, OSError) as exc:
        return f"{type(exc).__name__}: {exc}", 3
    except Exception as exc:  # noqa: BLE001 - reported to the test
        return f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", 1
    return "ok", 0


def finish_script(tt: TTClient | None, out: dict[str, Any], path: str) -> None:
    """The time-travel client's record into ``out``, the client closed, ``out`` written."""
    if tt is not None:
        out["tt"] = {"runs": tt.runs, "irqs": tt.irqs, "warnings": tt.warnings,
                     "final_time": tt.calendar_time()}
        tt.close()
    Path(path).write_text(json.dumps(out))


def main() -> int:
    """Command line entry point; returns the exit status."""
    parser = script_parser("python -m ns3_uml.testing.fake_guest", __doc__)
    parser.add_argument("--no-shm", action="store_true")
    parser.add_argument("--initial-index", type=int, default=0)
    parser.add_argument("--queue-size", type=int, default=UML_QUEUE_SIZE)
    parser.add_argument("--protocol-mask", type=lambda s: int(s, 0),
                        default=UML_PROTOCOL_FEATURES)
    parser.add_argument("--features", type=lambda s: int(s, 0), default=0,
                        help="device features to accept beyond the defaults "
                             "(EVENT_IDX, offloads)")
    args = parser.parse_args()
    out: dict[str, Any] = {"rx": [], "tx": [], "hostile": [], "config": []}
    status, code = run_script(run, args, out)
    fe: GuestFrontend | None = out.pop("_fe", None)
    tt: GuestTT | None = out.pop("_tt", None)
    out["status"] = status
    if fe is not None:
        out["fe"] = fe.result()
        out["rx"] = fe.rx_log
        out["rx_headers"] = [list(h) for h in fe.rx_headers]
        out["rings"] = [{"avail_idx": q.avail_idx_shadow, "last_used_idx": q.last_used_idx,
                         "num_free": q.num_free} for q in fe.queues]
        fe.close(teardown=False)
    finish_script(tt, out, args.out)
    return code


if __name__ == "__main__":
    sys.exit(main())
