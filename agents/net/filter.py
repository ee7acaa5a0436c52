"""The gateway's per-peer authorization table (the packet filter).

Theory of operation
-------------------
Each WireGuard peer (a client device) has tunnel addresses and a set of *authorizations*: "this
peer may reach resource R until time T". Resources are shared by id across peers, so a live
change of a resource's filters (`update_resource`) applies to every peer that holds it at once.

Whenever a peer's authorizations or a resource change, the peer's rules are *compiled* into two
flat tuples (one per IP version) of ``(network, mask, internet, spec, expires_at)`` entries over
integer addresses; the per-packet path then does no allocation beyond the parse, no `ipaddress`
objects, and one dict lookup per peer.

Packets from a peer (`decide_outbound`), in order:
1. unparseable -> DROP_MALFORMED; unknown peer -> DROP_UNKNOWN_PEER;
2. source is not the peer's own tunnel address of that IP version -> DROP_SPOOFED;
3. destination inside the tunnel ranges (another client, the gateway itself) -> REJECT;
4. an unexpired authorization whose resource contains the destination and whose filters let the
   protocol/port through -> FORWARD; anything else -> REJECT (the caller answers ICMP
   administratively prohibited).

Packets towards a peer (`route_inbound`, TUN -> tunnel): the destination must be a peer's tunnel
address; the source must lie in a resource the peer is currently authorized for and the packet
must look like a reply permitted by that resource's filters (TCP/UDP source port in the ranges,
ICMP echo reply). ICMP errors are routed when the packet they quote was sent by the peer to a
destination it is authorized for.

Filters: an empty filter list allows everything. TCP/UDP filters allow the listed destination port
ranges (empty = all ports). An ICMP filter allows ICMP and ICMPv6 echo (request outbound, reply
inbound). Non-first fragments carry no ports: they pass when their protocol is allowed at all
for their IP version (the first fragment, which carries the ports, is checked; without it nothing
reassembles). "Allowed for their IP version" matters for ICMP: an icmp filter compiles to
protocol 1 in the IPv4 table and 58 in the IPv6 table only, so an IPv4 fragment claiming ICMPv6
(or an IPv6 one claiming ICMPv4) is refused like its unfragmented form, which the parser drops.

Internet resources match any *public* destination; private (RFC 1918, fc00::/7), loopback,
link-local, CGNAT (100.64.0.0/10, which holds the tunnel ranges), multicast, unspecified,
broadcast/reserved and IPv4-mapped/compatible IPv6 destinations are refused.

Expiry is checked per packet against `now`; `expire(now)` only prunes the table (and tells the
caller what ended) and `next_expiry()` says when that is next worth doing.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Literal

from agents.net.packet import (
    ICMPV4_ECHO_REPLY,
    ICMPV4_ECHO_REQUEST,
    ICMPV4_ERROR_TYPES,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    PacketInfo,
    parse,
)

Protocol = Literal["tcp", "udp", "icmp"]
ResourceKind = Literal["cidr", "ip", "dns", "internet"]

TUNNEL_IPV4 = IPv4Network("100.64.0.0/11")
TUNNEL_IPV6 = IPv6Network("fd00:2021:1111::/107")

_INF = math.inf


class Verdict(enum.IntEnum):
    FORWARD = 0
    REJECT = 1  # the caller answers ICMP administratively prohibited
    DROP_SPOOFED = 2
    DROP_MALFORMED = 3
    DROP_UNKNOWN_PEER = 4


FORWARD = Verdict.FORWARD
REJECT = Verdict.REJECT
DROP_SPOOFED = Verdict.DROP_SPOOFED
DROP_MALFORMED = Verdict.DROP_MALFORMED
DROP_UNKNOWN_PEER = Verdict.DROP_UNKNOWN_PEER


class UnknownPeerError(KeyError):
    """An authorization was given for a peer that `set_peer` never registered."""


@dataclass(frozen=True, slots=True)
class PortRange:
    start: int
    end: int

    def __post_init__(self) -> None:
        if not (0 <= self.start <= self.end <= 65535):
            raise ValueError(f"invalid port range {self.start}-{self.end}")

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """ "443" or "1000-2000" (ValueError otherwise)."""
        lo, sep, hi = text.strip().partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise ValueError(f"invalid port range {text!r}: expected '443' or '1000-2000'")
        start = int(lo)
        return cls(start, int(hi) if sep else start)

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


@dataclass(frozen=True, slots=True)
class Filter:
    protocol: Protocol
    ports: tuple[PortRange, ...] = ()  # () = all ports (ignored for icmp)

    def __post_init__(self) -> None:
        if self.protocol not in ("tcp", "udp", "icmp"):
            raise ValueError(f"invalid filter protocol {self.protocol!r}")


@dataclass(frozen=True, slots=True)
class ResourceRule:
    resource_id: str
    kind: ResourceKind
    networks: tuple[IPv4Network | IPv6Network, ...]  # empty for internet
    filters: tuple[Filter, ...] = ()  # () = everything allowed

    def __post_init__(self) -> None:
        if self.kind not in ("cidr", "ip", "dns", "internet"):
            raise ValueError(f"invalid resource kind {self.kind!r}")


# --- compiled form ------------------------------------------------------------------------------

# protocol number -> port ranges (empty = all ports); a missing protocol is not allowed at all.
# None = no filters = everything allowed.
_Spec = dict[int, tuple[tuple[int, int], ...]] | None
# (network, mask, internet, spec, expires_at)
_Entry = tuple[int, int, bool, _Spec, float]


def _compile_filters(filters: tuple[Filter, ...], version: int) -> _Spec:
    """The spec for one IP version: an icmp filter is ICMP (1) in IPv4 and ICMPv6 (58) in IPv6,
    never the other family's number (a non-first fragment is let through on its protocol number
    alone, so a cross-family number here would forward what the parser drops unfragmented)."""
    if not filters:
        return None
    spec: dict[int, list[tuple[int, int]] | None] = {}
    for f in filters:
        if f.protocol == "icmp":
            spec[PROTO_ICMP if version == 4 else PROTO_ICMPV6] = None
            continue
        proto = PROTO_TCP if f.protocol == "tcp" else PROTO_UDP
        if not f.ports:
            spec[proto] = None
            continue
        current = spec.get(proto, [])
        if current is not None:
            current.extend((r.start, r.end) for r in f.ports)
            spec[proto] = current
    return {p: (tuple(sorted(r)) if r is not None else ()) for p, r in spec.items()}


def _mask(bits: int, prefix: int) -> int:
    return ((1 << bits) - 1) ^ ((1 << (bits - prefix)) - 1)


def _net(cidr: str) -> tuple[int, int]:
    n = ip_network(cidr)
    return int(n.network_address), _mask(n.max_prefixlen, n.prefixlen)


# Destinations an internet resource never reaches.
_NOT_INTERNET_V4 = tuple(
    _net(c)
    for c in (
        "0.0.0.0/8",  # unspecified / this network
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT, includes the tunnel and DNS-proxy ranges
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, includes the limited broadcast address
    )
)
_NOT_INTERNET_V6 = tuple(
    _net(c)
    for c in (
        "::/96",  # unspecified, loopback, IPv4-compatible
        "::ffff:0:0/96",  # IPv4-mapped: would smuggle private IPv4 destinations
        "fc00::/7",  # unique local, includes the tunnel ranges
        "fe80::/10",  # link-local
        "fec0::/10",  # deprecated site-local
        "ff00::/8",  # multicast
    )
)
_TUNNEL_V4 = _net(str(TUNNEL_IPV4))
_TUNNEL_V6 = _net(str(TUNNEL_IPV6))


def is_public(version: int, addr: int) -> bool:
    """Whether an internet resource may reach this destination."""
    table = _NOT_INTERNET_V4 if version == 4 else _NOT_INTERNET_V6
    # Explicit loops here and below: a generator in any()/all() costs ~3x more per packet.
    for net, mask in table:  # noqa: SIM110
        if addr & mask == net:
            return False
    return True


def _in_tunnel(version: int, addr: int) -> bool:
    net, mask = _TUNNEL_V4 if version == 4 else _TUNNEL_V6
    return addr & mask == net


def _in_ranges(ranges: tuple[tuple[int, int], ...], port: int) -> bool:
    for lo, hi in ranges:  # noqa: SIM110
        if lo <= port <= hi:
            return True
    return False


@dataclass(frozen=True, slots=True)
class Authorization:
    peer: bytes
    authorization_id: str
    resource_id: str
    expires_at: float | None


class _Peer:
    __slots__ = ("auths", "ipv4", "ipv6", "key", "rules4", "rules6")

    def __init__(self, key: bytes, ipv4: int | None, ipv6: int | None) -> None:
        self.key = key
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        # authorization id -> (resource id, expires_at or inf)
        self.auths: dict[str, tuple[str, float]] = {}
        self.rules4: tuple[_Entry, ...] = ()
        self.rules6: tuple[_Entry, ...] = ()


AddressLike = IPv4Address | IPv6Address | str | None


def _addr(value: AddressLike, version: int) -> int | None:
    if value is None:
        return None
    parsed = ip_address(value) if isinstance(value, str) else value
    if parsed.version != version:
        raise ValueError(f"{value} is not an IPv{version} address")
    return int(parsed)


class Firewall:
    """Per-peer authorization table; see the module docstring."""

    def __init__(self) -> None:
        self._peers: dict[bytes, _Peer] = {}
        self._by_v4: dict[int, _Peer] = {}
        self._by_v6: dict[int, _Peer] = {}
        self._resources: dict[str, ResourceRule] = {}
        self._users: dict[str, set[bytes]] = {}  # resource id -> peers holding it
        self._next_expiry: float | None = None
        self._expiry_dirty = False

    # --- peers ------------------------------------------------------------------------------

    def set_peer(self, key: bytes, ipv4: AddressLike, ipv6: AddressLike = None) -> None:
        """Register a peer or change its tunnel addresses (its authorizations are kept). A
        tunnel address held by another peer moves to this one."""
        v4 = _addr(ipv4, 4)
        v6 = _addr(ipv6, 6)
        peer = self._peers.get(key)
        if peer is None:
            peer = self._peers[key] = _Peer(key, v4, v6)
        else:
            self._unindex(peer)
            peer.ipv4, peer.ipv6 = v4, v6
        for index, addr in ((self._by_v4, v4), (self._by_v6, v6)):
            if addr is None:
                continue
            previous = index.get(addr)
            if previous is not None and previous is not peer:
                # The address was reassigned: the old holder must not keep receiving its traffic.
                if index is self._by_v4:
                    previous.ipv4 = None
                else:
                    previous.ipv6 = None
            index[addr] = peer

    def _unindex(self, peer: _Peer) -> None:
        if peer.ipv4 is not None and self._by_v4.get(peer.ipv4) is peer:
            del self._by_v4[peer.ipv4]
        if peer.ipv6 is not None and self._by_v6.get(peer.ipv6) is peer:
            del self._by_v6[peer.ipv6]

    def remove_peer(self, key: bytes) -> bool:
        peer = self._peers.pop(key, None)
        if peer is None:
            return False
        self._unindex(peer)
        for resource_id, _ in peer.auths.values():
            self._release(resource_id, key)
        self._expiry_dirty = True
        return True

    def has_peer(self, key: bytes) -> bool:
        return key in self._peers

    def peers(self) -> list[bytes]:
        return list(self._peers)

    def peer_by_address(self, address: IPv4Address | IPv6Address | str) -> bytes | None:
        parsed = ip_address(address) if isinstance(address, str) else address
        index = self._by_v4 if parsed.version == 4 else self._by_v6
        peer = index.get(int(parsed))
        return None if peer is None else peer.key

    # --- authorizations -------------------------------------------------------------------

    def allow(
        self, key: bytes, authorization_id: str, rule: ResourceRule, expires_at: float | None
    ) -> None:
        """Authorize `key` for `rule` until `expires_at` (None = no expiry). Idempotent per
        authorization id (a repeat replaces it). A rule whose resource id is already known
        replaces that resource for every peer (the newest definition wins)."""
        peer = self._peers.get(key)
        if peer is None:
            raise UnknownPeerError(key)
        old = peer.auths.get(authorization_id)
        peer.auths[authorization_id] = (
            rule.resource_id,
            _INF if expires_at is None else float(expires_at),
        )
        if old is not None and old[0] != rule.resource_id:
            self._release_if_unused(peer, old[0])
        self._users.setdefault(rule.resource_id, set()).add(key)
        if self._resources.get(rule.resource_id) != rule:
            self._resources[rule.resource_id] = rule
            self._recompile_users(rule.resource_id)
        else:
            self._compile(peer)
        self._expiry_dirty = True

    def revoke(self, key: bytes, authorization_id: str) -> bool:
        """End one authorization at once; False if there was no such authorization."""
        peer = self._peers.get(key)
        if peer is None:
            return False
        old = peer.auths.pop(authorization_id, None)
        if old is None:
            return False
        self._release_if_unused(peer, old[0])
        self._compile(peer)
        self._expiry_dirty = True
        return True

    def revoke_resource(self, resource_id: str) -> list[tuple[bytes, str]]:
        """End every authorization for a resource (e.g. it was deleted)."""
        ended: list[tuple[bytes, str]] = []
        for key in list(self._users.get(resource_id, ())):
            peer = self._peers[key]
            for auth_id, (rid, _) in list(peer.auths.items()):
                if rid == resource_id:
                    ended.append((key, auth_id))
                    self.revoke(key, auth_id)
        return ended

    def update_resource(self, rule: ResourceRule) -> int:
        """Replace a resource's definition (e.g. its filters) for every peer holding it; returns
        how many peers were affected (0 if no peer holds the resource: nothing is stored)."""
        users = self._users.get(rule.resource_id)
        if not users:
            return 0
        self._resources[rule.resource_id] = rule
        self._recompile_users(rule.resource_id)
        return len(users)

    def authorizations(self, key: bytes) -> list[Authorization]:
        peer = self._peers.get(key)
        if peer is None:
            return []
        return [
            Authorization(key, auth_id, rid, None if exp == _INF else exp)
            for auth_id, (rid, exp) in peer.auths.items()
        ]

    def resource(self, resource_id: str) -> ResourceRule | None:
        return self._resources.get(resource_id)

    def expire(self, now: float) -> list[tuple[bytes, str]]:
        """Prune authorizations that have expired at `now`; returns (peer, authorization id)
        pairs. Packets are refused after expiry whether or not this is called."""
        ended: list[tuple[bytes, str]] = []
        nxt = self._next_expiry if not self._expiry_dirty else self.next_expiry()
        if nxt is None or nxt > now:
            return ended
        for peer in self._peers.values():
            for auth_id, (_, exp) in list(peer.auths.items()):
                if exp <= now:
                    ended.append((peer.key, auth_id))
        for key, auth_id in ended:
            self.revoke(key, auth_id)
        return ended

    def next_expiry(self) -> float | None:
        """The earliest expiry among all authorizations (None if none expires)."""
        if self._expiry_dirty:
            best = _INF
            for peer in self._peers.values():
                for _, exp in peer.auths.values():
                    if exp < best:
                        best = exp
            self._next_expiry = None if best == _INF else best
            self._expiry_dirty = False
        return self._next_expiry

    def _release_if_unused(self, peer: _Peer, resource_id: str) -> None:
        if not any(r == resource_id for r, _ in peer.auths.values()):
            self._release(resource_id, peer.key)

    def _release(self, resource_id: str, key: bytes) -> None:
        users = self._users.get(resource_id)
        if users is None:
            return
        users.discard(key)
        if not users:
            del self._users[resource_id]
            self._resources.pop(resource_id, None)

    def _recompile_users(self, resource_id: str) -> None:
        for key in self._users.get(resource_id, ()):
            self._compile(self._peers[key])

    def _compile(self, peer: _Peer) -> None:
        rules4: list[_Entry] = []
        rules6: list[_Entry] = []
        for resource_id, exp in peer.auths.values():
            rule = self._resources[resource_id]
            spec4 = _compile_filters(rule.filters, 4)
            spec6 = _compile_filters(rule.filters, 6)
            if rule.kind == "internet":
                rules4.append((0, 0, True, spec4, exp))
                rules6.append((0, 0, True, spec6, exp))
                continue
            for net in rule.networks:
                entry = (int(net.network_address), _mask(net.max_prefixlen, net.prefixlen))
                if net.version == 4:
                    rules4.append((*entry, False, spec4, exp))
                else:
                    rules6.append((*entry, False, spec6, exp))
        peer.rules4 = tuple(rules4)
        peer.rules6 = tuple(rules6)

    # --- per packet ---------------------------------------------------------------------------

    def decide_outbound(
        self, key: bytes | None, packet: bytes | bytearray | memoryview, now: float
    ) -> Verdict:
        """Verdict on a packet that peer `key` sent into the tunnel (see module docstring)."""
        info = parse(packet)
        if info is None:
            return DROP_MALFORMED
        return self.decide_parsed(key, info, now)

    def decide_parsed(self, key: bytes | None, info: PacketInfo, now: float) -> Verdict:
        """`decide_outbound` for an already parsed packet."""
        peer = self._peers.get(key) if key is not None else None
        if peer is None:
            return DROP_UNKNOWN_PEER
        version, src, dst, proto, _off, sport, dport, fragment, _len = info
        if version == 4:
            if src != peer.ipv4:
                return DROP_SPOOFED
            if dst & _TUNNEL_V4[1] == _TUNNEL_V4[0]:  # never client to client
                return REJECT
            rules = peer.rules4
        else:
            if src != peer.ipv6:
                return DROP_SPOOFED
            if dst & _TUNNEL_V6[1] == _TUNNEL_V6[0]:
                return REJECT
            rules = peer.rules6
        for net, mask, internet, spec, exp in rules:
            if dst & mask != net or now >= exp:
                continue
            if spec is not None:
                ranges = spec.get(proto)
                if ranges is None:
                    continue
                if not fragment:
                    if proto in (PROTO_TCP, PROTO_UDP):
                        if ranges and not _in_ranges(ranges, dport):
                            continue
                    elif proto == PROTO_ICMP:
                        if sport != ICMPV4_ECHO_REQUEST:
                            continue
                    elif proto == PROTO_ICMPV6 and sport != ICMPV6_ECHO_REQUEST:
                        continue
            if internet and not is_public(version, dst):
                continue
            return FORWARD
        return REJECT

    def route_inbound(self, packet: bytes | bytearray | memoryview, now: float) -> bytes | None:
        """The peer a packet read from TUN should be sent to, or None to drop it."""
        info = parse(packet)
        if info is None:
            return None
        return self.route_parsed(packet, info, now)

    def route_parsed(
        self, packet: bytes | bytearray | memoryview, info: PacketInfo, now: float
    ) -> bytes | None:
        version, src, dst, proto, _off, sport, _dport, fragment, _len = info
        if version == 4:
            peer = self._by_v4.get(dst)
            if peer is None:
                return None
            rules = peer.rules4
        else:
            peer = self._by_v6.get(dst)
            if peer is None:
                return None
            rules = peer.rules6
        if not fragment and (
            (proto == PROTO_ICMP and sport in ICMPV4_ERROR_TYPES)
            or (proto == PROTO_ICMPV6 and sport < 128)
        ):
            # Checked before the tunnel-range source test: the gateway's own kernel reports
            # errors (TTL exceeded, fragmentation needed) from its tunnel address.
            return peer.key if self._error_about_own_flow(packet, info, peer, now) else None
        if _in_tunnel(version, src):
            return None  # never client to client
        for net, mask, internet, spec, exp in rules:
            if src & mask != net or now >= exp:
                continue
            if spec is not None:
                # The reverse of the check in `decide_parsed`: could this be a reply?
                ranges = spec.get(proto)
                if ranges is None:
                    continue
                if not fragment:
                    if proto in (PROTO_TCP, PROTO_UDP):
                        if ranges and not _in_ranges(ranges, sport):
                            continue
                    elif proto == PROTO_ICMP:
                        if sport != ICMPV4_ECHO_REPLY:
                            continue
                    elif proto == PROTO_ICMPV6 and sport != ICMPV6_ECHO_REPLY:
                        continue
            if internet and not is_public(version, src):
                continue
            return peer.key
        return None

    def _error_about_own_flow(
        self, packet: bytes | bytearray | memoryview, info: PacketInfo, peer: _Peer, now: float
    ) -> bool:
        # The quoted packet starts after the 8-byte ICMP header; only its addresses are needed,
        # and it is usually truncated, so it is not parsed as a whole packet. Bytes past the IP
        # packet's own length (trailing garbage in the buffer) are not part of the quote.
        start = info.l4_offset + 8
        end = info.length
        if info.version == 4:
            if end < start + 20 or packet[start] >> 4 != 4:
                return False
            q_src = int.from_bytes(packet[start + 12 : start + 16], "big")
            q_dst = int.from_bytes(packet[start + 16 : start + 20], "big")
            if q_src != peer.ipv4 or _in_tunnel(4, q_dst):
                return False
            rules = peer.rules4
        else:
            if end < start + 40 or packet[start] >> 4 != 6:
                return False
            q_src = int.from_bytes(packet[start + 8 : start + 24], "big")
            q_dst = int.from_bytes(packet[start + 24 : start + 40], "big")
            if q_src != peer.ipv6 or _in_tunnel(6, q_dst):
                return False
            rules = peer.rules6
        for net, mask, internet, _spec, exp in rules:
            if (
                q_dst & mask == net
                and now < exp
                and (not internet or is_public(info.version, q_dst))
            ):
                return True
        return False
