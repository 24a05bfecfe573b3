"""Re-record the fuzz targets' seeds from real guest sessions (docs/DESIGN.md section 10).

Run:  python fuzz/record_seeds.py        (in the source tree, ns3-uml installed)

Two guests ping each other over ns-3 and send a little TCP (TSO frames), once with
message-mode time travel and once with shared memory, each in a process of its own recording
under ``$NS3_UML_RECORD`` (bindings/model/session-recorder.h: the bytes each client sent on
its time socket, each device's vhost-user messages, and at each kick the ring and the
buffers it offers). The recordings become ``fuzz/corpus/{tt-calendar,vhost-user,virtqueue}/guest-*.bin``
of a few KB each, in the targets' input formats (their sources, fuzz/*-fuzzer.cc, describe
them; the constants are read from there).
"""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from ns3_uml import protocol, vhost_protocol as vp

FUZZ = Path(__file__).resolve().parent
MODEL = FUZZ.parent / "bindings" / "model"
TT_MESSAGES = 256  # 4 KB of a client's messages
VHOST_BYTES = 12 * 1024
VIRTQUEUE_SEEDS = 4  # per device and queue kind
ZERO_GAP = 16  # zero stretches this long are left out of memory records (the memfd is zero)


def constants(source: Path) -> dict[str, int]:
    """The ``constexpr`` integers of a C++ source, so that each value has one place."""
    values: dict[str, int] = {}
    pattern = r"constexpr\s+(?:u?int\d+_t|size_t|uint64_t)\s+(\w+)\s*=\s*([^;]+);"
    for name, expr in re.findall(pattern, source.read_text()):
        expr = re.sub(r"(?<=[0-9a-fA-F])[uUlL]+\b", "", expr)
        expr = re.sub(r"\b[A-Za-z_]\w*\b", lambda m: str(values.get(m.group(), m.group())), expr)
        if re.fullmatch(r"(?:0[xX][0-9a-fA-F]+|\d+|[\s+|<()-])+", expr):
            values[name] = eval(expr)  # numbers and operators only (checked above)
    return values


REC = constants(MODEL / "session-recorder.h")
TT = constants(FUZZ / "tt-calendar-fuzzer.cc")
VH = constants(FUZZ / "vhost-user-fuzzer.cc")
VQ = constants(FUZZ / "virtqueue-fuzzer.cc")
RING = struct.Struct("=IIQQQHHI")  # recording::Ring
VQ_HEAD = struct.Struct("<BBHHHIIQQQQQ")  # Head of virtqueue-fuzzer.cc
VQ_OPS = {"POKE": 0, "POP": 1, "PUSH": 2}  # its Op values


def record(workdir: Path, shared_memory: bool) -> None:
    """One session (in this process): two guests, a ping and a small TCP transfer."""
    import ns3_uml as nu

    with nu.Simulation(workdir=workdir, seed=1, shared_memory=shared_memory) as sim:
        a = sim.add_node("a")
        b = sim.add_node("b", run=["iperf3 -s -1"])
        sim.point_to_point(a, b, rate="100Mbps", delay="1ms")
        a.run(f"ping -c 2 {b.ip}")
        a.run(f"iperf3 -c {b.ip} -n 96K")
        sim.run()


