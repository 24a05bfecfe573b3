"""Wire constants of the UM time-travel protocol (include/uapi/linux/um_timetravel.h).

The C++ core has the same values in ``bindings/model/tt-protocol.h``; a test checks that
the two agree, so this module is the one place Python code takes them from.
"""

from __future__ import annotations

import enum
import struct


class Op(enum.IntEnum):
    """Operation codes of ``struct um_timetravel_msg``."""

    ACK = 0
    START = 1
    REQUEST = 2
    WAIT = 3
    GET = 4
    UPDATE = 5
    RUN = 6
    FREE_UNTIL = 7
    GET_TOD = 8
    BROADCAST = 9


#: ``struct um_timetravel_msg``: u32 op, u32 seq, u64 time, host byte order.
MSG = struct.Struct("=IIQ")
MSG_SIZE = MSG.size  # 16

#: Low bits of the START ACK's time: the shared-memory client slot.
START_ACK_ID_MASK = 0xFFFF
#: The START id of a client given none: UML's ``time-travel=ext:PATH`` sends (u64)-1, as
#: wmediumd always does. Python names it -1, as the calendar's messages do.
ID_NONE = (1 << 64) - 1
MAX_FDS = 2  # memfd, log fd

SHM_VERSION = 2
SHM_HEADER_SIZE = 4096
SHM_CLIENT_SIZE = 128
#: Header: u32 version, u32 len, u64 free_until, u64 current_time, u16 running_id,
#: u16 max_clients.
SHM_HEADER = struct.Struct("=IIQQHH")
SHM_OFF_VERSION = 0
SHM_OFF_LEN = 4
SHM_OFF_FREE_UNTIL = 8
SHM_OFF_CURRENT_TIME = 16
SHM_OFF_RUNNING_ID = 24
SHM_OFF_MAX_CLIENTS = 26
#: Client entry: u32 capa, u32 flags, u64 req_time, u64 name.
SHM_CLIENT = struct.Struct("=IIQQ")
SHM_CLIENT_OFF_CAPA = 0
SHM_CLIENT_OFF_FLAGS = 4
SHM_CLIENT_OFF_REQ_TIME = 8
SHM_CLIENT_OFF_NAME = 16
CAP_TIME_SHARE = 0x1
FLAG_REQ_RUN = 0x1

#: UML's clock-read cost in time-travel mode (arch/um/include/shared/timetravel.h).
TIMER_MULTIPLIER = 256

#: A time value meaning "never" (UML avoids wrap-around with S64_MAX).
TIME_NEVER = (1 << 63) - 1


def shm_size(max_clients: int) -> int:
    """Bytes of a shared scheduling page with room for ``max_clients`` entries (+ the calendar's)."""
    return SHM_HEADER_SIZE + SHM_CLIENT_SIZE * (max_clients + 1)


def client_offset(slot: int) -> int:
    """Byte offset of client entry ``slot`` in the shared page (slot 0 is the calendar)."""
    return SHM_HEADER_SIZE + SHM_CLIENT_SIZE * slot
