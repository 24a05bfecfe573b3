"""The ``ns3-uml`` command (also ``python -m ns3_uml``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from .units import format_time, parse_time


def _kernel(args: argparse.Namespace) -> int:
    from . import kernel  # noqa: PLC0415

    try:
        if args.action == "build":
            path = kernel.build_kernel(force=args.force, progress=not args.quiet)
        else:
            found = kernel.find_kernel()
            if found is None:
                print(
                    "ns3-uml kernel: no kernel built yet: run 'ns3-uml kernel build'",
                    file=sys.stderr,
                )
                return 1
            path = found
    except kernel.KernelBuildError as exc:
        print(f"ns3-uml kernel: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _agent(args: argparse.Namespace) -> int:
    from .guest import agent  # noqa: PLC0415

    try:
        if args.action == "build":
            path: Path | None = agent.build_agent(force=args.force)
        else:
            path = agent.find_agent()
    except agent.AgentBuildError as exc:
        print(f"ns3-uml agent: {exc}", file=sys.stderr)
        return 1
    if path is None:
        print("ns3-uml agent: no agent built yet: run 'ns3-uml agent build'", file=sys.stderr)
        return 1
    print(path)
    return 0


def _print_summary(summary: dict, out=sys.stdout) -> None:
    clients = summary["clients"]
    print(f"clients: {len(clients)}", file=out)
    for c in clients:
        mode = "shared memory" if c["shm"] else "messages"
        who = f"id {c['id']}" if c["ordered_by"] == "id" else c["name"].removeprefix("client ")
        if c["pid"] > 0:
            who += f" (pid {c['pid']}" + (f", {c['command']})" if c["command"] else ")")
        left = "; ".join(x for x in (c["departure"], c["process"] and f"process: {c['process']}")
                         if x)
        print(f"  {who}: {c['runs']} runs, {mode}, {c['state']}" + (f" ({left})" if left else ""),
              file=out)
    if any(c["ordered_by"] == "connection" for c in clients):
        print("  (the clients without an id come after the others at the same time, among "
              "themselves in the order they connected: give each an id for a repeatable order)",
              file=out)
    print("messages (from clients / to clients):", file=out)
    for op, counts in summary["messages"].items():
        print(f"  {op:<10} {counts['from_clients']:>10} {counts['to_clients']:>10}", file=out)
    print(f"hand-offs: {summary['handoffs']}", file=out)
    print(f"simulated time reached: {format_time(summary['sim_time_ns'])}", file=out)
    print(f"wall time: {summary['wall_s']:.3f} s", file=out)


def _calendar(args: argparse.Namespace) -> int:
    import json  # noqa: PLC0415

    from .calendar import Calendar, CalendarError  # noqa: PLC0415

    try:
        for value in (args.until, args.max_free_run):
            if value is not None:
                parse_time(value)
    except ValueError as exc:
        print(f"ns3-uml calendar: {exc}", file=sys.stderr)
        return 2
    start = time.monotonic()
    try:
        with Calendar(
            args.socket,
            clients=args.clients,
            shared_memory=not args.no_shm,
            tod_epoch_ns=args.tod_epoch,
            yield_timeout=args.yield_timeout,
            connect_timeout=args.connect_timeout,
            max_free_run=args.max_free_run,
            log=args.log,
        ) as cal:
            print(f"calendar listening on {args.socket}", file=sys.stderr, flush=True)
            summary = cal.run(until=args.until)
    except CalendarError as exc:
        print(f"ns3-uml calendar: {exc.kind} error: {exc}", file=sys.stderr)
        return 130 if exc.kind == "interrupted" else 1
    except KeyboardInterrupt:
        print("ns3-uml calendar: interrupted", file=sys.stderr)
        return 130
    summary["wall_total_s"] = time.monotonic() - start
    if args.json:
        json.dump(summary, sys.stdout)
        print()
    else:
        _print_summary(summary)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from .calendar import CalendarError  # noqa: PLC0415
    from .demo import run_demo  # noqa: PLC0415
    from .kernel import KernelBuildError  # noqa: PLC0415

    try:
        return run_demo(Path(args.workdir))
    except (CalendarError, KernelBuildError) as exc:
        print(f"ns3-uml demo: {exc}", file=sys.stderr)
        return 1


def _sweep(args: argparse.Namespace) -> int:
    """``ns3-uml sweep SCRIPT.py --grid NAME=V1,V2 ...``: run the script's experiment
    function over the grid, print the table, write it to --out."""
    from pathlib import Path  # noqa: PLC0415

    from .kernel import KernelBuildError  # noqa: PLC0415
    from .sweeps import (  # noqa: PLC0415
        TABLE_SUFFIXES,
        FunctionRef,
        parse_grid_option,
        sweep,
        write_table,
    )

    try:
        grid = dict(parse_grid_option(g) for g in args.grid)
        # Checked now, not after an hour of sweeping.
        if args.out and Path(args.out).suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"--out {args.out}: write {', '.join(TABLE_SUFFIXES)}")
        fn = FunctionRef.of(f"{args.script}:{args.function}").load()
        if not grid:
            # The script's own GRID (a dict of lists) is the default grid.
            grid = dict(getattr(sys.modules[fn.__module__], "GRID", {}))
        if not grid:
            raise ValueError("no --grid given and the script defines no GRID")
    except (ValueError, FileNotFoundError, ImportError, AttributeError) as exc:
        print(f"ns3-uml sweep: {exc}", file=sys.stderr)
        return 2
    client = None
    try:
        if args.dask:
            from distributed import Client  # noqa: PLC0415 (optional extra: ns3-uml[dask])

            client = Client(args.dask)
        df = sweep(fn, grid=grid, repeats=args.repeats, seed=args.seed,
                   executor=client, workers=args.workers, workdir=args.workdir,
                   resume=not args.no_resume, progress=not args.quiet,
                   timeout=args.timeout)
    except (KernelBuildError, TypeError, ValueError, RuntimeError) as exc:
        print(f"ns3-uml sweep: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ns3-uml sweep: interrupted (re-run to resume)", file=sys.stderr)
        return 130
    finally:
        if client is not None:
            client.close()
    if args.out:
        write_table(df, args.out)
    if not args.quiet:
        import pandas as pd  # noqa: PLC0415

        with pd.option_context("display.max_rows", None, "display.max_columns", None,
                               "display.width", 200, "display.max_colwidth", 60):
            print(df.drop(columns=["workdir"]).to_string(index=False))
        print(f"record: {df.attrs['record']}", file=sys.stderr)
    failed = int((df["status"] != "ok").sum())
    if failed:
        print(f"ns3-uml sweep: {failed} of {len(df)} points failed (see the error column)",
              file=sys.stderr)
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The ``ns3-uml`` command line: demo, kernel, agent, calendar and sweep."""
    parser = argparse.ArgumentParser(
        prog="ns3-uml",
        description="ns-3 as the clock and the wire for real Linux (UML) guests.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="two real guests ping each other over an ns-3 link (builds the kernel)"
    )
    demo.add_argument("--workdir", default="runs/demo", help="where guest outputs go")
    demo.set_defaults(func=_demo)

    kern = sub.add_parser("kernel", help="build or locate the guest kernel")
    kern.add_argument("action", choices=["build", "path"])
    kern.add_argument("--force", action="store_true", help="rebuild even if cached")
    kern.add_argument("--quiet", action="store_true", help="no progress display")
    kern.set_defaults(func=_kernel)

    agt = sub.add_parser("agent", help="build or locate the guest agent")
    agt.add_argument("action", choices=["build", "path"])
    agt.add_argument("--force", action="store_true", help="rebuild even if cached")
    agt.set_defaults(func=_agent)

    cal = sub.add_parser(
        "calendar",
        help="a standalone time-travel calendar on ns-3's clock",
        description="Wait for N clients, schedule them on ns-3's clock until TIME or until "
        "every client has gone, print a summary.",
    )
    cal.add_argument("--socket", required=True, help="unix socket path to listen on")
    cal.add_argument("--clients", type=int, default=0, help="clients to wait for first")
    cal.add_argument("--until", help="simulated end time, e.g. 10s, 500ms")
    cal.add_argument("--no-shm", action="store_true", help="no shared-memory scheduling")
    cal.add_argument("--tod-epoch", type=int, help="time of day at t=0, ns since 1970")
    cal.add_argument("--log", help="write every message with its simulated time here")
    cal.add_argument(
        "--yield-timeout", type=float, default=120.0, help="wall seconds a client may run"
    )
    cal.add_argument(
        "--connect-timeout", type=float, default=60.0, help="wall seconds to wait for clients"
    )
    cal.add_argument(
        "--max-free-run",
        help="let no client run further ahead than this without reporting back (e.g. 10ms)",
    )
    cal.add_argument("--json", action="store_true", help="print the summary as JSON")
    cal.set_defaults(func=_calendar)

    swp = sub.add_parser(
        "sweep",
        help="run a script's experiment function over a parameter grid",
        description="Run the function `experiment` of SCRIPT (or --function) once per grid "
        "point, each in a fresh process, and print one table. Values that read as numbers "
        "become numbers. Finished points are recorded under --workdir and skipped on a "
        "re-run of the same sweep.",
    )
    swp.add_argument("script", help="a Python file defining the experiment function")
    swp.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                     help="a parameter and its values (repeat for more; default: the "
                     "script's GRID dict)")
    swp.add_argument("--function", default="experiment", help="the function's name")
    swp.add_argument("--repeats", type=int, default=1, help="runs per point (seeds S..S+K-1)")
    swp.add_argument("--seed", type=int, default=1, help="the first seed S")
    swp.add_argument("--workers", type=int, help="points at once (default: by cores, memory)")
    swp.add_argument("--dask", metavar="ADDRESS", help="run on this Dask scheduler instead")
    swp.add_argument("--workdir", default="runs/sweep", help="record and point directories")
    swp.add_argument("--out", help="write the table here (.parquet, .csv, .jsonl, .json)")
    swp.add_argument("--timeout", type=float, help="wall seconds a point may take")
    swp.add_argument("--no-resume", action="store_true", help="start the record afresh")
    swp.add_argument("--quiet", action="store_true", help="no progress bar, no table")
    swp.set_defaults(func=_sweep)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ns3-uml`` with ``argv`` (default: the process's); the exit status."""
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
