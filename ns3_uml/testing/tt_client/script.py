"""Scripts for the reference time-travel client: JSON steps run while it runs.

The steps are listed in :mod:`ns3_uml.testing.tt_client` (the command line runs them).  The
error-injection steps (:data:`HOSTILE_OPS`) need a
:class:`~ns3_uml.testing.tt_client.hostile.HostileTTClient`; :func:`needs_hostile` tells.
"""

from __future__ import annotations

import json
import time as _wall
from pathlib import Path
from typing import Any, Iterable

from ns3_uml.protocol import Op
from ns3_uml.testing.tt_client.client import TTClient
from ns3_uml.testing.tt_client.hostile import HostileTTClient

__all__ = ["HOSTILE_OPS", "load_script", "needs_hostile", "run_script"]

#: Script ops that break the protocol on purpose (HostileTTClient only).
HOSTILE_OPS = frozenset(
    {"hang", "raw", "short_and_close", "unknown_op", "send_as_calendar", "wrong_seq_ack",
     "get_storm"})


class _ScriptExit(Exception):
    pass


def run_script(client: TTClient, steps: Iterable[dict[str, Any]]) -> bool:
    """Run script steps on a started client; True if an "exit" step departed."""
    try:
        _run_steps(client, steps)
    except _ScriptExit:
        return True
    return False


def _run_steps(client: TTClient, steps: Iterable[dict[str, Any]]) -> None:
    for step in steps:
        client._irq_point()
        op = step.get("op")
        if op == "get_tod":
            client.get_tod()
        elif op == "sleep":
            client.sleep(int(step["ns"]))
        elif op == "sleep_until":
            client.sleep_until(int(step["t"]))
        elif op == "ndelay":
            client.ndelay(int(step["ns"]))
        elif op == "read_clock":
            for _ in range(int(step.get("count", 1))):
                client.read_clock()
        elif op == "idle":
            client.idle_sleep()
        elif op == "update":
            client.propagate_time()
        elif op == "broadcast":
            client.broadcast(int(step["value"]))
        elif op == "wait_irq":
            client.irq_delay = int(step.get("delay_ns", 0))
            for _ in range(int(step.get("count", 1))):
                client.wait_irq()
        elif op == "kick":
            client.kick()
        elif op == "repeat":
            for _ in range(int(step["count"])):
                _run_steps(client, step["steps"])
        elif op == "exit":
            client.exit_running()
            # A process that outlives its socket (not a UML's poweroff: a bug's behaviour).
            _wall.sleep(float(step.get("linger", 0)))
            raise _ScriptExit
        elif op in HOSTILE_OPS:
            if not isinstance(client, HostileTTClient):
                raise ValueError(f"script op {op!r} needs a HostileTTClient")
            _run_hostile(client, step)
        else:
            raise ValueError(f"unknown script op {op!r}")


def _run_hostile(client: HostileTTClient, step: dict[str, Any]) -> None:
    op = step["op"]
    if op == "hang":
        if "mark" in step:
            Path(step["mark"]).touch()  # tells a test that it hangs now
        seconds = step.get("seconds")
        client.hang(None if seconds is None else float(seconds))
    elif op == "raw":
        client.send_raw(bytes.fromhex(step["hex"]))
    elif op == "short_and_close":
        client.send_short_and_close(int(step.get("bytes", 8)))
        raise _ScriptExit
    elif op == "unknown_op":
        client.send_unknown_op(int(step.get("value", 0x7F)),
                               int(step.get("time", 0)),
                               bool(step.get("wait_ack", True)))
    elif op == "send_as_calendar":
        name = str(step.get("msg", "RUN")).upper()
        client.send_as_calendar(Op[name], step.get("time"))
    elif op == "get_storm":
        client.get_storm(float(step["seconds"]))
    elif op == "wrong_seq_ack":
        client.ack_next_with_wrong_seq(int(step.get("delta", 1)))


def needs_hostile(steps: Iterable[dict[str, Any]]) -> bool:
    """Whether ``steps`` (or a ``repeat`` inside) use an error-injection op."""
    return any(step.get("op") in HOSTILE_OPS
               or (step.get("op") == "repeat" and needs_hostile(step.get("steps", ())))
               for step in steps)


def load_script(text: str | None) -> list[dict[str, Any]]:
    if not text:
        return []
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as fh:
            text = fh.read()
    steps = json.loads(text)
    if not isinstance(steps, list):
        raise ValueError("script must be a JSON list of steps")
    return steps


