"""Adapters from the sans-IO cores to the driver's :class:`~agents.io.driver.Engine` protocol.

The drivers want every call to answer "(TUN writes, UDP transmits)". ``PeerEngine`` wraps a bare
WireGuard ``Device`` with a single peer (no packet filter): it is the smallest useful engine and
serves IO-layer tests and benchmarks. The gateway and client cores get their adapters in
``GatewayEngine`` / ``ClientEngine``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .driver import Endpoint, Output, TransmitLike

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


def _as_transmits(items: Sequence[TransmitLike]) -> Sequence[TransmitLike]:
    return items
