"""Reference client of the UM time-travel protocol, modelled on UML 6.12.

The class :class:`TTClient` speaks the client ("host") side of the protocol the
way ``arch/um/kernel/time.c`` of Linux 6.12 does, function by function:

=============================  ===========================================
time.c                         here
=============================  ===========================================
time_travel_set_time           ``_set_time``
time_travel_setup_shm          ``_setup_shm``
time_travel_handle_message     ``_handle_message``
time_travel_ext_req            ``ext_req``
time_travel_ext_update_request ``ext_update_request``
__time_travel_propagate_time   ``propagate_time``
time_travel_ext_request        ``ext_request``
time_travel_ext_wait           ``ext_wait``
time_travel_ext_get_time       ``ext_get_time``
__time_travel_update_time      ``_update_time_once``
__time_travel_add_event        ``add_event``
time_travel_del_event          ``del_event``
time_travel_update_time        ``update_time``
time_travel_ndelay             ``ndelay``
time_travel_add_irq_event      ``add_irq_event``
time_travel_sleep              ``idle_sleep``
time_travel_set_start          ``get_tod`` (returns what
                               read_persistent_clock64 computes)
timer_read                     ``read_clock``
bc_store                       ``broadcast``
=============================  ===========================================

A vhost-user device interrupt is modelled by an "irq" stream socket: every
byte that arrives on it is one interrupt message, handled like
``vu_req_read_message`` does (``time_travel_add_irq_event``, then one reply
byte).  Interrupts are taken where UML takes SIGIO time-travel handlers: while
waiting for RUN, and at interrupt points while running, never inside an ACK
wait (UML blocks signals hard there and runs the handlers right after).

Everything UML would ``panic()`` or ``BUG_ON()`` on raises :class:`TTPanic`.

``client`` holds :class:`TTClient` (time.c), ``script`` the JSON steps
(:func:`run_script`), ``__main__`` the command line.

Command line: ``python -m ns3_uml.testing.tt_client --socket PATH --id N
[--no-shm] [--script JSON|@file] [--out FILE] [--irq-socket PATH] [--offset NS]
[--tod-start NS] [--timeout S]``.  The script is a JSON list of steps, run
while the client is running after START:

* ``{"op": "get_tod"}``, ``{"op": "update"}`` (propagate_time),
  ``{"op": "broadcast", "value": V}``, ``{"op": "idle"}`` (one idle pass)
* ``{"op": "sleep", "ns": N}``, ``{"op": "sleep_until", "t": T}``,
  ``{"op": "ndelay", "ns": N}``, ``{"op": "read_clock", "count": K}``
* ``{"op": "wait_irq", "count": K}``: idle until K more interrupts ran
* ``{"op": "repeat", "count": K, "steps": [...]}``
* ``{"op": "exit"}``: poweroff now (close while running)
* error injection: ``{"op": "hang", "seconds": S}`` (forever without S),
  ``{"op": "raw", "hex": "0100"}``, ``{"op": "short_and_close", "bytes": 8}``,
  ``{"op": "unknown_op", "value": 127, "wait_ack": true}``,
  ``{"op": "send_as_calendar", "msg": "RUN"|"FREE_UNTIL", "time": T}``,
  ``{"op": "wrong_seq_ack", "delta": 1}`` (the next ACK we write is wrong)

At the end the client departs like a poweroff and writes the JSON of
:meth:`TTClient.result` plus ``status``.  Exit status: 0 ok, 2 protocol
failure (where UML panics; one line on stderr), 3 timeout, 1 other errors.
This module must stay cheap to import: benchmarks start many of these.
"""

from __future__ import annotations

from ns3_uml.testing.tt_client.client import (
    TTClient,
    TTEvent,
    TTLinkBroken,
    TTPanic,
    TTTimeout,
)
from ns3_uml.testing.tt_client.script import run_script

__all__ = ["TTClient", "TTEvent", "TTLinkBroken", "TTPanic", "TTTimeout", "run_script"]
