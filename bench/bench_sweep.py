"""Sweeps: points per hour for the example sweep, one worker against the default number.

The sweep is ``examples/sweep_tcp.py``'s (2 congestion controls x 3 delays x 2 losses, two
guests and 3 simulated seconds of iperf3 per point), run from scratch with ``workers=1``
and then with the default executor's number of workers (``default_workers()``: one per
core, as memory allows). Reported: wall time, points per hour, the median wall time of one
point (its process start, ns-3's import, boot and the run), the speed-up, and whether the
two tables hold the same measurements (they must: a point's result does not depend on how
many run beside it). Medians of ``--repeats`` sweeps per setting, the settings alternated.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml.sweeps import default_workers, sweep

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sweep_tcp.py"
MEASURED = ["throughput_mbps", "retransmits", "mean_rtt_ms", "sender_cc"]


def run(workers: int) -> tuple[dict, object]:
    """The example's sweep from scratch with ``workers`` at once."""
    from ns3_uml.sweep_worker import load_function  # noqa: PLC0415

    fn = load_function(None, str(EXAMPLE), "experiment")
    grid = sys.modules[fn.__module__].GRID
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        load = os.getloadavg()[0]
        wall = time.perf_counter()
        df = sweep(fn, grid=grid, workers=workers, workdir=tmp, resume=False)
        wall = time.perf_counter() - wall
    points = len(df)
    failed = int((df["status"] != "ok").sum())
    return {
        "workers": workers,
        "points": points,
        "failed": failed,
        "wall_s": wall,
        "points_per_hour": points / wall * 3600,
        "point_wall_s_median": statistics.median(df["wall_s"]),
        "load_average_before": load,
    }, df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="sweeps per setting, alternated; medians are reported")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    settings = {"one_worker": 1, "default": default_workers()}
    out: dict = {"benchmark": "sweep_points_per_hour", "example": "examples/sweep_tcp.py",
                 "cores": len(os.sched_getaffinity(0)), "default_workers": settings["default"]}
    runs: dict[str, list[dict]] = {label: [] for label in settings}
    tables = {}
    # Alternated, so that a change in the host's load touches both settings alike.
    for _ in range(args.repeats):
        for label, workers in settings.items():
            result, tables[label] = run(workers)
            runs[label].append(result)
            print(f"{label:>11}: {result['points']} points, {workers} at once, "
                  f"{result['wall_s']:.1f} s wall, {result['points_per_hour']:.0f} points/hour "
                  f"(one point: {result['point_wall_s_median']:.1f} s median)", flush=True)
    for label, results in runs.items():
        out[label] = {
            "workers": settings[label],
            "points_per_hour": statistics.median(r["points_per_hour"] for r in results),
            "wall_s": statistics.median(r["wall_s"] for r in results),
            "point_wall_s_median": statistics.median(r["point_wall_s_median"] for r in results),
            "failed": sum(r["failed"] for r in results),
            "runs": results,
        }
    out["speed_up"] = (out["default"]["points_per_hour"]
                       / out["one_worker"]["points_per_hour"])
    key = ["cc", "delay", "loss", "seed"]
    a, b = (tables[k].sort_values(key)[key + MEASURED].reset_index(drop=True)
            for k in settings)
    out["same_measurements"] = bool(a.equals(b))
    print(f"median points/hour: 1 worker {out['one_worker']['points_per_hour']:.0f}, "
          f"{settings['default']} workers {out['default']['points_per_hour']:.0f}; speed-up "
          f"{out['speed_up']:.2f}; same measurements: {out['same_measurements']}")
    emit(out, args.json)


if __name__ == "__main__":
    main()
