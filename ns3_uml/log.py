"""ns3-uml's messages: ``logging`` loggers under ``ns3_uml``, shown by default.

Every module logs to ``logging.getLogger(__name__)``. Some messages matter to a user who
configured nothing ("building the guest kernel (takes minutes)"), so the ``ns3_uml``
logger passes INFO and up, and a fallback handler prints them to stderr as
``ns3-uml: <message>`` for as long as the application has not configured logging (the
root logger has no handler). Once it has, the records go to the application's handlers
only. ``logging.getLogger("ns3_uml").setLevel(logging.WARNING)`` keeps only warnings.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ROOT", "get_logger"]

#: The logger every ns3-uml module's logger is below.
ROOT = "ns3_uml"


class _Fallback(logging.Handler):
    """Like ``logging.lastResort``, but from INFO on and for ns3-uml's loggers only."""

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return  # the application's own handlers get the record (it propagates)
        try:
            # sys.stderr at the time of the message (tests and notebooks replace it).
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 (as logging itself: never raise from a message)
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return f"ns3-uml: {level}{record.getMessage()}"


def _install() -> None:
    logger = logging.getLogger(ROOT)
    if any(isinstance(h, _Fallback) for h in logger.handlers):
        return
    handler = _Fallback()
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` for a module of ns3-uml, with the fallback installed."""
    _install()
    return logging.getLogger(name)
