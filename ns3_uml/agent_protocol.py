"""The guest agent's frames (``bindings/model/agent-protocol.h``): building and parsing them.

The C header is the one place the protocol is defined; a test checks that these values
agree with it. A frame is a 12-byte little-endian header (u32 length, u16 type, u16
reserved, u32 id) and ``length`` payload bytes.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

HEADER = struct.Struct("<IHHI")
HEADER_SIZE = HEADER.size  # 12
MAX_PAYLOAD = 65536
PORT_NAME = "org.ns3-uml.agent"
PORT_DEVICE = "/dev/vport0p0"

_U32 = struct.Struct("<I")
_STARTED = struct.Struct("<Qi")
_EXIT = struct.Struct("<QQi")
_READY = struct.Struct("<Q")


class Type(enum.IntEnum):
    """Frame types: 1-15 host to guest, 16-31 guest to host."""

    RUN = 1
    SIGNAL = 2
    POWEROFF = 3
    READY = 16
    STARTED = 17
    STDOUT = 18
    STDERR = 19
    EXIT = 20
    ERROR = 21


class AgentProtocolError(ValueError):
    """A frame that breaks the protocol; ``node``: the guest that sent it, if known."""

    node: str | None = None


@dataclass(frozen=True)
class Frame:
    type: Type
    id: int
    payload: bytes

    # -- guest-to-host payloads, decoded ----------------------------------------------
    def ready_ns(self) -> int:
        return self._unpack(_READY)[0]

    def started(self) -> tuple[int, int]:
        """(start uptime ns, pid)."""
        return self._unpack(_STARTED)

    def exit(self) -> tuple[int, int, int]:
        """(start ns, end ns, wait status)."""
        return self._unpack(_EXIT)

    def text(self) -> str:
        return self.payload.decode(errors="replace")

    def _unpack(self, s: struct.Struct) -> tuple:
        if len(self.payload) != s.size:
            raise AgentProtocolError(f"{self.type.name} frame of {len(self.payload)} bytes, "
                                     f"expected {s.size}")
        return s.unpack(self.payload)


def encode(type_: Type, id_: int = 0, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise AgentProtocolError(f"payload of {len(payload)} bytes (at most {MAX_PAYLOAD})")
    return HEADER.pack(len(payload), int(type_), 0, id_) + payload


def run_frame(id_: int, command: str) -> bytes:
    data = command.encode()
    if b"\0" in data:
        raise ValueError("a command cannot contain a NUL byte")
    return encode(Type.RUN, id_, _U32.pack(0) + data)


def signal_frame(id_: int, signo: int) -> bytes:
    return encode(Type.SIGNAL, id_, _U32.pack(signo))


def poweroff_frame() -> bytes:
    return encode(Type.POWEROFF)


def ready_frame(uptime_ns: int) -> bytes:
    return encode(Type.READY, 0, _READY.pack(uptime_ns))


def started_frame(id_: int, start_ns: int, pid: int) -> bytes:
    return encode(Type.STARTED, id_, _STARTED.pack(start_ns, pid))


def exit_frame(id_: int, start_ns: int, end_ns: int, status: int) -> bytes:
    return encode(Type.EXIT, id_, _EXIT.pack(start_ns, end_ns, status))


class FrameReader:
    """Splits a byte stream into frames; ``feed`` returns the frames completed so far."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER_SIZE:
            length, type_, reserved, id_ = HEADER.unpack_from(self._buf)
            if length > MAX_PAYLOAD or reserved:
                raise AgentProtocolError(f"bad frame header (length {length}, reserved "
                                         f"{reserved})")
            if len(self._buf) < HEADER_SIZE + length:
                break
            try:
                kind = Type(type_)
            except ValueError:
                raise AgentProtocolError(f"unknown frame type {type_}") from None
            frames.append(Frame(kind, id_, bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])))
            del self._buf[:HEADER_SIZE + length]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame."""
        return len(self._buf)
