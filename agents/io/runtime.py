"""Process runtime shared by the agents' CLIs: bring the data plane up, run it, tear it down.

``serve()`` owns the order of side effects: TUN device (addresses, routes), UDP socket, then -
for a gateway - IP forwarding and the nftables masquerade table; it runs the IO driver until
SIGTERM/SIGINT and always removes the nftables table and the device again, also when something
fails half-way. The data plane configuration itself (peers, authorizations, gateways) is done on
the core before calling ``serve`` (static mode) or live while it runs (portal mode).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from . import driver as drv
from .engine import ConnlibCore, CoreEngine
from .nft import Masquerade, enable_forwarding
from .tun import DEFAULT_MTU, Interface, Network, TunDevice, create_tun, generate_name
from .udp import open_udp

log = logging.getLogger(__name__)

# The fastest mode measured by benchmarks/dataplane.py (docs/dataplane.md has the table).
DEFAULT_IO_MODE = "offload-single"


@dataclass
class DataPlaneSpec:
    """Everything ``serve`` needs besides the core."""

    addresses: Sequence[Interface]
    routes: Sequence[Network] = ()
    listen_port: int = 0
    ifname: str | None = None
    io_mode: str = DEFAULT_IO_MODE
    mtu: int = DEFAULT_MTU
    masquerade: bool = False  # gateway: forwarding + nftables masquerade of tunnel traffic
    nft_table: str | None = None
    on_ready: Callable[[TunDevice], None] | None = None
    on_driver: Callable[[drv.Driver], None] | None = None  # e.g. to keep its kick()
    extra_log: dict[str, Any] = field(default_factory=dict)


def add_runtime_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, log_level_default: str = "info"
) -> None:
    """The flags every agent CLI shares: IO mode, device name, log format and level."""
    parser.add_argument(
        "--io-mode",
        metavar="MODE",
        choices=drv.MODES,
        default=DEFAULT_IO_MODE,
        help=f"data plane IO structure: {', '.join(drv.MODES)} (default: {DEFAULT_IO_MODE}, "
        "the fastest measured)",
    )
    parser.add_argument(
        "--ifname", metavar="NAME", help="TUN device name (default: generated, fz + random hex)"
    )
    parser.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    parser.add_argument(
        "--log-level",
        metavar="LEVEL",
        default=log_level_default,
        choices=["debug", "info", "warning", "error"],
        help=f"debug, info, warning or error (default: {log_level_default}; "
        "env FIREZONE_LOG_LEVEL)",
    )


def wall_offset() -> float:
    """Offset from the monotonic clock to unix time, for WireGuard's TAI64N timestamps."""
    return time.time() - time.monotonic()


def serve(core: ConnlibCore, spec: DataPlaneSpec, stop: threading.Event | None = None) -> int:
    """Run the data plane until a signal (or ``stop``); returns the process exit code."""
    if spec.io_mode not in drv.MODES:
        raise ValueError(f"unknown io mode {spec.io_mode!r}")
    ifname = spec.ifname or generate_name("fz")
    tun: TunDevice | None = None
    masq: Masquerade | None = None
    driver: drv.Driver | None = None
    sock = None
    previous: dict[signal.Signals, Any] = {}
    # Signals are caught from the start: one that arrives during setup must still lead through
    # the cleanup below (a default SIGTERM would leave the nftables table behind).
    requested: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        requested.append(signum)
        if driver is not None:
            driver.stop()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        tun = create_tun(
            ifname,
            addresses=spec.addresses,
            routes=spec.routes,
            mtu=spec.mtu,
            vnet_hdr=drv.needs_vnet_hdr(spec.io_mode),
        )
        sock = open_udp(spec.listen_port)
        if spec.masquerade:
            enable_forwarding()
            masq = Masquerade(spec.nft_table or f"fz_{ifname}", tun.name)
            masq.start()
        driver = drv.make_driver(spec.io_mode, CoreEngine(core), tun, sock)
        the_driver = driver
        if spec.on_driver is not None:
            spec.on_driver(driver)
        if requested:
            return 0
        if stop is not None:
            stop_event = stop

            def stop_when_set() -> None:
                stop_event.wait()
                the_driver.stop()

            threading.Thread(target=stop_when_set, daemon=True, name="fz-stop").start()
        log.info(
            "data plane up",
            extra={
                "ifname": tun.name,
                "listen_port": sock.getsockname()[1],
                "io_mode": spec.io_mode,
                "mtu": spec.mtu,
                **spec.extra_log,
            },
        )
        if spec.on_ready is not None:
            spec.on_ready(tun)
        driver.run()
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if masq is not None:
            masq.stop()
        if tun is not None:
            tun.close()
        if sock is not None:
            sock.close()
        if driver is not None:
            driver.close()
