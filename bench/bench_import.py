"""Time to ns-3 loaded: the stock wheel import vs ns3-uml with and without its header cache.

Each run is a fresh Python process started from an empty directory (the wheel searches the
current directory for libraries). Three cases, interleaved run by run so that load on the
machine hits them alike:

* ``stock``: ``from ns import ns``, the plain wheel import;
* ``pch``: ``import ns3_uml; ns3_uml._native.load()`` with the precompiled header cached
  (a warm-up run builds it first if needed);
* ``no_pch``: the same with ``NS3_UML_NO_PCH=1``.

"ready" is from starting the process to ns-3 loaded (interpreter start-up included, exit
excluded); "in process" is the import alone. Prints a table with the ratios against the
stock figure of the same run and writes JSON (--json). ``--cold`` also times a first import
that builds the header into an empty cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import emit

from ns3_uml import pch

CHILD = {
    "stock": "from ns import ns",
    "pch": "import ns3_uml; ns3_uml._native.load()",
    "no_pch": "import ns3_uml; ns3_uml._native.load()",
}
# The child prints when it was ready and how long the import took.
TEMPLATE = """
import json, time
t = time.perf_counter()
{code}
done = time.perf_counter()
from ns3_uml import pch
used = pch.in_use()
print(json.dumps({{"ready_epoch": time.time(), "in_process_s": done - t,
                  "pch": str(used) if used else None}}))
"""


def child_env(case: str, cache: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NS3_UML_NO_PCH", "CLING_STANDARD_PCH")}
    if case == "no_pch":
        env["NS3_UML_NO_PCH"] = "1"
    if cache is not None:
        env["NS3_UML_CACHE"] = str(cache)
    return env


def one_run(case: str, cache: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as empty:
        start = time.time()
        proc = subprocess.run([sys.executable, "-c", TEMPLATE.format(code=CHILD[case])],
                              cwd=empty, env=child_env(case, cache), capture_output=True,
                              text=True, timeout=900, check=False)
        wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{case} run failed (exit {proc.returncode}):\n{proc.stderr}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if case == "pch" and not out["pch"]:
        raise SystemExit(f"the pch run loaded ns-3 without the header:\n{proc.stderr}")
    return {"ready_s": out["ready_epoch"] - start, "in_process_s": out["in_process_s"],
            "wall_s": wall, "stderr": proc.stderr}


def header_facts() -> dict:
    """Size and build time of the header the warm runs use."""
    with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-") as empty:
        code = TEMPLATE.format(code=CHILD["pch"])
        proc = subprocess.run([sys.executable, "-c", code], cwd=empty, env=child_env("pch"),
                              capture_output=True, text=True, timeout=900, check=True)
    path = Path(json.loads(proc.stdout.strip().splitlines()[-1])["pch"])
    manifest = json.loads((path.parent / pch.MANIFEST_NAME).read_text())
    return {"path": str(path), "size_mb": path.stat().st_size / 1e6,
            "build_s": manifest.get("build_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per case (median)")
    parser.add_argument("--cases", nargs="+", default=list(CHILD), choices=list(CHILD))
    parser.add_argument("--cold", action="store_true",
                        help="also time a first import that builds the header")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    header = header_facts()  # also the warm-up: builds the header if it is missing
    print(f"header: {header['path']} ({header['size_mb']:.0f} MB, "
          f"built in {header['build_s']} s)", flush=True)
    cold = None
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="ns3-uml-bench-cache-") as cache:
            cold = one_run("pch", Path(cache))
        print(f"cold first import (plan + header build): {cold['ready_s']:.1f} s", flush=True)

    runs: dict[str, list[dict]] = {case: [] for case in args.cases}
    for i in range(args.repeats):
        for case in args.cases:
            runs[case].append(one_run(case))
        print(f"round {i + 1}/{args.repeats}: " + ", ".join(
            f"{case} {runs[case][-1]['ready_s']:.2f} s" for case in args.cases), flush=True)

    results = {}
    for case, rs in runs.items():
        results[case] = {
            "ready_s_median": statistics.median(r["ready_s"] for r in rs),
            "in_process_s_median": statistics.median(r["in_process_s"] for r in rs),
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
            "ready_s_all": [round(r["ready_s"], 3) for r in rs],
        }
    stock = results.get("stock", {}).get("ready_s_median")
    print(f"\n{'case':<8} {'ready':>8} {'in process':>11} {'with exit':>10} {'/ stock':>8}")
    for case, r in results.items():
        ratio = r["ready_s_median"] / stock if stock else None
        r["ready_over_stock"] = ratio
        print(f"{case:<8} {r['ready_s_median']:>7.2f}s {r['in_process_s_median']:>10.2f}s "
              f"{r['wall_s_median']:>9.2f}s {'' if ratio is None else f'{ratio:8.2f}'}")
    out = {
        "benchmark": "import_ns3",
        "repeats": args.repeats,
        "header": header,
        "cold_first_import_s": cold["ready_s"] if cold else None,
        "load_average": os.getloadavg(),
        "results": results,
    }
    emit(out, args.json)


if __name__ == "__main__":
    main()
