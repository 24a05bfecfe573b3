"""Reference vhost-user front-end behaving like a UML 6.12 guest's virtio-net interface.

:class:`VhostUserFrontend` plays ``arch/um/drivers/virtio_uml.c`` (the vhost-user transport)
together with what ``drivers/virtio/virtio_ring.c`` (split rings) and ``drivers/net/virtio_net.c``
(small RX buffers, TX chains, NAPI refill) do with the rings, so that tests can drive a
vhost-user back-end exactly the way a real guest would, and hold one side still.  It is the
driver's side of what ``bindings/model/`` implements for the device, one module per concern:

=================  ==========================================  ===========================
module             plays (Linux 6.12)                          device side (C++)
=================  ==========================================  ===========================
``memory``         setup_physmem / create_mem_file:            ``GuestMemory``
                   :class:`DriverMemory`
``ring``           virtqueue_add_split, get_buf_ctx_split:     ``Virtqueue``
                   :class:`SplitQueue`
``connection``     vhost_user_send / vhost_user_recv_*,        ``VhostUserBackend``
                   vu_req_read_message, vu_req_interrupt       (Dispatch, CallGuest)
``transport``      vhost_user_init, vu_finalize_features,      ``VhostUserBackend``
                   vhost_user_get_config, set_mem_table,
                   vu_find_vqs, vu_notify, vu_del_vqs
``frontend``       virtio_dev_probe, virtnet_probe/open,       ``VirtioNetDevice``
                   start_xmit, virtnet_poll, receive_buf:
                   :class:`VhostUserFrontend`
``hostile``        a broken or hostile driver:                 (rule 10 checks)
                   :class:`HostileFrontend`
=================  ==========================================  ===========================

The classes build on each other (``VhostUserConnection`` <- ``VhostUserTransport`` <-
``VhostUserFrontend`` <- ``HostileFrontend``) as ``VirtioNetDevice`` builds on
``VhostUserBackend`` on the device side.

Where UML would just log and go on (e.g. a malformed GET_CONFIG reply) the front-end does the
same and records the problem in :attr:`VhostUserFrontend.errors`; with ``strict=True`` (the
default) it raises instead, because for a test a silent UML-style fallback hides back-end bugs.
Hostile helpers (``corrupt_*``, ``send_*``) build broken ring states and messages for
robustness tests of the back-end; they never raise for what the back-end does in response.

Not thread-safe: one thread drives a front-end, like UML's single CPU.  Never imports ns-3.
"""

from __future__ import annotations

from ns3_uml.testing.vhost_frontend.connection import VhostMessage
from ns3_uml.testing.vhost_frontend.errors import (
    RingBroken,
    VhostBackendError,
    VhostConnectionClosed,
    VhostFrontendError,
    VhostProtocolError,
    VhostTimeout,
    VhostUnsupported,
)
from ns3_uml.testing.vhost_frontend.frontend import DEFAULT_ACCEPTED_FEATURES, VhostUserFrontend
from ns3_uml.testing.vhost_frontend.hostile import HostileFrontend, HostileResult
from ns3_uml.testing.vhost_frontend.memory import DEFAULT_RESERVED, DriverMemory
from ns3_uml.testing.vhost_frontend.ring import PostedChain, SplitQueue

__all__ = [
    "DEFAULT_ACCEPTED_FEATURES",
    "DEFAULT_RESERVED",
    "DriverMemory",
    "HostileFrontend",
    "HostileResult",
    "PostedChain",
    "RingBroken",
    "SplitQueue",
    "VhostBackendError",
    "VhostConnectionClosed",
    "VhostFrontendError",
    "VhostMessage",
    "VhostProtocolError",
    "VhostTimeout",
    "VhostUnsupported",
    "VhostUserFrontend",
]
