"""The UML command line of a guest."""

from __future__ import annotations

from pathlib import Path

from ..vhost_protocol import VIRTIO_ID_CONSOLE, VIRTIO_ID_NET
from .config import GuestConfig, check_cmdline_word
from .init import init_command

__all__ = ["SEED_PARAM", "guest_argv"]

#: Name of UML's own run directory (pid file) inside ``workdir``.
UMID = "uml"
#: Kernel parameter that seeds all of a guest's randomness (patch 0003).
SEED_PARAM = "ns3uml.seed"


def guest_argv(kernel: Path | str, cfg: GuestConfig,
               time_travel: str | None = None) -> list[str]:
    """The UML command line for ``cfg``.

    ``time_travel`` (or ``cfg.time_travel``) overrides the default
    ``ext:<client_id>:<tt_socket>``, e.g. ``"inf-cpu"`` for a guest without calendar.
    """
    workdir = cfg.workdir_path
    check_cmdline_word("workdir", str(workdir))
    mode = time_travel or cfg.time_travel
    if mode is None:
        if cfg.tt_socket is None:
            raise ValueError(f"guest {cfg.name!r}: no tt_socket and no time_travel mode")
        check_cmdline_word("tt_socket", str(cfg.tt_socket))
        mode = f"ext:{cfg.client_id}:{cfg.tt_socket}"
    init, init_args = init_command(cfg)
    check_cmdline_word("init", init, forbid="")
    clock = []
    if cfg.tod_epoch_ns is not None:
        clock = [f"time-travel-start={cfg.tod_epoch_ns}"]
    elif not mode.startswith("ext:"):
        # Without a calendar the wall clock would start from the host's.
        clock = ["time-travel-start=0"]
    return [
        str(kernel),
        f"mem={cfg.memory}",
        f"time-travel={mode}",
        *clock,
        # The host's / read-only over hostfs.
        "root=/dev/root",
        "rootfstype=hostfs",
        "rootflags=/",
        "ro",
        f"init={init}",
        # Console 0 writes to stdout (console.log) and reads nothing; no other
        # consoles (they would allocate host ptys; serial lines are not built).
        "con=null",
        "con0=null,fd:1",
        # UML's pid file directory, inside the workdir instead of ~/.uml.
        f"uml_dir={workdir}",
        f"umid={UMID}",
        # No dummy0 with a random MAC in every guest (the driver is built in).
        "dummy.numdummies=0",
        # No simulated radios unless the user asks (mac80211_hwsim.radios=N in extra_args).
        "mac80211_hwsim.radios=0",
        # All of the guest's randomness comes from here (kernel patch 0003).
        f"{SEED_PARAM}={cfg.seed}",
        # One virtio-net device per interface; probed in this order: eth0, eth1, ...
        *(f"virtio_uml.device={iface.socket}:{VIRTIO_ID_NET}" for iface in cfg.interfaces),
        # The agent's console after them, so that the interfaces keep their numbers.
        *([f"virtio_uml.device={cfg.console_socket}:{VIRTIO_ID_CONSOLE}"]
          if cfg.console_socket is not None else []),
        # Devices of other processes last: they cannot change what comes before.
        *(f"virtio_uml.device={dev.socket}:{dev.device_id}" for dev in cfg.vhost_user_devices),
        "quiet",
        *cfg.extra_args,
        # The kernel hands what follows "--" to the init as its arguments.
        *(["--", *init_args] if init_args else []),
    ]

