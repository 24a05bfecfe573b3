"""A time-travel client that breaks the protocol on purpose, for the calendar's rule 10 tests.

:class:`HostileTTClient` is a :class:`~ns3_uml.testing.tt_client.client.TTClient` that can also
write raw or truncated messages, ops the protocol does not define or only the calendar may send,
a wrong ACK seq, connect without START (a readiness probe), or stop talking.  None of it is something UML 6.12 does; the helpers never raise
for what the calendar does in response (that is what the tests look at).
"""

from __future__ import annotations

import time as _wall

from ns3_uml.protocol import MSG, Op
from ns3_uml.testing.tt_client.client import TTClient
from ns3_uml.testing.tt_client.connection import U32_MASK

__all__ = ["HostileTTClient"]


class HostileTTClient(TTClient):
    """A :class:`TTClient` with deliberate protocol violations."""

    _wrong_ack_delta = 0        # what ack_next_with_wrong_seq() adds to the next ACK

    def _ack(self, seq: int) -> None:
        if self._wrong_ack_delta:
            seq = (seq + self._wrong_ack_delta) & U32_MASK
            self._wrong_ack_delta = 0
        super()._ack(seq)

    def connect(self) -> None:
        """Connect to the calendar without sending START (what :meth:`start` does first)."""
        self._connect()

    @classmethod
    def probe(cls, socket_path: str) -> None:
        """Connect and close without a byte, as a readiness probe does."""
        client = cls(socket_path)
        client.connect()
        client.close()

    def send_raw(self, data: bytes) -> None:
        """Write arbitrary bytes on the time socket."""
        self._require_sock().sendall(data)
        self.sent["RAW"] = self.sent.get("RAW", 0) + 1

    def send_short_and_close(self, nbytes: int = 8) -> None:
        """Send the first ``nbytes`` of a REQUEST, then close the socket."""
        self.seq = (self.seq + 1) & U32_MASK
        data = MSG.pack(Op.REQUEST, self.seq, self.time)[:nbytes]
        self.send_raw(data)
        self.close()

    def send_unknown_op(self, op: int = 0x7F, time: int = 0,
                        wait_ack: bool = True) -> int | None:
        """Send a message with an op the protocol does not define."""
        if wait_ack:
            return self.ext_req(op, time)
        self.seq = (self.seq + 1) & U32_MASK
        self._write_msg(op, self.seq, time)
        return None

    def send_as_calendar(self, op: int = Op.RUN, time: int | None = None) -> None:
        """Send RUN or FREE_UNTIL (calendar-only ops) without waiting for anything."""
        self.seq = (self.seq + 1) & U32_MASK
        self._write_msg(op, self.seq, self.time if time is None else time)

    def ack_next_with_wrong_seq(self, delta: int = 1) -> None:
        """Make the next ACK this client writes carry seq + ``delta``."""
        self._wrong_ack_delta = delta or 1

    def hang(self, seconds: float | None = None) -> None:
        """Stop talking (and reading) while running; forever if ``seconds`` is None."""
        self._record("hang", seconds=seconds)
        if seconds is None:
            while True:
                _wall.sleep(3600)
        _wall.sleep(seconds)

