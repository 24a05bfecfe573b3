"""Fuzzing (docs/DESIGN.md section 10): the libFuzzer targets of fuzz/, built with clang,
AddressSanitizer and UBSan, each run for ``$FUZZ_SECONDS`` (default 60) from its committed
seeds; any crash, leak, undefined behaviour, hang or finding of a harness fails. The longer
run: ``FUZZ_SECONDS=3600 pytest tests/test_fuzz.py -k finds_nothing`` (or
``python -m ns3_uml.testing.fuzzing``). Also the recorder the seeds come from
(``$NS3_UML_RECORD``), against the calendar's message log and a real guest session.
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ns3_uml import protocol
from ns3_uml import vhost_protocol as vp
from ns3_uml.testing import fuzzing

SOURCE = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("FUZZ_SECONDS", "60"))
US = 1000

sys.path.insert(0, str(SOURCE / "fuzz"))
import record_seeds  # noqa: E402  (fuzz/ is no package: the seed recorder's own parsers)


@pytest.fixture(scope="module")
def fuzzers() -> dict[str, Path]:
    """The targets, built once (a couple of minutes; cached by the sources' hash)."""
    return fuzzing.build(SOURCE)


@pytest.mark.parametrize("name", fuzzing.FUZZERS)
def test_fuzzer_finds_nothing(fuzzers: dict[str, Path], name: str, tmp_path: Path) -> None:
    seeds = fuzzing.corpus(SOURCE, name)
    assert len(list(seeds.glob("guest-*.bin"))) >= 2, "the recorded seeds are missing"
    result = fuzzing.run(fuzzers[name], seeds, SECONDS, tmp_path)
    assert result.ok, result.report()
    # It fuzzed: many more inputs than the seeds it started from.
    assert result.executions > 10 * len(list(seeds.iterdir())), result.report()


def _log_messages(log: Path) -> dict[int, list[tuple[int, int, int]]]:
    """(op, seq, time) of every message a client sent, from the calendar's message log."""
    names = {op.name: int(op) for op in protocol.Op}
    sent: dict[int, list[tuple[int, int, int]]] = {}
    for line in log.read_text().splitlines():
        m = re.fullmatch(r"\d+ (\d+) -> (\w+) seq=(\d+) time=(\d+)", line)
        if m:
            sent.setdefault(int(m[1]), []).append((names[m[2]], int(m[3]), int(m[4])))
    return sent


@pytest.mark.parametrize("shm", [True, False], ids=["shm", "messages"])
def test_recorder_keeps_what_each_client_sent(make_calendar: Any, clients: Any,
                                               socket_path: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               shm: bool) -> None:
    recordings = tmp_path / "rec"
    recordings.mkdir()
    monkeypatch.setenv("NS3_UML_RECORD", str(recordings))
    log = tmp_path / "cal.log"
    cal = make_calendar(clients=2, shared_memory=shm, log=log)
    steps = [{"op": "get_tod"}, {"op": "sleep", "ns": 10 * US}, {"op": "update"},
             {"op": "broadcast", "value": 7}, {"op": "sleep", "ns": 5 * US}]
    a = clients(socket_path, 1, steps, shm=shm)
    b = clients(socket_path, 2, [{"op": "sleep", "ns": 12 * US}], shm=shm)
    cal.run()
    assert a.result()["status"] == b.result()["status"] == "ok"
    recorded = {}
    for path in recordings.glob("tt-*.bin"):
        data = path.read_bytes()
        assert len(data) % protocol.MSG_SIZE == 0
        msgs = [protocol.MSG.unpack_from(data, off)
                for off in range(0, len(data), protocol.MSG_SIZE)]
        assert msgs[0][0] == protocol.Op.START
        recorded[msgs[0][2]] = msgs
    assert recorded == _log_messages(log)
    assert set(recorded) == {1, 2}


def test_recorded_guest_session(uml_kernel: Path, tmp_path: Path) -> None:
    """Two real guests under the recorder: each device's stream parses, and each kick's ring
    record names the rings the guest placed and comes with their memory; the seeds made of
    it are of the targets' formats."""
    recordings = tmp_path / "rec"
    recordings.mkdir()
    env = dict(os.environ, NS3_UML_RECORD=str(recordings))
    subprocess.run([sys.executable, str(SOURCE / "fuzz" / "record_seeds.py"),
                    str(tmp_path / "run"), "messages"], env=env, check=True, timeout=300)
    devices = sorted(recordings.glob("vhost-*.bin"))
    assert len(devices) == 4  # two guests, each with a network interface and its console
    assert len(list(recordings.glob("tt-*.bin"))) == 2
    kicks = 0
    for path in devices:
        data = path.read_bytes()
        records = list(record_seeds.vhost_records(data))
        assert sum(vp.HEADER_SIZE + len(p) for _, _, p in records) == len(data)
        placed: dict[int, tuple[int, int, int]] = {}
        for i, (request, _, payload) in enumerate(records):
            if request == vp.Request.SET_VRING_ADDR:
                index, _, desc, used, avail, _ = vp.VRING_ADDR.unpack(payload)
                placed[index] = (desc, avail, used)
            elif request == record_seeds.REC["REQUEST_RING"]:
                queue, num, desc, avail, used, *_ = record_seeds.RING.unpack(payload)
                assert placed[queue] == (desc, avail, used)
                memory = [struct.unpack_from("<Q", p)[0] for r, _, p in records[i + 1:i + 4]
                          if r == record_seeds.REC["REQUEST_MEMORY"]]
                assert memory == [desc, avail, used]
                # What follows the ring's memory is the kick it was taken for.
                after = next(r for r, _, _ in records[i + 1:]
                             if r != record_seeds.REC["REQUEST_MEMORY"])
                assert after == vp.Request.VRING_KICK
                kicks += 1
        seeds = list(record_seeds.virtqueue_seeds(data))
        assert seeds and all(len(s) >= record_seeds.VQ_HEAD.size for _, s in seeds)
    assert kicks >= 10
