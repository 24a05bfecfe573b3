"""A time-travel client that breaks the protocol on purpose, for the calendar's rule 10 tests.

:class:`HostileTTClient` is a :class:`~ns3_uml.testing.tt_client.client.TTClient` that can also
write raw or truncated messages, ops the protocol does not define or only the calendar may send,
a wrong ACK seq, connect without START (a readiness probe), keep the calendar busy with a
stream of GETs, or stop talking.  None of it is something UML 6.12 does; the helpers never raise
for what the calendar does in response (that is what the tests look at).
"""

from __future__ import annotations

import time as _wall

from ns3_uml.protocol import MSG, MSG_SIZE, Op
from ns3_uml.testing.tt_client.client import TTClient
from ns3_uml.testing.tt_client.connection import TIME_MINUS_ONE, U32_MASK

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

    def get_storm(self, seconds: float, window: int = 128) -> int:
        """Send GETs back to back for ``seconds`` of wall time, then take the last answers.

        Up to ``window`` GETs are unanswered at a time, so the calendar always has one to
        read; the window stays small because the calendar's answers, unread, fill its send
        buffer (one buffer per 16-byte message). Every message read counts as an answer: a
        storm is for a client nothing else is sent to. Ends early, quietly, when the calendar
        closes the socket. Returns the number of GETs sent.
        """
        sock = self._require_sock()
        self.seq = (self.seq + 1) & U32_MASK
        half = max(1, window // 2)
        burst = MSG.pack(Op.GET, self.seq, TIME_MINUS_ONE) * half
        end = _wall.monotonic() + seconds
        sent = owed = 0
        pending = b""
        try:
            while True:
                if owed < window and _wall.monotonic() < end:
                    sock.sendall(burst)
                    sent += half
                    owed += half
                elif owed <= 0:
                    break
                data = sock.recv(65536)
                if not data:
                    break
                pending += data
                answered = len(pending) // MSG_SIZE
                pending = pending[answered * MSG_SIZE:]
                owed -= answered
        except OSError:
            pass  # the calendar gave up on us: what the test looks at
        self.sent["GET"] = self.sent.get("GET", 0) + sent
        self._record("get_storm", gets=sent)
        return sent

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

