"""Linux 6.12's virtio-net driver (``drivers/net/virtio_net.c``) over UML's vhost-user
transport: feature choice, probe, small or mergeable RX buffers (with the receive offloads'
GSO headers checked as ``virtio_net_hdr_to_skb`` does), TX chains, NAPI refill.

The device it drives is ``VirtioNetDevice`` (``bindings/model/virtio-net-device.h``).
"""

from __future__ import annotations

import os
import time as _wall
from typing import Any, Iterable, Sequence

from ns3_uml.vhost_protocol import (
    ETH_ALEN,
    ETH_DATA_LEN,
    ETH_HLEN,
    ETH_MIN_MTU,
    GOOD_PACKET_LEN,
    LINUX_MRG_RX_BUF_LEN,
    LINUX_NAPI_BUDGET,
    LINUX_NET_DRIVER_FEATURES,
    LINUX_NET_DRIVER_FEATURES_LEGACY,
    NET_CONFIG_OFF_MAC,
    NET_CONFIG_OFF_MTU,
    NET_CONFIG_OFF_STATUS,
    NET_RX_QUEUE,
    NET_TX_QUEUE,
    VIRTIO_NET_HDR,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_ECN,
    VIRTIO_NET_HDR_GSO_NONE,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VIRTIO_NET_HDR_LEN,
    VIRTIO_NET_HDR_LEN_LEGACY,
    VIRTIO_NET_HDR_MRG,
    VIRTIO_NET_S_LINK_UP,
    NetFeature,
    VirtioFeature,
)
from ns3_uml.testing.vhost_frontend.errors import (
    RingBroken,
    VhostFrontendError,
    VhostTimeout,
    VhostUnsupported,
)
from ns3_uml.testing.vhost_frontend.ring import PostedChain, SplitQueue
from ns3_uml.testing.vhost_frontend.transport import VhostUserTransport

__all__ = ["DEFAULT_ACCEPTED_FEATURES", "VhostUserFrontend"]

TCP_CHECK_OFFSET = 16  # offsetof(struct tcphdr, check): where a TCP GSO frame's csum goes

#: Device features this reference front-end accepts by default.  It also implements the data
#: path of EVENT_IDX, the offloads and MRG_RXBUF with GUEST_TSO4/6/ECN (``features=``); Linux
#: would accept more (CTRL_VQ, INDIRECT...); what it would have accepted and we did not is
#: reported in ``declined_features``.
DEFAULT_ACCEPTED_FEATURES = (
    (1 << VirtioFeature.VERSION_1)
    | (1 << NetFeature.MAC)
    | (1 << NetFeature.STATUS)
    | (1 << NetFeature.MTU)
)


