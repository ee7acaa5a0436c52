"""The client data plane as a pure state machine (WireGuard initiator).

Theory of operation
-------------------
The client knows one or more gateways (public key, endpoint, optional preshared key) and, for
each, the resource networks it serves. A packet read from TUN is routed by its destination with a
longest-prefix match over all gateways' networks (a per-destination cache makes the common case
one dict lookup) and handed to the WireGuard device, which encrypts it -- or queues it and starts
the handshake: the client is always the initiator. Packets to destinations no gateway serves, or
with a source that is not our tunnel address, are dropped and counted.

A datagram from the network is decrypted by the device; the inner packet is written to TUN only
if it came from a configured gateway, is addressed to our tunnel address, and its source is a
network that gateway serves for us (or it is an ICMP error about a packet we sent through that
gateway, e.g. the gateway's "administratively prohibited" or a router's "time exceeded").

`handle_timeout(now)` at `poll_timeout()` runs the WireGuard timers (handshake retries, keepalives:
gateways get a persistent keepalive by default so NAT mappings stay open).

Outputs are the same `Output` `(tun, udp)` tuples as the gateway core's; drops are counted in
`counters`. Not thread-safe (a multi-threaded driver serializes the calls).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from agents.gateway.core import (
    NOTHING,
    DeviceLike,
    Endpoint,
    Output,
    network_batch_per_datagram,
)
from agents.net.packet import ICMPV4_ERROR_TYPES, PROTO_ICMP, PROTO_ICMPV6, PacketInfo, parse
from agents.static_config import ClientGateway
from agents.wireguard.device import Transmit

DEFAULT_PERSISTENT_KEEPALIVE = 25
_CACHE_LIMIT = 4096
_tuple_new = tuple.__new__

FORWARDED_TO_GATEWAY = "forwarded_to_gateway"
FORWARDED_TO_TUN = "forwarded_to_tun"
DROPPED_NO_ROUTE = "dropped_no_route"
DROPPED_BAD_SOURCE = "dropped_bad_source"
DROPPED_MALFORMED = "dropped_malformed"
DROPPED_UNKNOWN_GATEWAY = "dropped_unknown_gateway"
DROPPED_UNEXPECTED = "dropped_unexpected"  # not for us, or not from a network of that gateway
WIREGUARD_PREFIX = "wireguard: "


@dataclass(frozen=True, slots=True)
class GatewayInfo:
    public_key: bytes
    endpoint: Endpoint
    networks: tuple[IPv4Network | IPv6Network, ...]
    preshared_key: bytes | None = field(default=None, repr=False)
    persistent_keepalive: int | None = DEFAULT_PERSISTENT_KEEPALIVE

    @classmethod
    def from_config(cls, gateway: ClientGateway, endpoint: Endpoint | None = None) -> GatewayInfo:
        """From a static config entry; `endpoint` = the resolved address when the configured
        host is a DNS name (the core never resolves names)."""
        return cls(
            public_key=gateway.public_key,
            endpoint=endpoint or gateway.endpoint,
            networks=gateway.resources,
            preshared_key=gateway.preshared_key,
            persistent_keepalive=gateway.persistent_keepalive,
        )


class _Routes:
    """Longest-prefix match over integer networks of one IP version."""

    __slots__ = ("bits", "cache", "masks", "tables")

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.tables: dict[int, dict[int, bytes]] = {}  # prefix length -> network -> gateway
        self.masks: tuple[tuple[int, dict[int, bytes]], ...] = ()  # longest prefix first
        self.cache: dict[int, bytes | None] = {}

    def rebuild(self, routes: Iterable[tuple[IPv4Network | IPv6Network, bytes]]) -> None:
        tables: dict[int, dict[int, bytes]] = {}
        for net, key in routes:
            # First configured gateway wins for an identical network.
            tables.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), key)
        full = (1 << self.bits) - 1
        self.tables = tables
        self.masks = tuple(
            (full ^ ((1 << (self.bits - plen)) - 1), tables[plen])
            for plen in sorted(tables, reverse=True)
        )
        self.cache = {}

    def lookup(self, addr: int) -> bytes | None:
        try:
            return self.cache[addr]
        except KeyError:
            pass
        found: bytes | None = None
        for mask, table in self.masks:
            found = table.get(addr & mask)
            if found is not None:
                break
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        self.cache[addr] = found
        return found


class ClientCore:
    def __init__(
        self,
        device: DeviceLike,
        ipv4: IPv4Address | str | None = None,
        ipv6: IPv6Address | str | None = None,
    ) -> None:
        self.device = device
        self.ipv4 = None if ipv4 is None else int(IPv4Address(ip_address(ipv4)))
        self.ipv6 = None if ipv6 is None else int(IPv6Address(ip_address(ipv6)))
        self._gateways: dict[bytes, GatewayInfo] = {}
        self._routes4 = _Routes(32)
        self._routes6 = _Routes(128)
        self.counters: dict[str, int] = dict.fromkeys(
            (
                FORWARDED_TO_GATEWAY,
                FORWARDED_TO_TUN,
                DROPPED_NO_ROUTE,
                DROPPED_BAD_SOURCE,
                DROPPED_MALFORMED,
                DROPPED_UNKNOWN_GATEWAY,
                DROPPED_UNEXPECTED,
            ),
            0,
        )

    # --- configuration --------------------------------------------------------------------------

    def add_gateway(self, gateway: GatewayInfo) -> None:
        """Add a gateway or replace its endpoint, keys and networks. Raises ValueError for a bad
        key."""
        self.device.add_peer(
            gateway.public_key,
            preshared_key=gateway.preshared_key,
            endpoint=gateway.endpoint,
            persistent_keepalive=gateway.persistent_keepalive,
        )
        self._gateways[gateway.public_key] = gateway
        self._rebuild()

    def remove_gateway(self, public_key: bytes) -> bool:
        if self._gateways.pop(public_key, None) is None:
            return False
        self.device.remove_peer(public_key)
        self._rebuild()
        return True

    def gateways(self) -> list[GatewayInfo]:
        return list(self._gateways.values())

    def gateway_for(self, address: IPv4Address | IPv6Address | str) -> bytes | None:
        """Which gateway a destination is routed to."""
        addr = ip_address(address) if isinstance(address, str) else address
        routes = self._routes4 if addr.version == 4 else self._routes6
        return routes.lookup(int(addr))

    def _rebuild(self) -> None:
        pairs = [(n, g.public_key) for g in self._gateways.values() for n in g.networks]
        self._routes4.rebuild((n, k) for n, k in pairs if n.version == 4)
        self._routes6.rebuild((n, k) for n, k in pairs if n.version == 6)

    # --- data path ------------------------------------------------------------------------------

    def route(self, packet: bytes, now: float) -> bytes | None:
        """The gateway a TUN packet goes to (None: dropped, and counted why). For drivers that
        batch the encryption themselves (`Device.encrypt_batch`); `handle_tun_input` does both
        steps."""
        info = parse(packet)
        if info is None:
            self.counters[DROPPED_MALFORMED] += 1
            return None
        if info.version == 4:
            if self.ipv4 is not None and info.src != self.ipv4:
                self.counters[DROPPED_BAD_SOURCE] += 1
                return None
            key = self._routes4.lookup(info.dst)
        else:
            if self.ipv6 is not None and info.src != self.ipv6:
                self.counters[DROPPED_BAD_SOURCE] += 1
                return None
            key = self._routes6.lookup(info.dst)
        if key is None:
            self.counters[DROPPED_NO_ROUTE] += 1
            return None
        self.counters[FORWARDED_TO_GATEWAY] += 1
        return key

    def handle_tun_input(self, packet: bytes, now: float) -> Output:
        key = self.route(packet, now)
        if key is None:
            return NOTHING
        return _tuple_new(Output, ((), self.device.encapsulate(key, packet, now)))

    def handle_network_input(self, data: bytes, source: Endpoint, now: float) -> Output:
        d = self.device.decapsulate(data, source, now)
        packet = d.packet
        transmits = d.transmits
        if packet is None:
            if d.error is not None:
                key = WIREGUARD_PREFIX + d.error
                self.counters[key] = self.counters.get(key, 0) + 1
            return _tuple_new(Output, ((), transmits)) if transmits else NOTHING
        if d.peer not in self._gateways:
            self.counters[DROPPED_UNKNOWN_GATEWAY] += 1
            return _tuple_new(Output, ((), transmits)) if transmits else NOTHING
        info = parse(packet)
        if info is None:
            self.counters[DROPPED_MALFORMED] += 1
        elif self._expected(packet, info, d.peer):
            self.counters[FORWARDED_TO_TUN] += 1
            return _tuple_new(Output, ((packet,), transmits))
        else:
            self.counters[DROPPED_UNEXPECTED] += 1
        return _tuple_new(Output, ((), transmits)) if transmits else NOTHING

    def handle_network_batch(
        self, datagrams: Sequence[bytes], source: Endpoint, now: float
    ) -> Output:
        """`handle_network_input` for many datagrams from one source (one Output for all, in
        order; identical results, counters and device state)."""
        decrypt_batch = getattr(self.device, "decrypt_batch", None)
        if decrypt_batch is None:
            return network_batch_per_datagram(self.handle_network_input, datagrams, source, now)
        tun: list[bytes] = []
        udp: list[Transmit] = []
        counters = self.counters
        gateways = self._gateways
        expected = self._expected
        forwarded = 0
        for peer, packet, transmits, error in decrypt_batch(datagrams, source, now):
            if transmits:
                udp.extend(transmits)
            if packet is None:
                if error is not None:
                    key = WIREGUARD_PREFIX + error
                    counters[key] = counters.get(key, 0) + 1
                continue
            if peer not in gateways:
                counters[DROPPED_UNKNOWN_GATEWAY] += 1
                continue
            info = parse(packet)
            if info is None:
                counters[DROPPED_MALFORMED] += 1
            elif expected(packet, info, peer):
                forwarded += 1
                tun.append(packet)
            else:
                counters[DROPPED_UNEXPECTED] += 1
        counters[FORWARDED_TO_TUN] += forwarded
        return _tuple_new(Output, (tun, udp))

    def _expected(self, packet: bytes, info: PacketInfo, gateway: bytes | None) -> bool:
        if info.version == 4:
            if self.ipv4 is not None and info.dst != self.ipv4:
                return False
            routes = self._routes4
        else:
            if self.ipv6 is not None and info.dst != self.ipv6:
                return False
            routes = self._routes6
        if routes.lookup(info.src) == gateway:
            return True
        # An ICMP error from elsewhere is fine if it is about a packet we sent via this gateway.
        if info.fragment:
            return False
        start = info.l4_offset + 8
        if info.protocol == PROTO_ICMP and info.src_port in ICMPV4_ERROR_TYPES:
            if len(packet) < start + 20 or packet[start] >> 4 != 4:
                return False
            quoted_dst = int.from_bytes(packet[start + 16 : start + 20], "big")
        elif info.protocol == PROTO_ICMPV6 and info.src_port < 128:
            if len(packet) < start + 40 or packet[start] >> 4 != 6:
                return False
            quoted_dst = int.from_bytes(packet[start + 24 : start + 40], "big")
        else:
            return False
        return routes.lookup(quoted_dst) == gateway

    # --- timers ---------------------------------------------------------------------------------

    def handle_timeout(self, now: float) -> Output:
        transmits = self.device.handle_timeout(now)
        return _tuple_new(Output, ((), transmits)) if transmits else NOTHING

    def poll_timeout(self) -> float | None:
        return self.device.poll_timeout()
