"""The main job: ``ns3-uml demo``, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from ns3_uml.demo import predicted_rtt_s


def test_demo_prints_the_ping_and_rtts_that_agree_with_the_model(uml_kernel, tmp_path):
    done = subprocess.run([sys.executable, "-m", "ns3_uml", "demo", "--workdir",
                           str(tmp_path / "demo")], capture_output=True, text=True,
                          timeout=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "5 packets transmitted, 5 received" in out, out
    predicted = re.search(r"RTT predicted by the link model: ([\d.]+) ms", out)
    measured = re.search(r"RTT measured by ping \(min/avg/max\): ([\d.]+)/([\d.]+)/([\d.]+)",
                         out)
    assert predicted and measured, out
    assert float(predicted.group(1)) / 1e3 == pytest.approx(predicted_rtt_s(), abs=1e-7)
    for rtt in measured.groups():
        assert float(rtt) / 1e3 == pytest.approx(predicted_rtt_s(), abs=20e-6), out
    assert re.search(r"simulated time: 10\.000 s, wall time: [\d.]+ s", out), out
    for name in ("p2p0-alpha.pcap", "p2p0-beta.pcap"):
        path = tmp_path / "demo" / "pcap" / name
        assert f"  {path}\n" in out and path.stat().st_size > 24, out