class VhostUserFrontend(VhostUserTransport):
    """UML 6.12's virtio_uml + virtio-net, reduced to what touches the back-end.

    ``socket_path``: the back-end's listening socket (UML connects).  ``mem_size``: UML's
    ``mem=``; ``reserved``: physical bytes below the shared region (UML's kernel image).
    ``queue_size``: 256 in UML (other values only to test the back-end).  ``tt``: a started
    :class:`~ns3_uml.testing.tt_client.TTClient` to couple with the time protocol as UML does.
    ``features``: device features we accept on top of Linux's choice (see
    :data:`DEFAULT_ACCEPTED_FEATURES`); ``protocol_features``: mask applied after UML's own.
    ``timeout``: seconds any wait may take (UML has none).  ``strict``: raise where UML would
    log and continue.  ``initial_index``: test-only start value of every ring's indices, sent
    in SET_VRING_BASE (UML always sends 0).
    """


    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *,
                 features: int = DEFAULT_ACCEPTED_FEATURES, **transport: Any) -> None:
        super().__init__(socket_path, **transport)
        self.accept_features = features
        self.mac: bytes | None = None
        self.mtu: int | None = None
        self.status: int | None = None  # virtio-net config status (None: no STATUS)
        self.hdr_len = VIRTIO_NET_HDR_LEN
        self.opened = False
        self.rx_headers: list[tuple[int, ...]] = []
        self._rx_frames: list[bytes] = []

    @property
    def mergeable(self) -> bool:
        """MRG_RXBUF: a received frame may span several RX buffers (``num_buffers``)."""
        return self.has_feature(NetFeature.MRG_RXBUF)

    @property
    def rx_buf_len(self) -> int:
        """Writable bytes per RX buffer, as ``add_recvbuf_small`` posts them, or
        ``add_recvbuf_mergeable`` at its average packet length's floor (not modelled: the
        EWMA that lets them grow to a page)."""
        return LINUX_MRG_RX_BUF_LEN if self.mergeable else self.hdr_len + GOOD_PACKET_LEN

    @property
    def rxq(self) -> SplitQueue:
        """The receive queue (0)."""
        return self.queues[NET_RX_QUEUE]

    @property
    def txq(self) -> SplitQueue:
        """The transmit queue (1)."""
        return self.queues[NET_TX_QUEUE]

    # ------------------------------------------------------------------
    # probe
    # ------------------------------------------------------------------
    def connect(self, *, open: bool = True) -> None:  # noqa: A002 - mirrors ndo_open
        """Probe like UML 6.12 + virtio-net, then (``open``) bring the interface up."""
        if self.connected:
            raise VhostFrontendError("already connected")
        self._connect_socket()
        self._vhost_user_init()
        self.registered = True                  # register_virtio_device()
        self._negotiate()
        self._virtnet_probe()
        self.connected = True
        if open:
            self.open()


    def _negotiate(self) -> None:
        """``virtio_dev_probe()``: driver table & device, transport bits kept, finalize,
        validate, finalize again if validate changed anything."""
        if self.device_features >> VirtioFeature.VERSION_1 & 1:
            driver = LINUX_NET_DRIVER_FEATURES
        else:
            driver = LINUX_NET_DRIVER_FEATURES_LEGACY
        self._choose_features(driver, self.accept_features)
        before = self._vdev_features
        self._virtnet_validate()
        if self._vdev_features != before:
            # "Did validation change any features? Then write them again."
            self._vu_finalize_features()

    def _virtnet_validate(self) -> None:
        if not self.has_feature(NetFeature.CTRL_VQ):
            for bit in (NetFeature.CTRL_RX, NetFeature.CTRL_VLAN, NetFeature.GUEST_ANNOUNCE,
                        NetFeature.MQ, NetFeature.CTRL_MAC_ADDR, NetFeature.RSS,
                        NetFeature.HASH_REPORT, NetFeature.NOTF_COAL,
                        NetFeature.VQ_NOTF_COAL):
                if self.has_feature(bit):
                    raise VhostUnsupported(f"{bit.name} without CTRL_VQ: virtio-net probe "
                                           "fails with -EINVAL")
        if self.has_feature(NetFeature.MTU):
            mtu = self._cread16(NET_CONFIG_OFF_MTU)
            if mtu is not None and mtu < ETH_MIN_MTU:
                self._vdev_features &= ~(1 << NetFeature.MTU)

    def _cread16(self, offset: int) -> int | None:
        data = self.read_config(offset, 2)
        return None if data is None else int.from_bytes(data, "little")

    def _virtnet_probe(self) -> None:
        if self.has_feature(NetFeature.MAC):
            # virtio_cread_bytes(): one config get per byte -> GET_CONFIG sizes 1..6
            mac = bytearray(ETH_ALEN)
            complete = True
            for i in range(ETH_ALEN):
                b = self.read_config(NET_CONFIG_OFF_MAC + i, 1)
                if b is None:
                    complete = False
                else:
                    mac[i] = b[0]
            # a failed read leaves UML's on-stack buffer as it was: undefined bytes
            self.mac = bytes(mac) if complete else None
            if not complete:
                self._warn("MAC read failed: UML would use uninitialised stack bytes")
        if self.has_feature(VirtioFeature.VERSION_1) or self.has_feature(NetFeature.MRG_RXBUF):
            self.hdr_len = VIRTIO_NET_HDR_LEN
        else:
            self.hdr_len = VIRTIO_NET_HDR_LEN_LEGACY
        guest_gso = self.has_feature(NetFeature.GUEST_TSO4) or self.has_feature(
            NetFeature.GUEST_TSO6)
        if guest_gso and not self.mergeable:
            raise VhostUnsupported("GUEST_TSO without MRG_RXBUF: Linux would post big-packet "
                                   "RX chains, not modelled here")
        if self.has_feature(NetFeature.MTU):
            self.mtu = self._cread16(NET_CONFIG_OFF_MTU)
            if self.mtu is not None and self.mtu > ETH_DATA_LEN:
                raise VhostUnsupported(f"MTU {self.mtu} > {ETH_DATA_LEN}: Linux would post "
                                       "big-packet RX chains, not modelled here")
        self._find_vqs()


    def open(self) -> None:
        """``virtnet_open()``: fill the RX ring, kick it, then the deferred status read."""
        if self.opened:
            return
        self._try_fill_recv()
        self.opened = True
        if self.has_feature(NetFeature.STATUS):
            # virtio_config_driver_enable() runs the config change deferred in probe
            self._config_changed()
        else:
            self.status = VIRTIO_NET_S_LINK_UP

    def _config_changed(self) -> None:
        """``virtnet_config_changed_work()``: read the status word."""
        if not self.has_feature(NetFeature.STATUS):
            return
        self.stats["config_changes_handled"] += 1
        value = self._cread16(NET_CONFIG_OFF_STATUS)
        if value is not None:
            self.status = value


    def _config_interrupt(self) -> None:
        # before ndo_open the driver defers it; open() reads the status anyway
        if self.opened:
            self._config_changed()

    # ------------------------------------------------------------------
    # TX
    # ------------------------------------------------------------------
    def _net_header(self) -> bytes:
        # no offloads: all zero; num_buffers is 0 on TX (only set by the device on RX)
        if self.hdr_len == VIRTIO_NET_HDR_LEN:
            return VIRTIO_NET_HDR_MRG.pack(0, 0, 0, 0, 0, 0, 0)
        return VIRTIO_NET_HDR.pack(0, 0, 0, 0, 0, 0)

    def reclaim_tx(self) -> int:
        """``free_old_xmit()``: take back every used TX chain; returns how many."""
        n = 0
        while True:
            got = self.txq.get_buf()
            if got is None:
                break
            n += 1
            self.stats["tx_completed"] += 1
        self._check_broken(self.txq)
        return n

    def _add_tx(self, frame: bytes, chain: Sequence[int] | None) -> int:
        data = self._net_header() + bytes(frame)
        lengths = list(chain) if chain is not None else [len(data)]
        if sum(lengths) != len(data) or any(n <= 0 for n in lengths):
            raise ValueError(f"chain lengths {lengths} must be positive and add up to "
                             f"{len(data)} (header {self.hdr_len} + frame {len(frame)})")
        segments, bufs, pos = [], [], 0
        for n in lengths:
            addr = self.mem.alloc(n)
            self.mem.write(addr, data[pos:pos + n])
            bufs.append((addr, n))
            segments.append((addr, n, False))
            pos += n
        return self.txq.add(segments, PostedChain("tx", [], bufs, lengths, frame))

    def send_frames(self, frames: Iterable[bytes], *,
                    chain: Sequence[int] | None = None, kick: bool = True) -> list[int]:
        """``start_xmit()`` for several frames with xmit_more: one kick at the end.

        ``chain`` splits each [header + frame] byte stream over descriptors of these
        lengths (default: one descriptor, the driver's ``can_push`` case).  Returns heads.
        """
        if not self.connected:
            raise VhostFrontendError("not connected")
        txq = self.txq
        heads = []
        for frame in frames:
            # napi_tx: disable callbacks, free old buffers, re-enable (delayed)
            txq.disable_cb()
            self.reclaim_tx()
            txq.enable_cb_delayed()
            needed = len(chain) if chain is not None else 1
            if txq.num_free < needed:
                raise VhostFrontendError(f"TX queue full ({txq.num_free} free): the back-end "
                                         "does not return TX buffers")
            heads.append(self._add_tx(frame, chain))
            self.stats["tx_frames"] += 1
            self.stats["tx_bytes"] += len(frame)
        if kick and heads:
            self.kick(NET_TX_QUEUE)
        self.reclaim_tx()
        return heads

    def send_frame(self, frame: bytes, *, chain: Sequence[int] | None = None,
                   kick: bool = True) -> int:
        """Post one frame on the TX queue (see :meth:`send_frames`); returns the head."""
        return self.send_frames([frame], chain=chain, kick=kick)[0]

    # ------------------------------------------------------------------
    # RX
    # ------------------------------------------------------------------
    def _add_rx(self, size: int) -> int:
        addr = self.mem.alloc(size)
        return self.rxq.add([(addr, size, True)], PostedChain("rx", [], [(addr, size)], [size]))

    def _try_fill_recv(self) -> int:
        """``try_fill_recv()``: small buffers until the ring is full, then one kick."""
        n = 0
        while self.rxq.num_free:
            self._add_rx(self.rx_buf_len)
            n += 1
        self.stats["rx_posted"] += n
        self.kick(NET_RX_QUEUE)
        return n

    def post_rx_buffers(self, n: int | None = None, size: int | None = None, *,
                        kick: bool = True) -> int:
        """Post ``n`` writable one-descriptor buffers of ``size`` bytes and kick queue 0.

        Defaults: as many as fit, ``hdr_len + 1518`` bytes each (what the driver posts).
        """
        size = self.rx_buf_len if size is None else size
        count = self.rxq.num_free if n is None else min(n, self.rxq.num_free)
        for _ in range(count):
            self._add_rx(size)
        self.stats["rx_posted"] += count
        if kick and count:
            self.kick(NET_RX_QUEUE)
        return count

    def _receive_buf(self, chain: PostedChain, length: int) -> None:
        """``receive_buf()`` + ``receive_small()`` or ``receive_mergeable()`` for one used RX
        buffer (and, with MRG_RXBUF, the ``num_buffers - 1`` after it)."""
        hdr_len = self.hdr_len
        room = sum(chain.lengths)
        if length < hdr_len + ETH_HLEN:
            self.stats["rx_length_errors"] += 1
            self._warn(f"short packet {length}")
            return
        frame_len = length - hdr_len
        if length > room or (not self.mergeable and frame_len > GOOD_PACKET_LEN):
            self.stats["rx_length_errors"] += 1
            self._warn(f"rx error: len {frame_len} exceeds max size {GOOD_PACKET_LEN}")
            return
        addr = chain.bufs[0][0]
        raw_hdr = self.mem.read(addr, hdr_len)
        if hdr_len == VIRTIO_NET_HDR_LEN:
            hdr = VIRTIO_NET_HDR_MRG.unpack(raw_hdr)
            # Linux ignores num_buffers without MRG_RXBUF; a device should still write 1
            if not self.mergeable and hdr[6] != 1:
                self.stats["rx_bad_num_buffers"] += 1
                self._warn(f"RX header num_buffers {hdr[6]} != 1")
        else:
            hdr = VIRTIO_NET_HDR.unpack(raw_hdr)
        frame = self.mem.read(addr + hdr_len, frame_len)
        if self.mergeable:
            num_buf = hdr[6]
            if num_buf < 1:
                self.stats["rx_length_errors"] += 1
                self._warn(f"RX header num_buffers {num_buf} < 1")
                return
            for i in range(1, num_buf):
                got = self.rxq.get_buf()
                if got is None:
                    self.stats["rx_length_errors"] += 1
                    self._warn(f"rx error: {num_buf - i} buffers out of {num_buf} missing")
                    return
                more, more_len = got
                if more_len > sum(more.lengths):
                    self.stats["rx_length_errors"] += 1
                    self._warn(f"rx error: len {more_len} > truesize {sum(more.lengths)}")
                    return
                frame += self.mem.read(more.bufs[0][0], more_len)
            self.stats["rx_buffers"] += num_buf
        problem = self._check_rx_gso(hdr, frame)
        if problem:
            self.stats["rx_gso_errors"] += 1
            self._warn(problem)
            return
        self.rx_headers.append(hdr)
        self._rx_frames.append(frame)
        self.stats["rx_frames"] += 1
        self.stats["rx_bytes"] += len(frame)

    def _check_rx_gso(self, hdr: tuple[int, ...], frame: bytes) -> str | None:
        """What ``virtio_net_hdr_to_skb()`` and the feature rules refuse in an RX header."""
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = hdr[:6]
        if gso_type == VIRTIO_NET_HDR_GSO_NONE:
            return None
        kind = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
        needs = {VIRTIO_NET_HDR_GSO_TCPV4: NetFeature.GUEST_TSO4,
                 VIRTIO_NET_HDR_GSO_TCPV6: NetFeature.GUEST_TSO6}.get(kind)
        if needs is None or not self.has_feature(needs):
            return f"RX gso_type {gso_type:#x} not negotiated"
        if gso_type & VIRTIO_NET_HDR_GSO_ECN and not self.has_feature(NetFeature.GUEST_ECN):
            return "RX gso_type with ECN, GUEST_ECN not negotiated"
        if gso_size == 0:
            return "RX GSO frame with gso_size 0"
        if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return "RX GSO frame without NEEDS_CSUM"  # Linux would probe; a device sets it
        if csum_offset != TCP_CHECK_OFFSET or csum_start + 20 > len(frame):
            return f"RX GSO frame with csum_start {csum_start}, csum_offset {csum_offset}"
        if hdr_len > len(frame):
            return f"RX GSO frame with hdr_len {hdr_len} past its {len(frame)} bytes"
        return None

    def napi_poll(self) -> None:
        """``virtnet_poll()``: budgeted receive, refill when over half the budget is free."""
        rq = self.rxq
        rq.disable_cb()
        while True:
            received = 0
            while received < LINUX_NAPI_BUDGET:
                got = rq.get_buf()
                if got is None:
                    break
                self._receive_buf(*got)
                received += 1
            if rq.num_free > min(LINUX_NAPI_BUDGET, rq.num) // 2:
                self._try_fill_recv()
            # virtnet_poll_cleantx(): the RX NAPI also frees finished TX buffers
            self.reclaim_tx()
            if received < LINUX_NAPI_BUDGET:
                rq.enable_cb_prepare()
                if not rq.more_used() or rq.broken:
                    break
                rq.disable_cb()
        self._check_broken(rq)

    def received_frames(self, timeout: float = 0.0, *, poll_ring: bool = False) -> list[bytes]:
        """Frames received so far (header stripped), after serving the backend channel.

        Like Linux, used RX entries are only looked at after a VRING_CALL; ``poll_ring``
        also drains the used ring without one (a back-end that forgets to call).
        """
        self.poll(timeout)
        if poll_ring:
            self.napi_poll()
        frames, self._rx_frames = self._rx_frames, []
        return frames

    def wait_frames(self, count: int, timeout: float | None = None) -> list[bytes]:
        """Serve the backend channel until ``count`` frames arrived; returns them all."""
        deadline = self._deadline(timeout)
        while len(self._rx_frames) < count:
            left = None if deadline is None else deadline - _wall.monotonic()
            if left is not None and left <= 0:
                raise VhostTimeout(f"{len(self._rx_frames)} of {count} frames arrived")
            self.poll(left if left is not None else 3600.0)
        frames, self._rx_frames = self._rx_frames, []
        return frames

    def _check_broken(self, vq: SplitQueue) -> None:
        if vq.broken and not vq.reported:
            vq.reported = True
            self.errors.append(f"queue {vq.index} broken: {vq.broken_reason}")
            raise RingBroken(f"queue {vq.index}: {vq.broken_reason}")


    # ------------------------------------------------------------------
    # vring callbacks
    # ------------------------------------------------------------------
    def _vring_interrupt(self, vq: SplitQueue) -> None:
        if not vq.more_used():
            self.stats["spurious_calls"] += 1
            return
        if vq.broken:
            return
        if vq.event:
            vq.event_triggered = True  # vring_interrupt(): until callbacks are re-enabled
        if vq.index == NET_RX_QUEUE:
            if self.opened:
                self.napi_poll()
        elif vq.index == NET_TX_QUEUE:
            self.reclaim_tx()


    def result(self) -> dict[str, Any]:
        """Counters and negotiation outcome, JSON-ready."""
        return {
            "device_features": self.device_features,
            "features": self.features,
            "linux_features": self.linux_features,
            "declined_features": self.declined_features,
            "protocol_features": self.protocol_features,
            "mac": None if self.mac is None else self.mac.hex(":"),
            "mtu": self.mtu,
            "status": self.status,
            "hdr_len": self.hdr_len,
            "stats": dict(self.stats),
            "sent": dict(self.sent),
            "received": dict(self.received),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }

