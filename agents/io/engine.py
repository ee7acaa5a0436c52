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
    from agents.wireguard.device import Device

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


class CoreEngine:
    """A core's bound methods under the driver's names (zero per-packet overhead)."""

    def __init__(self, core: ConnlibCore) -> None:
        self.core = core
        self.on_network: Callable[[bytes, Endpoint, float], Output] = core.handle_network_input
        self.on_tun: Callable[[bytes, float], Output] = core.handle_tun_input
        self.on_timeout: Callable[[float], Output] = core.handle_timeout
        self.poll_timeout: Callable[[], float | None] = core.poll_timeout
