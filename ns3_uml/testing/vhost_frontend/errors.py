"""What the reference vhost-user front-end raises about the back-end it drives."""

from __future__ import annotations

from ns3_uml.vhost_protocol import request_name

__all__ = [
    "RingBroken",
    "VhostBackendError",
    "VhostConnectionClosed",
    "VhostFrontendError",
    "VhostProtocolError",
    "VhostTimeout",
    "VhostUnsupported",
]


class VhostFrontendError(RuntimeError):
    """Base class of everything this front-end raises about the back-end."""


class VhostProtocolError(VhostFrontendError):
    """Where UML's vhost-user helpers return ``-EPROTO`` (bad flags, sizes)."""


class VhostBackendError(VhostFrontendError):
    """A REPLY_ACK carried a non-zero status ("slave reports error", ``-EIO`` in UML)."""

    def __init__(self, request: int, status: int) -> None:
        super().__init__(f"back-end reports error {status} for {request_name(request)}")
        self.request = request
        self.status = status


class VhostConnectionClosed(VhostFrontendError):
    """The back-end closed a socket (``-ECONNRESET``)."""


class VhostUnsupported(VhostFrontendError):
    """A negotiation outcome this reference does not model (UML would fall back)."""


class VhostTimeout(TimeoutError):
    """Our own guard: UML would block forever."""


class RingBroken(VhostFrontendError):
    """``BAD_RING()`` in virtio_ring.c: the queue is marked broken and stops."""
