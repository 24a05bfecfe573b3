"""A parameter sweep: TCP throughput against link delay and loss, for two congestion controls.

Each point is one experiment: two guests on a 10 Mbit/s point-to-point link with the
point's one-way delay, and ns-3's RateErrorModel dropping the point's fraction of packets
on both devices; iperf3 runs 3 simulated seconds of TCP (the server sends: -R) with the
point's congestion control (cubic or reno). ``ns3_uml.sweep`` runs the 12 points
(2 algorithms x 3 delays x 2 losses), each in a fresh process, on the local cores; the
example prints the table, writes it to ``WORKDIR/results.parquet`` and plots throughput
against delay, one line per algorithm and loss, into ``WORKDIR/sweep_tcp.png``.

It fails if a point fails or if a throughput is not what TCP can do here: above the link's
payload rate, or (at the same delay and algorithm) higher with losses than without.

Run:  python examples/sweep_tcp.py [WORKDIR] [--workers N] [--dask ADDRESS]
      (default: runs/sweep_tcp; ~2 minutes on 2 cores; a re-run resumes)
Or with the CLI, any grid:
      ns3-uml sweep examples/sweep_tcp.py --grid delay=1ms,10ms --grid cc=cubic,bbr
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import ns3_uml as nu

RATE = 10e6  # bit/s
#: The payload rate TCP can reach: 1448 bytes of data per 1500-byte packet + 2 of PPP.
PAYLOAD_RATE = RATE * 1448 / 1502
DURATION_S = 3
#: The default grid (also what ``ns3-uml sweep examples/sweep_tcp.py`` runs without --grid).
GRID: dict[str, list[Any]] = {
    "cc": ["cubic", "reno"],
    "delay": ["2ms", "20ms", "50ms"],
    "loss": [0, 0.01],
}


def experiment(delay: str = "10ms", loss: float = 0.0, cc: str = "cubic", seed: int = 1,
               workdir: str = "runs/sweep_tcp/one") -> dict[str, Any]:
    """One point: iperf3 over a lossy link; throughput, retransmissions, RTT."""
    # IPv4 only: IPv6's multicast reports would share the link with the measurement.
    with nu.Simulation(workdir=workdir, seed=seed, ipv6=False) as sim:
        ns = sim.ns
        # Both ends, although only the sender's algorithm matters (the server sends).
        sysctls = {"net.ipv4.tcp_congestion_control": cc}
        client = sim.add_node("client", sysctls=sysctls)
        server = sim.add_node("server", sysctls=sysctls)
        devices = sim.point_to_point(client, server, rate=f"{RATE:.0f}bps", delay=delay)
        if loss:
            for i in range(2):
                errors = ns.CreateObject["ns3::RateErrorModel"]()
                errors.SetAttribute("ErrorRate", ns.DoubleValue(float(loss)))
                errors.SetAttribute("ErrorUnit", ns.StringValue("ERROR_UNIT_PACKET"))
                # Fixed streams: the simulation's seed alone decides which packets drop.
                errors.AssignStreams(i)
                devices.Get(i).SetAttribute("ReceiveErrorModel", ns.PointerValue(errors))
        server.run("iperf3 -s -1 -J", background=True, name="server")
        # -R: the server sends (iperf3 3.12's sending client busy-polls at the end of a
        # test, which costs wall time under a simulated clock).
        client.run(f"iperf3 -c {server.ip} -t {DURATION_S} -R -J -C {cc}", name="iperf3")
        sim.run(until=f"{DURATION_S + 30}s")
        result, sender = client.result("iperf3"), server.result("server")
    for r in (result, sender):
        if r.returncode != 0:
            raise RuntimeError(f"{r.command!r} failed (exit {r.returncode}): "
                               f"{r.stderr.strip() or r.stdout[-500:]}")
    end = json.loads(result.stdout)["end"]
    # The sender (the server) measures the RTT: the link's and its queue's.
    sent = json.loads(sender.stdout)["end"]["streams"][0]["sender"]
    return {
        "throughput_mbps": end["sum_received"]["bits_per_second"] / 1e6,
        "retransmits": end["sum_sent"].get("retransmits"),
        "mean_rtt_ms": sent["mean_rtt"] / 1e3,
        "sender_cc": end.get("sender_tcp_congestion"),
    }


def delay_ms(delay: str) -> float:
    """A delay like "20ms" in milliseconds."""
    from ns3_uml.units import parse_time  # noqa: PLC0415

    return parse_time(delay) / 1e6


def plot(df: Any, path: Path) -> Path:
    """Throughput against delay, one line per congestion control and loss."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ok = df[df["status"] == "ok"].assign(delay_ms=lambda d: d["delay"].map(delay_ms))
    for (cc, loss), group in ok.groupby(["cc", "loss"]):
        mean = group.groupby("delay_ms")["throughput_mbps"].mean().sort_index()
        ax.plot(mean.index, mean.values, marker="o",
                linestyle="-" if loss == 0 else "--", label=f"{cc}, loss {loss:g}")
    ax.axhline(PAYLOAD_RATE / 1e6, color="grey", linewidth=0.8, label="link payload rate")
    ax.set_xlabel("one-way link delay (ms)")
    ax.set_ylabel("TCP throughput (Mbit/s)")
    ax.set_title(f"iperf3, {DURATION_S} s over {RATE / 1e6:g} Mbit/s point-to-point")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def check(df: Any) -> list[str]:
    """What is wrong with the table (empty: nothing)."""
    problems = [f"{r.cc} {r.delay} loss {r.loss:g}: {r.error}"
                for r in df.itertuples() if r.status != "ok"]
    ok = df[df["status"] == "ok"]
    for r in ok.itertuples():
        if r.throughput_mbps > PAYLOAD_RATE / 1e6 * 1.01:
            problems.append(f"{r.cc} {r.delay} loss {r.loss:g}: {r.throughput_mbps:.2f} "
                            "Mbit/s is above the link's payload rate")
        if r.sender_cc != r.cc:
            problems.append(f"{r.cc} {r.delay}: the sender used {r.sender_cc}")
    by = ok.set_index(["cc", "delay", "loss", "seed"])["throughput_mbps"]
    for (cc, delay, loss, seed), value in by.items():
        if loss and (cc, delay, 0, seed) in by and value > by[(cc, delay, 0, seed)]:
            problems.append(f"{cc} {delay}: faster with loss {loss:g} than without")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Run the default grid, print and plot it; 0 if every point is as expected."""
    from ns3_uml.sweeps import sweep, write_table  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", default="runs/sweep_tcp")
    parser.add_argument("--workers", type=int, help="points at once (default: by cores)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per point")
    parser.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler to run on")
    args = parser.parse_args(argv)
    client = None
    if args.dask:
        from distributed import Client  # noqa: PLC0415

        client = Client(args.dask)
    try:
        df = sweep(experiment, grid=GRID, repeats=args.repeats, workdir=args.workdir,
                   workers=args.workers, executor=client)
    finally:
        if client is not None:
            client.close()
    out = Path(args.workdir)
    write_table(df, out / "results.parquet")
    png = plot(df, out / "sweep_tcp.png")
    columns = ["cc", "delay", "loss", "seed", "throughput_mbps", "retransmits",
               "mean_rtt_ms", "status", "wall_s"]
    print(df[columns].to_string(index=False, float_format="{:.2f}".format))
    print(f"table: {out / 'results.parquet'}\nplot: {png}\nrecord: {df.attrs['record']}")
    problems = check(df)
    for p in problems:
        print(f"FAILED: {p}", file=sys.stderr)
    if not problems:
        print(f"OK: {len(df)} points, every throughput within what TCP can do here")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