def vhost_records(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """(request, flags, payload) of a recorded vhost-user session."""
    off = 0
    while off + vp.HEADER_SIZE <= len(data):
        request, flags, size = vp.HEADER.unpack_from(data, off)
        off += vp.HEADER_SIZE
        yield request, flags, data[off:off + size]
        off += size


def frame(request: int, flags: int, payload: bytes) -> bytes:
    return vp.HEADER.pack(request, flags, len(payload)) + payload


def nonzero_runs(addr: int, data: bytes) -> Iterator[tuple[int, bytes]]:
    """The parts of memory at ``addr`` that are not long stretches of zeros."""
    for m in re.finditer(rb"(?:[^\0]|\0{1,%d}(?=[^\0]))+" % (ZERO_GAP - 1), data, re.S):
        yield addr + m.start(), m.group()


def memory_pokes(payload: bytes) -> list[tuple[int, bytes]]:
    (addr,) = struct.unpack_from("<Q", payload)
    return list(nonzero_runs(addr, payload[8:]))


def tt_seed(stream: bytes, cfg: int) -> bytes:
    """A client's stream with the configuration byte, ACK seqs left to the harness (0)."""
    out = bytearray([cfg])
    for off in range(0, min(len(stream), TT_MESSAGES * protocol.MSG_SIZE), protocol.MSG_SIZE):
        op, seq, time = protocol.MSG.unpack_from(stream, off)
        out += protocol.MSG.pack(op, 0 if op == protocol.Op.ACK else seq, time)
    return bytes(out)


def features_of(data: bytes) -> int:
    for request, _, payload in vhost_records(data):
        if request == vp.Request.SET_FEATURES:
            return struct.unpack_from("<Q", payload)[0]
    return 0


def is_net(features: int) -> bool:
    return bool(features & (1 << vp.NetFeature.MAC))


def vhost_seed(data: bytes) -> bytes:
    """The session's start (set-up, first kicks with their rings), memory records without
    their zeros, the configuration byte as the device was set up."""
    features = features_of(data)
    cfg = VH["CFG_EVENT_IDX"] if features & (1 << vp.VirtioFeature.RING_EVENT_IDX) else 0
    if not is_net(features):
        cfg |= VH["CFG_CONSOLE"]
    elif features & (1 << vp.NetFeature.CSUM):
        cfg |= VH["CFG_OFFLOADS"]
    out = bytearray([cfg])
    for request, flags, payload in vhost_records(data):
        if request == REC["REQUEST_MEMORY"]:
            rec = b"".join(frame(request, flags, struct.pack("<Q", a) + b)
                           for a, b in memory_pokes(payload))
        else:
            rec = frame(request, flags, payload)
        if len(out) + len(rec) > VHOST_BYTES:
            break
        out += rec
    return bytes(out)


def virtqueue_seeds(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Seeds from the kick snapshots of each queue: the first few, and the one with the
    most memory (a TSO frame, on a transmit queue)."""
    by_queue: dict[int, list[bytes]] = {}
    net = is_net(features_of(data))
    for queue, seed in kick_seeds(data):
        by_queue.setdefault(queue, []).append(seed)
    for queue, seeds in by_queue.items():
        chosen = seeds[:VIRTQUEUE_SEEDS - 1]
        largest = max(seeds, key=len)
        if largest not in chosen:
            chosen.append(largest)
        kind = ("net" if net else "console") + f"-q{queue}"
        for n, seed in enumerate(chosen):
            yield f"{kind}-{n}", seed


def kick_seeds(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(queue, seed) for each kick snapshot that offers chains: the queue and its region as
    the recorder saw them, the memory it held, then as many pops and pushes as chains were
    offered (up to 8)."""
    features = features_of(data)
    net = is_net(features)
    records = list(vhost_records(data))
    for i, (request, _, payload) in enumerate(records):
        if request != REC["REQUEST_RING"]:
            continue
        queue, num, desc, avail, used, last_avail, event_idx, _ = RING.unpack(payload)
        raw = []
        for req, _, mem in records[i + 1:]:
            if req != REC["REQUEST_MEMORY"]:
                break
            raw.append((struct.unpack_from("<Q", mem)[0], mem[8:]))
        pokes = [run for a, b in raw for run in nonzero_runs(a, b)]
        lo = min([desc, avail, used] + [a for a, _ in pokes]) & ~4095
        hi = max([used + 6 + 8 * num] + [a + len(b) for a, b in pokes])
        size = min((hi - lo + 4095) & ~4095, 16 << 20)
        avail_idx = next((struct.unpack_from("<H", b, avail + 2 - a)[0] for a, b in raw
                          if a <= avail + 2 and a + len(b) >= avail + 4), last_avail)
        pending = (avail_idx - last_avail) & 0xFFFF
        if not pending:
            continue
        transmit = net and queue == vp.NET_TX_QUEUE
        flags = (VQ["HEAD_EVENT_IDX"] if event_idx else 0) | (VQ["HEAD_TRANSMIT"] if transmit else 0)
        out = bytearray(VQ_HEAD.pack(flags, 0, num, last_avail, 0, size, 0, lo, desc, avail,
                                     used, features))
        for a, b in pokes:
            if lo <= a and a + len(b) <= lo + size:
                out += struct.pack("<BQH", VQ_OPS["POKE"], a, len(b)) + b
        for _ in range(min(pending, 8)):
            out += bytes([VQ_OPS["POP"]]) + bytes([VQ_OPS["PUSH"]]) + struct.pack("<I", 0)
        yield queue, bytes(out)


def convert(recordings: Path, mode: str, corpus: Path, seen: set[bytes]) -> list[Path]:
    """Write the seeds of one mode's recordings; ``seen``: the seeds already written (the
    devices do not care about the time-travel mode: one copy each)."""
    written = []

    def put(target: str, name: str, data: bytes) -> None:
        if data in seen:
            return
        seen.add(data)
        path = corpus / target / f"guest-{mode}-{name}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)

    shm = mode == "shm"
    cfg = (TT["CFG_SHM_OFFERED"] | TT["CFG_SHM_TAKEN"]) if shm else 0
    for n, path in enumerate(sorted(recordings.glob("tt-*.bin"))):
        put("tt-calendar", f"client{n}", tt_seed(path.read_bytes(), cfg))
    for n, path in enumerate(sorted(recordings.glob("vhost-*.bin"))):
        data = path.read_bytes()
        kind = "net" if is_net(features_of(data)) else "console"
        put("vhost-user", f"{kind}{n}", vhost_seed(data))
        for name, seed in virtqueue_seeds(data):
            put("virtqueue", f"dev{n}-{name}", seed)
    return written


def main() -> int:
    if len(sys.argv) == 3:  # the session of one mode, in a process of its own
        record(Path(sys.argv[1]), sys.argv[2] == "shm")
        return 0
    corpus = FUZZ / "corpus"
    for old in corpus.glob("*/guest-*.bin"):
        old.unlink()
    seen: set[bytes] = set()
    for mode in ("messages", "shm"):
        with tempfile.TemporaryDirectory(prefix="ns3-uml-record-") as tmp:
            recordings = Path(tmp) / "rec"
            recordings.mkdir()
            env = dict(os.environ, NS3_UML_RECORD=str(recordings))
            subprocess.run([sys.executable, __file__, str(Path(tmp) / "run"), mode], env=env,
                           check=True)
            for path in convert(recordings, mode, corpus, seen):
                print(f"{path.relative_to(FUZZ.parent)}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
