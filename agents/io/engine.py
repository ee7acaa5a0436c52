"""Adapters from the sans-IO cores to the driver's :class:`~agents.io.driver.Engine` protocol.

The drivers want every call to answer "(TUN writes, UDP transmits)". ``GatewayCore`` and
``ClientCore`` already return exactly that (their ``Output`` named tuple), so ``CoreEngine`` only
binds their methods under the driver's names: no wrapper call per packet. ``PeerEngine`` wraps a
bare WireGuard ``Device`` with a single peer (no packet filter): the smallest useful engine, for
IO-layer tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from .driver import Endpoint, Output

if TYPE_CHECKING:
    from agents.wireguard.device import Device, Transmit

_EMPTY: tuple[()] = ()


class PeerEngine:
    """Everything from the TUN goes to one peer; everything the peer sends goes to the TUN."""

    def __init__(self, device: Device, peer: bytes) -> None:
        self.device = device
        self.peer = peer

    def on_tun(self, packet: bytes, now: float) -> Output:
        return _EMPTY, self.device.encapsulate(self.peer, packet, now)

    def on_network(self, data: bytes, source: Endpoint, now: float) -> Output:
        d = self.device.decapsulate(data, source, now)
        if d.packet is not None and d.peer == self.peer:
            return (d.packet,), d.transmits
        return _EMPTY, d.transmits

    def on_timeout(self, now: float) -> Output:
        return _EMPTY, self.device.handle_timeout(now)

    def poll_timeout(self) -> float | None:
        return self.device.poll_timeout()


class ConnlibCore(Protocol):
    """The connlib-style surface of ``GatewayCore`` and ``ClientCore``."""

    def handle_network_input(self, data: bytes, source: Endpoint, now: float) -> Output: ...
    def handle_tun_input(self, packet: bytes, now: float) -> Output: ...
    def handle_timeout(self, now: float) -> Output: ...
    def poll_timeout(self) -> float | None: ...


RouteFn = Callable[[bytes, float], "bytes | None"]
NetworkBatchFn = Callable[[list[bytes], Endpoint, float], Output]
EncryptBatchFn = Callable[
    [bytes, list[bytes], float], "tuple[Endpoint | None, list[bytes], list[Transmit]]"
]


class CoreEngine:
    """A core's bound methods under the driver's names (zero per-packet overhead).

    Fast path: when the core can name the peer of a TUN packet without encrypting it
    (``GatewayCore.route``, ``ClientCore.route``: the decision and counters of
    ``handle_tun_input``) and its device seals many packets for one peer at once
    (``Device.encrypt_batch``), ``route``/``encrypt_batch`` are set and the offload driver
    routes a TSO super-packet once and seals all its segments in one call: every segment has the
    same addresses, protocol and ports, so one decision holds for all of them. Otherwise both
    are None and every segment goes through ``on_tun``. Likewise ``on_network_batch`` (the
    core's ``handle_network_batch``) takes a whole receive round from one source; None means
    per-datagram ``on_network`` calls. A wrapper that shares the core
    with other threads gets the fast path only by offering ``route``, ``encrypt_batch`` and
    ``handle_network_batch`` itself (under its own lock, as the portal's ``SharedCore`` does).
    """

    route: RouteFn | None
    encrypt_batch: EncryptBatchFn | None
    on_network_batch: NetworkBatchFn | None

    def __init__(self, core: ConnlibCore) -> None:
        self.core = core
        self.on_network: Callable[[bytes, Endpoint, float], Output] = core.handle_network_input
        self.on_tun: Callable[[bytes, float], Output] = core.handle_tun_input
        self.on_timeout: Callable[[float], Output] = core.handle_timeout
        self.poll_timeout: Callable[[], float | None] = core.poll_timeout
        # Receive batches: one call per run of datagrams from one source (offload drivers).
        self.on_network_batch: NetworkBatchFn | None = getattr(core, "handle_network_batch", None)
        route = getattr(core, "route", None)
        # A wrapper (e.g. a core behind a lock) may offer its own encrypt_batch; the device's
        # is only taken from a bare core, whose calls the driver already serializes.
        encrypt_batch = getattr(core, "encrypt_batch", None)
        if encrypt_batch is None:
            encrypt_batch = getattr(getattr(core, "device", None), "encrypt_batch", None)
        if callable(route) and callable(encrypt_batch):
            self.route, self.encrypt_batch = route, encrypt_batch
        else:
            self.route = self.encrypt_batch = None
