"""The examples run as a user runs them (``python examples/NAME.py``, the notebook in a
Jupyter kernel), check their own outcomes, and leave nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from leftovers import processes_mentioning

import ns3_uml

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# Wall seconds an example may take (ten pairs takes under a minute on 2 cores).
TIMEOUT = 300


def _environment() -> dict[str, str]:
    """The tests' environment (NS3_UML_CORE_DIR, ...), and the ns3_uml the tests import
    on PYTHONPATH: a script's own directory is examples/, and a checkout is not installed."""
    package_root = str(Path(ns3_uml.__file__).resolve().parent.parent)
    paths = [package_root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _run_example(name: str, cwd: Path) -> str:
    """Run examples/NAME.py in ``cwd`` (its files go to cwd/runs/NAME); its stdout."""
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py")], cwd=cwd,
                            env=_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # as Ctrl-C: the Simulation stops its guests
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"{name} took more than {TIMEOUT} s:\n{out}\n{err}")
    assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{out}\n{err}"
    assert (cwd / "runs" / name).is_dir()
    assert not processes_mentioning(cwd), f"{name} left processes behind"
    return out


def test_demo(uml_kernel, tmp_path):
    out = _run_example("demo", tmp_path)
    assert "5 packets transmitted, 5 received" in out
    assert "RTT predicted by the link model: 10.014 ms" in out
    assert out.rstrip().endswith("OK: ping measured the link model's RTT")


def test_ten_pairs(uml_kernel, tmp_path):
    out = _run_example("ten_pairs", tmp_path)
    # One row per pair: its number, delay, the RTTs and throughputs, and ok.
    rows = re.findall(r"^(\d+) +(\d+\.\d+) .* (True|False)$", out, re.MULTILINE)
    assert [(int(p), float(d), ok) for p, d, ok in rows] == [
        (p, p + 1.0, "True") for p in range(10)], out
    assert "OK: all 10 pairs match the link model" in out


def test_udp_echo_native(uml_kernel, tmp_path):
    out = _run_example("udp_echo_native", tmp_path)
    rows = re.findall(r"^ +(\d) +([\d.]+) +([\d.]+) +True$", out, re.MULTILINE)
    assert [int(seq) for seq, _, _ in rows] == list(range(5)), out
    assert "OK: ns-3's UdpEchoServer echoed every datagram" in out


def test_wifi_pair(uml_kernel, tmp_path):
    out = _run_example("wifi_pair", tmp_path)
    assert "TCP ap -> sta: 1048576 bytes" in out and ", 0 lost," in out
    assert "OK: the Wi-Fi pair exchanged traffic both ways" in out


def test_router(uml_kernel, tmp_path):
    out = _run_example("router", tmp_path)
    assert "TTLs of the replies:     [63, 63, 63]" in out
    assert "datagrams r forwarded:   6" in out
    assert "OK: r routes between the subnets" in out


def test_external_client(uml_kernel, tmp_path):
    out = _run_example("external_client", tmp_path)
    assert "ticker (client 1000) woke at (ms): 100 200 300 " in out
    assert "5 packets transmitted, 5 received" in out
    for check in ("the ticker woke exactly when it asked", "ping measured the link model's RTT",
                  "alpha has the other process's device as eth1"):
        assert f"OK: {check}" in out, out


def test_sweep_tcp(uml_kernel, tmp_path):
    import pandas as pd  # noqa: PLC0415

    out = _run_example("sweep_tcp", tmp_path)
    assert "OK: 12 points" in out, out
    table = pd.read_parquet(tmp_path / "runs" / "sweep_tcp" / "results.parquet")
    assert len(table) == 12 and (table["status"] == "ok").all(), table
    assert set(table["sender_cc"]) == {"cubic", "reno"}
    # Losses cost throughput, and the longest delay with losses costs the most.
    by = table.set_index(["cc", "delay", "loss"])["throughput_mbps"]
    for cc in ("cubic", "reno"):
        assert by[(cc, "50ms", 0.01)] < by[(cc, "2ms", 0.01)] < by[(cc, "2ms", 0)], by
    assert (tmp_path / "runs" / "sweep_tcp" / "sweep_tcp.png").stat().st_size > 10_000


def test_readme_example(uml_kernel, tmp_path):
    """The README's own experiment runs as printed there."""
    readme = (EXAMPLES.parent / "README.md").read_text()
    code = re.search(r"## Your own experiment\n\n```python\n(.*?)```", readme, re.S)
    assert code, "the README has no example under 'Your own experiment'"
    script = tmp_path / "readme_example.py"
    script.write_text(code.group(1))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_environment(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^1 +a +iperf3 +0 ", done.stdout, re.M), done.stdout
    assert "5 packets transmitted, 5 received" in done.stdout, done.stdout
    assert not processes_mentioning(tmp_path)


def test_notebook(uml_kernel, tmp_path):
    notebook = nbformat.read(EXAMPLES / "rtt_vs_delay.ipynb", as_version=4)
    # Committed without outputs: what CI shows is what this run produced.
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
    client = nbclient.NotebookClient(notebook, kernel_name="python3", timeout=TIMEOUT,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute(env=_environment())  # a failing cell raises CellExecutionError
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot"
    texts = "".join(o.get("text", "") for o in outputs)
    assert "OK: every RTT matches the link model" in texts
    assert "OK: 6 sweep points match the link model" in texts
    assert (tmp_path / "runs" / "rtt_vs_delay").is_dir()
    assert not processes_mentioning(tmp_path), "the notebook left processes behind"
