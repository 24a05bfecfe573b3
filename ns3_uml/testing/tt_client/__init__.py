"""Reference client of the UM time-travel protocol, modelled on UML 6.12.

:class:`TTClient` speaks the client ("host") side of the protocol the way
``arch/um/kernel/time.c`` of Linux 6.12 does, function by function, and models
a vhost-user device interrupt by an "irq" socket.  Everything UML would
``panic()`` or ``BUG_ON()`` on raises :class:`TTPanic`.  One module per concern:

==============  ===========================================  =====================
module          plays (Linux 6.12)                           calendar side (C++)
==============  ===========================================  =====================
``connection``  the time socket (os_write_file, the read     ``UmlCalendar``
                part of time_travel_handle_message, the
                START ACK's fds) and the irq line
                (vu_req_read_message): :class:`TTConnection`
``shm``         the v2 page as time_travel_setup_shm maps    ``TtSharedMemory``
                it: :class:`ShmPage`
``client``      time.c function by function (the table is    ``UmlCalendar``
                there): :class:`TTClient`
``hostile``     a client breaking the protocol on purpose:   (rule 10 checks)
                :class:`HostileTTClient`
``script``      JSON steps on a client: :func:`run_script`
``__main__``    the command line
==============  ===========================================  =====================

The classes build on each other (``TTConnection`` <- ``TTClient`` <-
``HostileTTClient``); ``errors`` holds what they raise.

Command line: ``python -m ns3_uml.testing.tt_client --socket PATH --id N
[--no-shm] [--script JSON|@file] [--out FILE] [--irq-socket PATH | --irq-fd N]
[--device-fd N] [--offset NS] [--tod-start NS] [--timeout S]``.  The script is a
JSON list of steps, run while the client is running after START:

* ``{"op": "get_tod"}``, ``{"op": "update"}`` (propagate_time),
  ``{"op": "broadcast", "value": V}``, ``{"op": "idle"}`` (one idle pass)
* ``{"op": "sleep", "ns": N}``, ``{"op": "sleep_until", "t": T}``,
  ``{"op": "ndelay", "ns": N}``, ``{"op": "read_clock", "count": K}``
* ``{"op": "wait_irq", "count": K, "delay_ns": D}``: idle until K more interrupts ran,
  each one's work due D ns after it came (default 0)
* ``{"op": "kick"}``: kick the device on the device line and wait for its reply
* ``{"op": "repeat", "count": K, "steps": [...]}``
* ``{"op": "exit", "linger": S}``: poweroff now (close while running); with ``linger``
  the process goes on S s of wall time after closing its socket
* error injection: ``{"op": "hang", "seconds": S, "mark": PATH}`` (forever without S;
  PATH is created when it starts),
  ``{"op": "raw", "hex": "0100"}``, ``{"op": "short_and_close", "bytes": 8}``,
  ``{"op": "unknown_op", "value": 127, "wait_ack": true}``,
  ``{"op": "send_as_calendar", "msg": "RUN"|"FREE_UNTIL", "time": T}``,
  ``{"op": "wrong_seq_ack", "delta": 1}`` (the next ACK we write is wrong),
  ``{"op": "get_storm", "seconds": S}`` (GETs back to back for S s of wall time);
  a script with any of these runs on a :class:`HostileTTClient`

At the end the client departs like a poweroff and writes the JSON of
:meth:`TTClient.result` plus ``status``.  Exit status: 0 ok, 2 protocol
failure (where UML panics; one line on stderr), 3 timeout, 1 other errors.
This module must stay cheap to import: benchmarks start many of these.
"""

from __future__ import annotations

from ns3_uml.testing.tt_client.client import TTClient, TTEvent
from ns3_uml.testing.tt_client.connection import TTConnection
from ns3_uml.testing.tt_client.errors import TTLinkBroken, TTPanic, TTTimeout
from ns3_uml.testing.tt_client.hostile import HostileTTClient
from ns3_uml.testing.tt_client.script import run_script
from ns3_uml.testing.tt_client.shm import ShmPage

__all__ = [
    "HostileTTClient",
    "ShmPage",
    "TTClient",
    "TTConnection",
    "TTEvent",
    "TTLinkBroken",
    "TTPanic",
    "TTTimeout",
    "run_script",
]
