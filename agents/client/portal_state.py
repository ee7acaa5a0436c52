"""Sans-IO decision logic of the portal-driven client (``firezone-client --portal-url``).

Theory of operation
-------------------
The portal tells the client which resources it may see (``init``, then
``resource_created_or_updated`` / ``resource_deleted``); the client routes every cidr/ip
resource into its TUN device but holds no tunnel for any of them until it needs one. The first
packet to a resource without a flow makes `ClientState` ask for an authorization
(`Request` -> ``request_authorization``) and holds the packet in a small bounded buffer
(`MAX_HELD_PACKETS` per resource). The portal answers with the chosen gateway (key, endpoint,
preshared key, expiry): the gateway becomes a WireGuard peer whose networks are those of every
flow through it (one session per gateway, many resources over it) and the held packets are
flushed. On a failure (or no answer within `REQUEST_TIMEOUT_S`) the held packets are rejected:
the IO layer answers each with an ICMP "administratively prohibited" so the local application
fails at once; for `FAILED_HOLD_S` later packets are rejected the same way without a new request
(a refused resource is not asked for again per packet).

Failover: a gateway whose handshake attempt got no answer within `HANDSHAKE_FAILOVER_S` (the
WireGuard rekey timeout; the device starts one when it sent data and heard nothing back for 15 s,
so a dead gateway is noticed within ~20 s of traffic), or that answers a resource's packet with
ICMP "administratively prohibited", loses its flows, and the client asks again at once, naming
only the *other* gateways it is connected to (the portal prefers those) and, after a handshake
timeout, the dead one in ``failed_gateway_ids`` for `FAILED_GATEWAY_S` (the portal avoids it while
another is available), so the new answer is another gateway of the site.

Flows expire locally at their ``expires_at``, also while the portal is unreachable (existing
flows keep working until then); a reconnect's ``init`` keeps the flows of resources it still
lists (retain-only) and drops the others.

Every method takes ``now`` (monotonic seconds for the timers; expiries are converted by the
caller) and returns `Effects` for the IO layer: requests to send, gateway peers to (re)install or
remove, held packets to deliver or reject, and the wanted TUN routes when they changed.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from agents.wireguard.constants import REKEY_TIMEOUT

Endpoint = tuple[str, int]
Network = IPv4Network | IPv6Network

MAX_HELD_PACKETS = 32  # per resource, while its authorization is pending
MAX_PENDING = 64  # resources with a request in flight
REQUEST_TIMEOUT_S = 20.0  # the portal answers "offline" after 15 s without a gateway ack
FAILED_HOLD_S = 1.0  # after a refusal, reject at once instead of asking again per packet
HANDSHAKE_FAILOVER_S = REKEY_TIMEOUT
FAILED_GATEWAY_S = 60.0  # a gateway that did not answer is named as failed this long
TICK_S = 0.5


@dataclass(frozen=True, slots=True)
class ClientResource:
    """A resource the actor may see. ``network`` is None for types the client cannot route
    (dns, internet: not supported by this client yet)."""

    id: uuid.UUID
    type: str
    address: str
    name: str = ""

    @property
    def network(self) -> Network | None:
        if self.type not in ("cidr", "ip"):
            return None
        try:
            return ip_network(self.address, strict=False)
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class Granted:
    """The portal's ``authorization_created``, in the client's terms."""

    authorization_id: uuid.UUID
    resource_id: uuid.UUID
    gateway_id: uuid.UUID
    gateway_public_key: bytes
    endpoint: Endpoint
    preshared_key: bytes = field(repr=False)
    expires_at: float | None  # monotonic seconds (the caller converts)


@dataclass(frozen=True, slots=True)
class GatewayPeer:
    """A gateway as a WireGuard peer of the client core, with the networks routed to it."""

    gateway_id: uuid.UUID
    public_key: bytes
    endpoint: Endpoint
    preshared_key: bytes = field(repr=False)
    networks: tuple[Network, ...]


@dataclass(frozen=True, slots=True)
class Request:
    resource_id: uuid.UUID
    connected_gateway_ids: tuple[uuid.UUID, ...]
    failed_gateway_ids: tuple[uuid.UUID, ...] = ()


@dataclass
class Effects:
    requests: list[Request] = field(default_factory=list)
    set_gateways: list[GatewayPeer] = field(default_factory=list)
    remove_gateways: list[bytes] = field(default_factory=list)
    deliver: list[bytes] = field(default_factory=list)
    reject: list[bytes] = field(default_factory=list)
    routes: tuple[Network, ...] | None = None  # the complete wanted set, when it changed
    notes: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.requests
            or self.set_gateways
            or self.remove_gateways
            or self.deliver
            or self.reject
            or self.routes is not None
        )


@dataclass
class _Pending:
    requested_at: float
    packets: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_HELD_PACKETS))


@dataclass(frozen=True, slots=True)
class _Flow:
    granted: Granted
    network: Network


class ClientState:
    """What the client may reach, what it holds, and the effects of every event."""

    def __init__(self) -> None:
        self.ipv4: IPv4Address | None = None
        self.ipv6: IPv6Address | None = None
        self.resources: dict[uuid.UUID, ClientResource] = {}
        self.flows: dict[uuid.UUID, _Flow] = {}  # resource id -> flow
        self.pending: dict[uuid.UUID, _Pending] = {}
        self.refused: dict[uuid.UUID, float] = {}  # resource id -> reject without asking until
        self.failed_gateways: dict[uuid.UUID, float] = {}  # gateway id -> named as failed until
        self._installed: dict[bytes, GatewayPeer] = {}
        self._routes: tuple[Network, ...] = ()
        self._by_prefix: list[tuple[Network, uuid.UUID]] = []
        self.next_tick = 0.0

    # -- portal messages ---------------------------------------------------------------------
    def on_init(
        self,
        ipv4: IPv4Address | None,
        ipv6: IPv6Address | None,
        resources: Iterable[ClientResource],
        now: float,
    ) -> Effects:
        self.ipv4, self.ipv6 = ipv4, ipv6
        self.resources = {r.id: r for r in resources}
        fx = Effects(notes=["init"])
        self._drop_stale(fx)
        return self._finish(fx)

    def on_resource(self, resource: ClientResource, now: float) -> Effects:
        self.resources[resource.id] = resource
        fx = Effects()
        self._drop_stale(fx)
        return self._finish(fx)

    def on_resource_deleted(self, resource_id: uuid.UUID, now: float) -> Effects:
        self.resources.pop(resource_id, None)
        fx = Effects()
        self._drop_stale(fx)
        return self._finish(fx)

    def on_granted(self, granted: Granted, now: float) -> Effects:
        fx = Effects()
        resource = self.resources.get(granted.resource_id)
        network = resource.network if resource is not None else None
        pending = self.pending.pop(granted.resource_id, None)
        if network is None:
            fx.notes.append("granted a resource the client does not route; ignored")
            return self._finish(fx)
        if granted.expires_at is not None and granted.expires_at <= now:
            if pending is not None:
                fx.reject.extend(pending.packets)
            return self._finish(fx)
        self.flows[granted.resource_id] = _Flow(granted, network)
        self.refused.pop(granted.resource_id, None)
        fx = self._finish(fx)
        if pending is not None:
            fx.deliver.extend(pending.packets)
        return fx

    def on_refused(self, resource_id: uuid.UUID, reason: str, now: float) -> Effects:
        fx = Effects(notes=[reason])
        pending = self.pending.pop(resource_id, None)
        if pending is not None:
            fx.reject.extend(pending.packets)
        self.refused[resource_id] = now + FAILED_HOLD_S
        return self._finish(fx)

    def on_revoked(self, authorization_ids: Iterable[uuid.UUID], now: float) -> Effects:
        """The portal revoked these flows: drop them (the next packet asks again)."""
        ids = set(authorization_ids)
        fx = Effects()
        for rid, flow in list(self.flows.items()):
            if flow.granted.authorization_id in ids:
                del self.flows[rid]
                fx.notes.append("authorization revoked")
        return self._finish(fx)

    # -- data path events --------------------------------------------------------------------
    def resource_for(self, dst: IPv4Address | IPv6Address) -> ClientResource | None:
        """The most specific routable resource containing ``dst``."""
        for net, rid in self._by_prefix:
            if net.version == dst.version and dst in net:
                return self.resources[rid]
        return None

    def on_packet(self, packet: bytes, dst: IPv4Address | IPv6Address, now: float) -> Effects:
        """A TUN packet the core had no gateway for."""
        fx = Effects()
        resource = self.resource_for(dst)
        if resource is None:
            fx.reject.append(packet)
            return fx
        rid = resource.id
        pending = self.pending.get(rid)
        if pending is not None:
            pending.packets.append(packet)  # bounded: the oldest is dropped when full
            return fx
        if self.refused.get(rid, -1.0) > now:
            fx.reject.append(packet)
            return fx
        if len(self.pending) >= MAX_PENDING:
            fx.reject.append(packet)
            fx.notes.append("too many pending requests")
            return fx
        pending = self.pending[rid] = _Pending(now)
        pending.packets.append(packet)
        fx.requests.append(Request(rid, self._connected_ids(), self._failed_ids(now)))
        return fx

    def on_prohibited(
        self, gateway_key: bytes, dst: IPv4Address | IPv6Address, now: float
    ) -> Effects:
        """The gateway answered a packet to ``dst`` with ICMP administratively prohibited: the
        flow is gone there (revoked, or the gateway restarted); ask again, preferring others."""
        fx = Effects()
        for rid, flow in list(self.flows.items()):
            if flow.granted.gateway_public_key == gateway_key and dst in flow.network:
                self._rerequest(rid, flow, fx, now, "gateway refused the flow")
        return self._finish(fx)

    def tick(self, now: float, handshake_started: Callable[[bytes], float | None]) -> Effects:
        """Timers: request timeouts, local expiry, handshake failover. Call at `next_tick`."""
        self.next_tick = now + TICK_S
        fx = Effects()
        for rid, pending in list(self.pending.items()):
            if now - pending.requested_at >= REQUEST_TIMEOUT_S:
                del self.pending[rid]
                self.refused[rid] = now + FAILED_HOLD_S
                fx.reject.extend(pending.packets)
                fx.notes.append("authorization request timed out")
        for rid, until in list(self.refused.items()):
            if until <= now:
                del self.refused[rid]
        for gid, until in list(self.failed_gateways.items()):
            if until <= now:
                del self.failed_gateways[gid]
        for rid, flow in list(self.flows.items()):
            exp = flow.granted.expires_at
            if exp is not None and exp <= now:
                del self.flows[rid]
                fx.notes.append("authorization expired")
        for key in list(self._installed):
            started = handshake_started(key)
            if started is not None and now - started >= HANDSHAKE_FAILOVER_S:
                self.failed_gateways[self._installed[key].gateway_id] = now + FAILED_GATEWAY_S
                for rid, flow in list(self.flows.items()):
                    if flow.granted.gateway_public_key == key:
                        self._rerequest(rid, flow, fx, now, "gateway handshake timed out")
        return self._finish(fx)

    # -- views -------------------------------------------------------------------------------
    @property
    def routes(self) -> tuple[Network, ...]:
        return self._routes

    def gateway_of(self, resource_id: uuid.UUID) -> uuid.UUID | None:
        flow = self.flows.get(resource_id)
        return flow.granted.gateway_id if flow is not None else None

    def installed(self) -> dict[bytes, GatewayPeer]:
        return dict(self._installed)

    # -- internals ---------------------------------------------------------------------------
    def _connected_ids(self, *, excluding: bytes | None = None) -> tuple[uuid.UUID, ...]:
        return tuple(
            dict.fromkeys(g.gateway_id for k, g in self._installed.items() if k != excluding)
        )

    def _failed_ids(self, now: float) -> tuple[uuid.UUID, ...]:
        return tuple(g for g, until in self.failed_gateways.items() if until > now)

    def _rerequest(self, rid: uuid.UUID, flow: _Flow, fx: Effects, now: float, why: str) -> None:
        key = flow.granted.gateway_public_key
        del self.flows[rid]
        fx.notes.append(why)
        if rid in self.pending:
            return
        self.pending[rid] = _Pending(now)
        others = tuple(
            dict.fromkeys(
                f.granted.gateway_id
                for f in self.flows.values()
                if f.granted.gateway_public_key != key
            )
        )
        fx.requests.append(Request(rid, others, self._failed_ids(now)))

    def _routable(self, net: Network) -> bool:
        return (self.ipv4 is not None) if net.version == 4 else (self.ipv6 is not None)

    def _drop_stale(self, fx: Effects) -> None:
        """Flows and pending requests of resources no longer visible (or re-addressed)."""
        for rid, flow in list(self.flows.items()):
            r = self.resources.get(rid)
            if r is None or r.network != flow.network:
                del self.flows[rid]
        for rid, pending in list(self.pending.items()):
            if rid not in self.resources or self.resources[rid].network is None:
                del self.pending[rid]
                fx.reject.extend(pending.packets)

    def _finish(self, fx: Effects) -> Effects:
        """Derive the wanted gateways and routes; add their differences to ``fx``."""
        wanted: dict[bytes, GatewayPeer] = {}
        for flow in self.flows.values():
            g = flow.granted
            prev = wanted.get(g.gateway_public_key)
            nets = (prev.networks if prev is not None else ()) + (flow.network,)
            wanted[g.gateway_public_key] = GatewayPeer(
                g.gateway_id, g.gateway_public_key, g.endpoint, g.preshared_key, nets
            )
        for key in self._installed.keys() - wanted.keys():
            fx.remove_gateways.append(key)
        for key, gw in wanted.items():
            if self._installed.get(key) != gw:
                fx.set_gateways.append(gw)
        self._installed = wanted
        pairs = sorted(
            (
                (r.network, r.id)
                for r in self.resources.values()
                if r.network is not None and self._routable(r.network)
            ),
            key=lambda p: (-p[0].prefixlen, p[0].version, str(p[0])),
        )
        self._by_prefix = [(n, rid) for n, rid in pairs if n is not None]
        routes = tuple(dict.fromkeys(n for n, _ in self._by_prefix))
        if set(routes) != set(self._routes):
            fx.routes = routes
        self._routes = routes
        return fx
