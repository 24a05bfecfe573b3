"""``python -m ns3_uml.testing.tt_client``: one scripted client (see the package's doc)."""

from __future__ import annotations

import argparse
import json
import socket
import sys

from ns3_uml.testing.tt_client.client import DEFAULT_ID, TTClient
from ns3_uml.testing.tt_client.connection import U64_MASK
from ns3_uml.testing.tt_client.errors import TTPanic, TTTimeout
from ns3_uml.testing.tt_client.hostile import HostileTTClient
from ns3_uml.testing.tt_client.script import load_script, needs_hostile, run_script

__all__ = ["main"]


def _parse_id(text: str) -> int:
    """Parse like kstrtoull(s, 0): 0x.. hex, 0.. octal, else decimal."""
    text = text.strip()
    if len(text) > 1 and text[0] == "0" and text[1].isdigit():
        return int(text, 8)
    value = int(text, 0)
    if not 0 <= value <= U64_MASK:
        raise ValueError(f"id {text} out of range")
    return value


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ns3_uml.testing.tt_client",
        description="UM time-travel client behaving like a UML 6.12 guest.")
    parser.add_argument("--socket", required=True, help="calendar socket path")
    parser.add_argument("--id", default=str(DEFAULT_ID),
                        help="START id (base auto-detected, e.g. 0x1a)")
    parser.add_argument("--no-shm", action="store_true",
                        help="do not use shared memory even if offered")
    parser.add_argument("--script", help="JSON list of steps, or @file")
    parser.add_argument("--out", help="write the JSON result here (default stdout)")
    parser.add_argument("--irq-socket", help="socket path delivering interrupts")
    parser.add_argument("--irq-fd", type=int, default=None,
                        help="inherited stream socket delivering interrupts")
    parser.add_argument("--device-fd", type=int, default=None,
                        help="inherited stream socket to a device another client serves")
    parser.add_argument("--offset", type=int, default=None,
                        help="calendar time at START, if known (message mode)")
    parser.add_argument("--tod-start", type=int, default=None,
                        help="like time-travel-start=: no GET_TOD at boot")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up if the calendar is silent this long (s)")
    args = parser.parse_args(argv)

    try:
        steps = load_script(args.script)
        client_id = _parse_id(args.id)
    except (OSError, ValueError) as exc:
        print(f"tt_client: bad arguments: {exc}", file=sys.stderr)
        return 1

    # a well-behaved script gets a plain client, so that it cannot break the protocol
    cls = HostileTTClient if needs_hostile(steps) else TTClient
    irq = args.irq_socket if args.irq_fd is None else socket.socket(fileno=args.irq_fd)
    device = None if args.device_fd is None else socket.socket(fileno=args.device_fd)
    client = cls(args.socket, client_id, use_shm=not args.no_shm,
                 irq=irq, device=device, tod_start=args.tod_start,
                 offset=args.offset, timeout=args.timeout)
    status, error = 0, None
    try:
        client.start()
        run_script(client, steps)
        if not client.closed:
            client.exit_running()
    except TTPanic as exc:
        status, error = 2, f"panic: {exc}"
    except TTTimeout as exc:
        status, error = 3, f"timeout: {exc}"
    except (OSError, ValueError, KeyError) as exc:
        status, error = 1, f"error: {exc}"
    finally:
        client.close()
    if error is not None:
        print(f"tt_client[{args.id}]: {error}", file=sys.stderr)

    result = client.result()
    result["status"] = "ok" if status == 0 else error
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        print(text)
    return status


if __name__ == "__main__":
    sys.exit(main())
