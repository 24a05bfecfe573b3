"""Reading the classic pcap files ns-3 writes (the one reader the tests share)."""

from __future__ import annotations

import struct
from pathlib import Path

#: Microsecond and nanosecond resolution magics, little-endian as ns-3 writes them.
MAGICS = (0xA1B2C3D4, 0xA1B23C4D)


def read_pcap(path: Path) -> tuple[int, list[tuple[bytes, int]]]:
    """The link type and every record's (captured bytes, original length) of a pcap."""
    data = Path(path).read_bytes()
    assert len(data) >= 24, f"{path}: no pcap header"
    magic, _, _, _, _, _, linktype = struct.unpack_from("<IHHiIII", data)
    assert magic in MAGICS, f"{path}: not a little-endian pcap"
    records, offset = [], 24
    while offset + 16 <= len(data):
        incl, orig = struct.unpack_from("<II", data, offset + 8)
        assert offset + 16 + incl <= len(data), (
            f"{path}: record {len(records) + 1} cut short (read before its Simulation closed?)")
        records.append((data[offset + 16:offset + 16 + incl], orig))
        offset += 16 + incl
    return linktype, records
