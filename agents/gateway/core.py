"""The gateway data plane as a pure state machine (connlib style).

Theory of operation
-------------------
`GatewayCore` joins a WireGuard device (sans-IO: bytes in, transmits out) with the packet filter
(`agents.net.filter.Firewall`). The IO driver feeds it three inputs and performs its outputs:

* `handle_network_input(datagram, source, now)`: the device authenticates and decrypts it; the
  inner packet is judged by the firewall for the sending peer. FORWARD -> a TUN write. REJECT ->
  an ICMP "administratively prohibited" reply, encrypted back to the peer (none for ICMP errors,
  fragments, multicast...; rate limited per peer to ICMP_RATE/s with a burst of ICMP_BURST).
  Spoofed, malformed or unknown-peer packets are dropped silently. Handshake responses and
  packets that were waiting for a session come out as UDP transmits.
* `handle_network_batch(datagrams, source, now)`: the same for a receive round from one
  source, with one `Output` for all (the device's lazy `decrypt_batch` keeps the results and
  the device state identical to per-datagram calls).
* `handle_tun_input(packet, now)`: a reply from a resource; the firewall names the peer it belongs
  to (by destination tunnel address, only if the source is a resource the peer may reach), and the
  device encrypts it for that peer. Anything else is dropped.
* `handle_timeout(now)` at `poll_timeout()`: WireGuard timers, and pruning of authorizations that
  expired (they already stopped matching at their expiry; pruning just frees them and reports them
  via `take_expired`).

Every call returns an `Output` (a `(tun, udp)` named tuple). Drops are counted per reason in
`counters` (never logged per packet). The core is not thread-safe: a driver that calls it from
several threads serializes the calls.

Peers and authorizations change live (`add_peer`, `remove_peer`, `allow`, `revoke`,
`update_resource`, `revoke_resource`); the next packet sees the change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING, NamedTuple, Protocol

from agents.net.filter import (
    DROP_MALFORMED,
    DROP_SPOOFED,
    DROP_UNKNOWN_PEER,
    FORWARD,
    Firewall,
    ResourceRule,
)
from agents.net.icmp import admin_prohibited
from agents.net.packet import parse
from agents.wireguard.device import Decapsulated, Transmit

if TYPE_CHECKING:
    from agents.static_config import GatewayConfig

Endpoint = tuple[str, int]


class DeviceLike(Protocol):
    """The part of `agents.wireguard.Device` the cores use (lets tests substitute a fake)."""

    @property
    def public_key(self) -> bytes: ...

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        endpoint: Endpoint | None = None,
        persistent_keepalive: int | None = None,
    ) -> None: ...

    def remove_peer(self, public_key: bytes) -> None: ...

    def encapsulate(self, public_key: bytes, packet: bytes, now: float) -> list[Transmit]: ...

    def decapsulate(self, data: bytes, source: Endpoint, now: float) -> Decapsulated: ...

    def handle_timeout(self, now: float) -> list[Transmit]: ...

    def poll_timeout(self) -> float | None: ...


class Output(NamedTuple):
    """What one core call produced: packets to write to TUN and datagrams to send."""

    tun: Sequence[bytes]
    udp: Sequence[Transmit]


NOTHING = Output((), ())

ICMP_RATE = 100.0  # ICMP replies per second and peer
ICMP_BURST = 50.0
_tuple_new = tuple.__new__

# Counter names (drop reasons and totals).
FORWARDED_TO_TUN = "forwarded_to_tun"
FORWARDED_TO_PEER = "forwarded_to_peer"
REJECTED_WITH_ICMP = "rejected_icmp"
REJECTED_SILENTLY = "rejected_silently"  # no ICMP may answer it (an ICMP error, a fragment...)
REJECTED_RATE_LIMITED = "rejected_rate_limited"  # over the per-peer ICMP reply budget
DROPPED_SPOOFED = "dropped_spoofed"
DROPPED_MALFORMED = "dropped_malformed"
DROPPED_UNKNOWN_PEER = "dropped_unknown_peer"
DROPPED_NO_ROUTE = "dropped_no_route"
WIREGUARD_PREFIX = "wireguard: "  # + the device's error string

# Smallest IPv4 total length `parse`'s fast path accepts per protocol (TCP, UDP, ICMP).
_FLOW_MIN_LENGTH = {6: 40, 17: 28, 1: 28}

_VERDICT_COUNTER = {
    DROP_SPOOFED: DROPPED_SPOOFED,
    DROP_MALFORMED: DROPPED_MALFORMED,
    DROP_UNKNOWN_PEER: DROPPED_UNKNOWN_PEER,
}


class GatewayCore:
    def __init__(self, device: DeviceLike, firewall: Firewall | None = None) -> None:
        self.device = device
        self.firewall = firewall if firewall is not None else Firewall()
        self.counters: dict[str, int] = dict.fromkeys(
            (
                FORWARDED_TO_TUN,
                FORWARDED_TO_PEER,
                REJECTED_WITH_ICMP,
                REJECTED_SILENTLY,
                REJECTED_RATE_LIMITED,
                DROPPED_SPOOFED,
                DROPPED_MALFORMED,
                DROPPED_UNKNOWN_PEER,
                DROPPED_NO_ROUTE,
            ),
            0,
        )
        self._expired: list[tuple[bytes, str]] = []
        self._icmp_buckets: dict[bytes, tuple[float, float]] = {}  # peer -> (tokens, updated)

    # --- live configuration -------------------------------------------------------------------

    def add_peer(
        self,
        public_key: bytes,
        preshared_key: bytes | None,
        ipv4: IPv4Address | str | None,
        ipv6: IPv6Address | str | None = None,
        *,
        endpoint: Endpoint | None = None,
        persistent_keepalive: int | None = None,
    ) -> None:
        """Add a client peer or update its keys/addresses (authorizations are kept). Raises
        ValueError for a bad key or address."""
        self.firewall.set_peer(public_key, ipv4, ipv6)
        try:
            self.device.add_peer(
                public_key,
                preshared_key=preshared_key,
                endpoint=endpoint,
                persistent_keepalive=persistent_keepalive,
            )
        except ValueError:
            self.firewall.remove_peer(public_key)
            raise

    def remove_peer(self, public_key: bytes) -> None:
        self._icmp_buckets.pop(public_key, None)
        self.firewall.remove_peer(public_key)
        self.device.remove_peer(public_key)

    def allow(
        self, public_key: bytes, authorization_id: str, rule: ResourceRule, expires_at: float | None
    ) -> None:
        """Authorize a peer (added before) for a resource; raises UnknownPeerError otherwise."""
        self.firewall.allow(public_key, authorization_id, rule, expires_at)

    def revoke(self, public_key: bytes, authorization_id: str) -> bool:
        return self.firewall.revoke(public_key, authorization_id)

    def update_resource(self, rule: ResourceRule) -> int:
        return self.firewall.update_resource(rule)

    def revoke_resource(self, resource_id: str) -> list[tuple[bytes, str]]:
        return self.firewall.revoke_resource(resource_id)

    def take_expired(self) -> list[tuple[bytes, str]]:
        """(peer, authorization id) pairs pruned by `handle_timeout` since the last call."""
        expired, self._expired = self._expired, []
        return expired

    # --- data path ------------------------------------------------------------------------------

    def handle_network_input(self, data: bytes, source: Endpoint, now: float) -> Output:
        d = self.device.decapsulate(data, source, now)
        packet = d.packet
        if packet is None:
            if d.error is not None:
                self._count(WIREGUARD_PREFIX + d.error)
            return _tuple_new(Output, ((), d.transmits)) if d.transmits else NOTHING
        info = parse(packet)
        if info is None:
            self.counters[DROPPED_MALFORMED] += 1
            return _tuple_new(Output, ((), d.transmits)) if d.transmits else NOTHING
        peer = d.peer
        verdict = self.firewall.decide_parsed(peer, info, now)
        if verdict is FORWARD:
            self.counters[FORWARDED_TO_TUN] += 1
            return _tuple_new(Output, ((packet,), d.transmits))
        counter = _VERDICT_COUNTER.get(verdict)
        if counter is not None:
            self.counters[counter] += 1
            return _tuple_new(Output, ((), d.transmits)) if d.transmits else NOTHING
        transmits = d.transmits + self._reject(peer, packet, now)
        return _tuple_new(Output, ((), transmits)) if transmits else NOTHING

    def handle_network_batch(
        self, datagrams: Sequence[bytes], source: Endpoint, now: float
    ) -> Output:
        """`handle_network_input` for many datagrams from one source (one Output: the TUN
        writes and transmits of all of them, in order). Identical results, counters and device
        state; cheaper per datagram through the device's lazy `decrypt_batch`."""
        decrypt_batch = getattr(self.device, "decrypt_batch", None)
        if decrypt_batch is None:  # a device without the batch path (test fakes)
            return network_batch_per_datagram(self.handle_network_input, datagrams, source, now)
        tun: list[bytes] = []
        udp: list[Transmit] = []
        counters = self.counters
        decide = self.firewall.decide_parsed
        forwarded = 0
        # The last forwarded plain IPv4 TCP/UDP/ICMP flow (peer, addresses + first 4 transport
        # bytes, protocol): `parse` and `decide_parsed` are pure functions of those bytes, the
        # length fields, the peer, `now` and the firewall, and the last three do not change
        # within one batch, so a packet of the same flow that parses the same way (checked
        # below exactly as `parse`'s fast path does) gets the same FORWARD.
        last_peer: bytes | None = None
        last_flow = b""
        last_proto = last_min = 0
        for peer, packet, transmits, error in decrypt_batch(datagrams, source, now):
            if transmits:
                udp.extend(transmits)
            if packet is None:
                if error is not None:
                    self._count(WIREGUARD_PREFIX + error)
                continue
            if (
                peer == last_peer
                and packet[0] == 0x45
                and packet.startswith(last_flow, 12)
                and packet[9] == last_proto
                and not packet[6] & 0x3F
                and not packet[7]
                and last_min <= ((packet[2] << 8) | packet[3]) <= len(packet)
            ):
                forwarded += 1
                tun.append(packet)
                continue
            info = parse(packet)
            if info is None:
                counters[DROPPED_MALFORMED] += 1
                continue
            verdict = decide(peer, info, now)
            if verdict is FORWARD:
                forwarded += 1
                tun.append(packet)
                if packet[0] == 0x45 and info.protocol in _FLOW_MIN_LENGTH and not info.fragment:
                    last_peer = peer
                    last_flow = packet[12:24]
                    last_proto = info.protocol
                    last_min = _FLOW_MIN_LENGTH[last_proto]
                continue
            counter = _VERDICT_COUNTER.get(verdict)
            if counter is not None:
                counters[counter] += 1
            else:
                udp.extend(self._reject(peer, packet, now))
        counters[FORWARDED_TO_TUN] += forwarded
        return _tuple_new(Output, (tun, udp))

    def route(self, packet: bytes, now: float) -> bytes | None:
        """The peer a TUN packet belongs to (None: drop). For drivers that batch the encryption
        themselves (`Device.encrypt_batch`); `handle_tun_input` does both steps."""
        key = self.firewall.route_inbound(packet, now)
        if key is None:
            self.counters[DROPPED_NO_ROUTE] += 1
        else:
            self.counters[FORWARDED_TO_PEER] += 1
        return key

    def handle_tun_input(self, packet: bytes, now: float) -> Output:
        key = self.firewall.route_inbound(packet, now)
        if key is None:
            self.counters[DROPPED_NO_ROUTE] += 1
            return NOTHING
        self.counters[FORWARDED_TO_PEER] += 1
        return _tuple_new(Output, ((), self.device.encapsulate(key, packet, now)))

    def handle_tun_batch(self, packets: Iterable[bytes], now: float) -> Output:
        """`handle_tun_input` for several packets (one Output)."""
        udp: list[Transmit] = []
        for packet in packets:
            udp.extend(self.handle_tun_input(packet, now).udp)
        return _tuple_new(Output, ((), udp)) if udp else NOTHING

    # --- timers ---------------------------------------------------------------------------------

    def handle_timeout(self, now: float) -> Output:
        expiry = self.firewall.next_expiry()
        if expiry is not None and expiry <= now:
            self._expired.extend(self.firewall.expire(now))
        transmits = self.device.handle_timeout(now)
        return _tuple_new(Output, ((), transmits)) if transmits else NOTHING

    def poll_timeout(self) -> float | None:
        device = self.device.poll_timeout()
        expiry = self.firewall.next_expiry()
        if device is None:
            return expiry
        if expiry is None:
            return device
        return min(device, expiry)

    def _reject(self, peer: bytes | None, packet: bytes, now: float) -> list[Transmit]:
        """A REJECT verdict: tell the client at once instead of letting its connection time
        out (within the ICMP budget). Counts the outcome; returns the reply's transmits."""
        if peer is None or not self._icmp_allowed(peer, now):
            self.counters[REJECTED_RATE_LIMITED] += 1
            return []
        reply = admin_prohibited(packet)
        if reply is None:
            self.counters[REJECTED_SILENTLY] += 1
            return []
        self.counters[REJECTED_WITH_ICMP] += 1
        return self.device.encapsulate(peer, reply, now)

    def _icmp_allowed(self, peer: bytes, now: float) -> bool:
        # A token bucket per peer, like the kernel's icmp_ratelimit: a client hammering a closed
        # port must not make the gateway spend a handshake's worth of CPU per packet on replies.
        tokens, last = self._icmp_buckets.get(peer, (ICMP_BURST, now))
        tokens = min(ICMP_BURST, tokens + (now - last) * ICMP_RATE)
        if tokens < 1.0:
            self._icmp_buckets[peer] = (tokens, now)
            return False
        if len(self._icmp_buckets) > 4096:
            self._icmp_buckets.clear()
        self._icmp_buckets[peer] = (tokens - 1.0, now)
        return True

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def network_batch_per_datagram(
    handle: Callable[[bytes, Endpoint, float], Output],
    datagrams: Sequence[bytes],
    source: Endpoint,
    now: float,
) -> Output:
    tun: list[bytes] = []
    udp: list[Transmit] = []
    for data in datagrams:
        out = handle(data, source, now)
        tun.extend(out.tun)
        udp.extend(out.udp)
    return _tuple_new(Output, (tun, udp))


STATIC_AUTHORIZATION_PREFIX = "static:"


def apply_static_config(core: GatewayCore, config: GatewayConfig) -> None:
    """Add the peers of a static config and authorize each for its resources (no expiry; the
    authorization id is ``static:<resource id>``)."""
    for peer in config.peers:
        core.add_peer(peer.public_key, peer.preshared_key, peer.ipv4, peer.ipv6)
        for rule in peer.resources:
            core.allow(peer.public_key, STATIC_AUTHORIZATION_PREFIX + rule.resource_id, rule, None)
