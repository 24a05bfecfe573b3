"""Hand-off cost of the calendar with reference clients: message mode vs shared memory.

A hand-off is one RUN -> WAIT cycle (the calendar grants a client time, the client yields).
Each client sleeps a fixed period K times; free running is capped at 1 ns (max_free_run) so
that every wake-up is a hand-off, and every period all N clients run once, in id order.
The wall time runs from simulated 0 to just after the last wake-up. Prints a table and
writes JSON (--json). The reference clients are Python processes, so the absolute figures
include their own cost; the shm/message ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit

import ns3_uml
from ns3_uml import protocol

PERIOD_NS = 1_000_000


def one_run(n_clients: int, wakeups: int, shm: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as tmp:
        sock = Path(tmp) / "cal.sock"
        cal = ns3_uml.Calendar(sock, clients=n_clients, shared_memory=shm, max_free_run="1ns")
        ns = cal.ns
        steps = [{"op": "repeat", "count": wakeups, "steps": [{"op": "sleep", "ns": PERIOD_NS}]}]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "ns3_uml.testing.tt_client", "--socket", str(sock),
                 "--id", str(i + 1), "--script", json.dumps(steps), "--out", f"{tmp}/{i}.json"]
                + ([] if shm else ["--no-shm"]),
                cwd=tmp,
            )
            for i in range(n_clients)
        ]
        mark: dict = {}

        def start() -> None:  # runs at t=0, after every client has connected and yielded
            mark["t"] = time.perf_counter()
            mark["msgs"] = total_messages(cal)
            mark["handoffs"] = int(cal.impl.GetHandoffCount())

        def end() -> None:  # just after the last wake-up, whose run each client leaves in
            mark["wall"] = time.perf_counter() - mark["t"]
            mark["msgs_end"] = total_messages(cal)
            mark["handoffs_end"] = int(cal.impl.GetHandoffCount())

        schedule = ns.Simulator.Schedule["std::function<void()>"]
        schedule(ns.Seconds(0), start)
        # Not at run()'s return: that waits for the clients' processes to end (docs/DESIGN.md
        # rule 9), which is Python's teardown, not a hand-off.
        schedule(ns.NanoSeconds(wakeups * PERIOD_NS + 1), end)
        try:
            summary = cal.run()
            wall = mark["wall"]
            msgs = mark["msgs_end"] - mark["msgs"]
        finally:
            cal.close()
            for p in procs:
                p.wait(timeout=60)
    handoffs = mark["handoffs_end"] - mark["handoffs"]
    return {
        "handoffs": handoffs,
        "wall_s": wall,
        "us_per_handoff": wall / handoffs * 1e6,
        "messages_per_handoff": msgs / handoffs,
        "sim_s": summary["sim_time_ns"] / 1e9,
    }


def total_messages(cal: ns3_uml.Calendar) -> int:
    return sum(
        int(cal.impl.GetMessageCount(op, from_client))
        for op in range(len(protocol.Op) + 1)
        for from_client in (True, False)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--handoffs", type=int, default=3000, help="per configuration")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    results = []
    for n in args.clients:
        wakeups = max(10, args.handoffs // n)
        row = {"clients": n, "wakeups_per_client": wakeups}
        for shm in (False, True):
            runs = [one_run(n, wakeups, shm) for _ in range(args.repeats)]
            mode = "shm" if shm else "messages"
            row[mode] = {
                "us_per_handoff_median": statistics.median(r["us_per_handoff"] for r in runs),
                "us_per_handoff_all": [round(r["us_per_handoff"], 1) for r in runs],
                "messages_per_handoff": statistics.median(r["messages_per_handoff"] for r in runs),
                "handoffs": runs[0]["handoffs"],
            }
        row["shm_over_messages_wall"] = (
            row["shm"]["us_per_handoff_median"] / row["messages"]["us_per_handoff_median"]
        )
        results.append(row)
        print(
            f"{n:>3} clients: messages {row['messages']['us_per_handoff_median']:7.1f} us, "
            f"{row['messages']['messages_per_handoff']:4.1f} msg | shm "
            f"{row['shm']['us_per_handoff_median']:7.1f} us, "
            f"{row['shm']['messages_per_handoff']:4.1f} msg | shm/messages wall "
            f"{row['shm_over_messages_wall']:.2f}",
            flush=True,
        )
    out = {"benchmark": "calendar_handoff", "period_ns": PERIOD_NS, "results": results}
    emit(out, args.json)


if __name__ == "__main__":
    main()
