"""Sans-IO decision logic of the portal-driven gateway agent.

Theory of operation
-------------------
The portal tells the gateway what it *wants* (``init``, then incremental messages); the data
plane (`GatewayCore`) holds what *is*. This module keeps the wanted state as plain protocol
objects - static peers by public key, authorizations by id - and turns every portal message into
a new wanted state. The commands for the core are always the difference between the previous and
the new wanted state (`diff`), so one piece of code handles the first ``init``, a later ``init``
after a reconnect (retain-only: what it lists is kept or updated, what it omits is removed, what is
new is added, and the TUN device is never touched), and every incremental message.

Derived from the wanted state:

* peers: every static peer, and every client that holds at least one authorization (a dynamic
  client with no authorization left is removed from the WireGuard device);
* grants: ``(peer, authorization id) -> (resource id, expiry)``; static peers get one grant per
  allowed resource with the id ``static:<resource id>`` and no expiry;
* rules: resource id -> `ResourceRule` (the firewall shares resources by id, so a changed rule
  is one `UpdateResource`).

Convergence with the portal's database: besides the wanted state (what the data plane should
enforce, without what this gateway cannot enforce), the state keeps a *mirror* - exactly what the
portal sent, unsupported resources and all - because that is what the portal's
`protocol.state_digest` covers. `check_digest` compares the mirror's digest (flows not yet
expired at ``now``) with the ``state_digest`` of a ``heartbeat_reply``; on a mismatch it answers
``resync_request`` and the portal sends ``init`` again, which replaces both. A resync that did not
fix the mismatch (a clock skew at an expiry edge, a message this gateway cannot apply) is retried
with an exponentially growing pause, so a persistent difference costs one ``init`` per 32
heartbeats at most, while a lost push is repaired at the next heartbeat.

Also here, because they are decisions and not IO: the reconnect schedule (`Backoff`, exponential
with jitter, injectable rng), what a close code means (`after_close`), and the heartbeat watchdog
(`Heartbeat`). Times: ``now`` is passed in; expiries are unix seconds (the applier converts them
to the data plane's monotonic clock).
"""

from __future__ import annotations

import base64
import random
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import TYPE_CHECKING, TypeAlias

from agents import protocol as p
from agents.net.filter import ResourceRule

if TYPE_CHECKING:
    from agents.gateway.core import GatewayCore

STATIC_PREFIX = "static:"


class UnsupportedResource(ValueError):
    """A resource this gateway cannot enforce (dns resources need the DNS-NAT data path)."""


# --- commands for the core ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddPeer:
    public_key: bytes
    preshared_key: bytes = field(repr=False)
    ipv4: IPv4Address
    ipv6: IPv6Address


@dataclass(frozen=True, slots=True)
class RemovePeer:
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Allow:
    public_key: bytes
    authorization_id: str
    rule: ResourceRule
    expires_at: float | None  # unix seconds


@dataclass(frozen=True, slots=True)
class Revoke:
    public_key: bytes
    authorization_id: str


@dataclass(frozen=True, slots=True)
class UpdateResource:
    rule: ResourceRule


Command: TypeAlias = AddPeer | RemovePeer | Allow | Revoke | UpdateResource


def resource_rule(resource: p.Resource) -> ResourceRule:
    """The firewall rule for a protocol resource; raises UnsupportedResource for dns."""
    networks: tuple[IPv4Network | IPv6Network, ...]
    if resource.type == "internet":
        networks = ()
    elif resource.type in ("cidr", "ip"):
        networks = (ip_network(resource.address, strict=False),)
    else:
        raise UnsupportedResource(f"{resource.type} resources are not supported by this gateway")
    return ResourceRule(str(resource.id), resource.type, networks, resource.filters)


def _key(text: str) -> bytes:
    return base64.b64decode(text)


# --- the wanted state --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PeerSpec:
    preshared_key: bytes
    ipv4: IPv4Address
    ipv6: IPv6Address


@dataclass(frozen=True, slots=True)
class Derived:
    peers: Mapping[bytes, _PeerSpec]
    grants: Mapping[tuple[bytes, str], tuple[str, float | None]]
    rules: Mapping[str, ResourceRule]


@dataclass(frozen=True, slots=True)
class Wanted:
    """What the portal asked for. Immutable: every message yields a new one."""

    static_peers: Mapping[str, p.StaticPeer] = field(default_factory=dict)
    authorizations: Mapping[uuid.UUID, p.Authorization] = field(default_factory=dict)

    def derive(self) -> Derived:
        peers: dict[bytes, _PeerSpec] = {}
        grants: dict[tuple[bytes, str], tuple[str, float | None]] = {}
        rules: dict[str, ResourceRule] = {}
        for a in self.authorizations.values():
            key = _key(a.client_public_key)
            peers[key] = _PeerSpec(_key(a.preshared_key), a.client_ipv4, a.client_ipv6)
            rule = resource_rule(a.resource)
            rules[rule.resource_id] = rule
            expiry = None if a.expires_at is None else a.expires_at.timestamp()
            grants[(key, str(a.id))] = (rule.resource_id, expiry)
        # Static peers after the flows: if a key were both, the static definition wins.
        for sp in self.static_peers.values():
            key = _key(sp.public_key)
            peers[key] = _PeerSpec(_key(sp.preshared_key), sp.ipv4, sp.ipv6)
            for r in sp.resources:
                rule = resource_rule(r)
                rules[rule.resource_id] = rule
                grants[(key, STATIC_PREFIX + rule.resource_id)] = (rule.resource_id, None)
        return Derived(peers, grants, rules)


def diff(old: Derived, new: Derived) -> list[Command]:
    """Commands that take a core holding ``old`` to ``new``, in a safe order: removals first
    (nothing is reachable for a moment longer than wanted), then peers, rules, grants."""
    out: list[Command] = []
    for key in old.peers.keys() - new.peers.keys():
        out.append(RemovePeer(key))
    for key, auth_id in old.grants.keys() - new.grants.keys():
        if key in new.peers:
            out.append(Revoke(key, auth_id))
    for key, spec in new.peers.items():
        if old.peers.get(key) != spec:
            out.append(AddPeer(key, spec.preshared_key, spec.ipv4, spec.ipv6))
    for rid, rule in new.rules.items():
        previous = old.rules.get(rid)
        if previous is not None and previous != rule:
            out.append(UpdateResource(rule))
    for gkey, (rid, expiry) in new.grants.items():
        key, auth_id = gkey
        fresh_peer = key not in old.peers
        if fresh_peer or old.grants.get(gkey) != (rid, expiry):
            out.append(Allow(key, auth_id, new.rules[rid], expiry))
    return out


@dataclass(frozen=True, slots=True)
class Step:
    """The outcome of one portal message: the new wanted state, the core commands, the
    replies to send (e.g. ``authorization_ack``) and a note for the log."""

    wanted: Wanted
    commands: list[Command]
    replies: list[p.GatewayMessage] = field(default_factory=list)
    note: str = ""
    mirror: Wanted | None = None  # None: unchanged


class GatewayState:
    """The agent's view of what the portal wants, and the commands each message implies.

    ``handle(message, now)`` returns a `Step`; the caller applies ``step.commands`` to the core
    and only then calls ``commit(step)`` (a failed apply leaves the state as it was).
    """

    #: Longest pause between two resyncs that did not fix a mismatch, in heartbeat intervals.
    MAX_RESYNC_PAUSE = 32

    def __init__(self) -> None:
        self.wanted = Wanted()
        self.mirror = Wanted()  # what the portal sent, unfiltered (see the module docstring)
        self._derived = self.wanted.derive()
        self.resyncs = 0  # resync_request sent (for logs and tests)
        self._resync_failures = 0
        self._next_resync_at = 0.0
        self.gateway_id: uuid.UUID | None = None
        self.ipv4: IPv4Address | None = None
        self.ipv6: IPv6Address | None = None
        self.heartbeat_interval_s = p.HEARTBEAT_INTERVAL_S

    # -- transitions -----------------------------------------------------------------------
    def _to(
        self,
        wanted: Wanted,
        replies: list[p.GatewayMessage] | None = None,
        note: str = "",
        *,
        mirror: Wanted | None = None,
    ) -> Step:
        return Step(wanted, diff(self._derived, wanted.derive()), replies or [], note, mirror)

    def commit(self, step: Step) -> None:
        self.wanted = step.wanted
        self._derived = step.wanted.derive()
        if step.mirror is not None:
            self.mirror = step.mirror

    def handle(self, message: p.PortalMessage, now: float) -> Step:
        """``now``: unix seconds (authorizations that already expired are not installed)."""
        w, m = self.wanted, self.mirror
        if isinstance(message, p.HeartbeatReply):
            return Step(w, [], self.check_digest(message.state_digest, now))
        if isinstance(message, p.Init):
            self.gateway_id, self.ipv4, self.ipv6 = message.gateway_id, message.ipv4, message.ipv6
            self.heartbeat_interval_s = message.heartbeat_interval_s
            statics = {sp.public_key: sp for sp in message.static_peers}
            auths = {a.id: a for a in message.authorizations if not _expired(a, now)}
            unsupported = [a for a in auths.values() if _unsupported(a.resource)]
            for a in unsupported:
                del auths[a.id]
            statics = {k: _supported_only(sp) for k, sp in statics.items()}
            replies: list[p.GatewayMessage] = [
                p.Error("authorization_failed", _unsupported(a.resource) or "", a.id)
                for a in unsupported
            ]
            mirror = Wanted(
                {sp.public_key: sp for sp in message.static_peers},
                {a.id: a for a in message.authorizations},
            )
            return self._to(Wanted(statics, auths), replies, "init", mirror=mirror)
        if isinstance(message, p.CreateAuthorization):
            a = message.authorization
            # The portal holds the flow whatever this gateway makes of it.
            mirror = replace(m, authorizations={**m.authorizations, a.id: a})
            reason = _unsupported(a.resource)
            if reason:
                return Step(w, [], [p.Error("authorization_failed", reason, a.id)], reason, mirror)
            if _expired(a, now):
                error = p.Error("authorization_failed", "already expired", a.id)
                return Step(w, [], [error], mirror=mirror)
            auths = {**w.authorizations, a.id: a}
            return self._to(
                replace(w, authorizations=auths), [p.AuthorizationAck(a.id)], mirror=mirror
            )
        if isinstance(message, p.RejectAccess):
            return self._to(_reject(w, message), mirror=_reject(m, message))
        if isinstance(message, p.ResourceUpdated):
            return self._to(
                _update_resource(w, message.resource),
                mirror=_update_resource(m, message.resource, supported_only=False),
            )
        if isinstance(message, p.AddStaticPeer):
            sp = _supported_only(message.peer)
            return self._to(
                replace(w, static_peers={**w.static_peers, sp.public_key: sp}),
                mirror=replace(m, static_peers={**m.static_peers, sp.public_key: message.peer}),
            )
        if isinstance(message, p.RemoveStaticPeer):
            key = message.public_key
            return self._to(
                replace(w, static_peers={k: v for k, v in w.static_peers.items() if k != key}),
                mirror=replace(
                    m, static_peers={k: v for k, v in m.static_peers.items() if k != key}
                ),
            )
        # token_rotated and error change nothing in the data plane.
        return Step(w, [])

    def expire(self, now: float) -> Step:
        """Forget authorizations whose expiry passed (the firewall already refuses their
        packets; this frees the peer when it was the client's last flow). The mirror forgets
        them too: the digest leaves out expired flows anyway."""
        w, m = self.wanted, self.mirror
        auths = {k: a for k, a in w.authorizations.items() if not _expired(a, now)}
        mirrored = {k: a for k, a in m.authorizations.items() if not _expired(a, now)}
        mirror = (
            replace(m, authorizations=mirrored) if len(mirrored) < len(m.authorizations) else None
        )
        if len(auths) == len(w.authorizations):
            return Step(w, [], mirror=mirror)
        return self._to(replace(w, authorizations=auths), note="expired", mirror=mirror)

    # -- convergence -------------------------------------------------------------------------
    def state_digest(self, now: float) -> str:
        """`protocol.state_digest` of what the portal told this gateway (flows unexpired at
        ``now``): equal to the portal's digest when no message was lost."""
        m = self.mirror
        live = [a for a in m.authorizations.values() if not _expired(a, now)]
        return p.state_digest(m.static_peers.values(), live)

    def check_digest(self, portal_digest: str | None, now: float) -> list[p.GatewayMessage]:
        """Compare the portal's digest (from ``heartbeat_reply``; None: the portal sends none)
        with ours; returns ``[ResyncRequest]`` when a resync is due, else ``[]``."""
        if portal_digest is None:
            return []
        mine = self.state_digest(now)
        if mine == portal_digest:
            self._resync_failures = 0
            self._next_resync_at = 0.0
            return []
        if now < self._next_resync_at:
            return []
        pause = min(2**self._resync_failures, self.MAX_RESYNC_PAUSE)
        self._resync_failures += 1
        self._next_resync_at = now + pause * self.heartbeat_interval_s
        self.resyncs += 1
        return [p.ResyncRequest(mine)]

    # -- read-only views ---------------------------------------------------------------------
    @property
    def peer_count(self) -> int:
        return len(self._derived.peers)


def _expired(a: p.Authorization, now: float) -> bool:
    return a.expires_at is not None and a.expires_at.timestamp() <= now


def _unsupported(resource: p.Resource) -> str | None:
    try:
        resource_rule(resource)
    except (UnsupportedResource, ValueError) as exc:
        return str(exc)
    return None


def _supported_only(sp: p.StaticPeer) -> p.StaticPeer:
    kept = tuple(r for r in sp.resources if _unsupported(r) is None)
    return sp if len(kept) == len(sp.resources) else replace(sp, resources=kept)


def _reject(w: Wanted, m: p.RejectAccess) -> Wanted:
    ids = set(m.authorization_ids)
    auths = {
        k: a
        for k, a in w.authorizations.items()
        if k not in ids
        and not (a.client_public_key == m.client_public_key and a.resource.id == m.resource_id)
    }
    statics = dict(w.static_peers)
    if m.client_public_key is not None and m.client_public_key in statics:
        sp = statics[m.client_public_key]
        statics[sp.public_key] = replace(
            sp, resources=tuple(r for r in sp.resources if r.id != m.resource_id)
        )
    return Wanted(statics, auths)


def _update_resource(w: Wanted, resource: p.Resource, *, supported_only: bool = True) -> Wanted:
    if supported_only and _unsupported(resource):
        return w
    auths = {
        k: (replace(a, resource=resource) if a.resource.id == resource.id else a)
        for k, a in w.authorizations.items()
    }
    statics = {
        k: replace(
            sp, resources=tuple(resource if r.id == resource.id else r for r in sp.resources)
        )
        for k, sp in w.static_peers.items()
    }
    return Wanted(statics, auths)


# --- applying commands to the core ----------------------------------------------------------


def apply(core: GatewayCore, commands: Iterable[Command], wall_offset: float) -> None:
    """Apply commands to a core. ``wall_offset`` = unix time - monotonic time (the core's
    expiries are on the data plane's monotonic clock). The caller holds the core's lock."""
    for c in commands:
        if isinstance(c, RemovePeer):
            core.remove_peer(c.public_key)
        elif isinstance(c, Revoke):
            core.revoke(c.public_key, c.authorization_id)
        elif isinstance(c, AddPeer):
            core.add_peer(c.public_key, c.preshared_key, c.ipv4, c.ipv6)
        elif isinstance(c, UpdateResource):
            core.update_resource(c.rule)
        else:
            expires = None if c.expires_at is None else c.expires_at - wall_offset
            core.allow(c.public_key, c.authorization_id, c.rule, expires)


# --- reconnects and heartbeats ------------------------------------------------------------------


@dataclass
class Backoff:
    """Exponential reconnect delays with jitter: attempt n waits a uniformly random time in
    [d/2, d] where d = min(cap, base * 2**n); never 0, so a flapping portal is not hammered."""

    base: float = 1.0
    cap: float = 60.0
    rng: Callable[[], float] = random.random
    attempt: int = 0

    def next_delay(self) -> float:
        d: float = min(self.cap, self.base * 2.0 ** min(self.attempt, 32))
        self.attempt += 1
        return d / 2 + self.rng() * d / 2

    def at_cap(self) -> float:
        """A delay at the cap (with jitter), e.g. while the account is disabled."""
        self.attempt += 1
        return self.cap / 2 + self.rng() * self.cap / 2

    def reset(self) -> None:
        self.attempt = 0


@dataclass(frozen=True, slots=True)
class CloseDecision:
    retry: bool
    delay: float
    reason: str


def after_close(code: int | None, backoff: Backoff) -> CloseDecision:
    """What to do once the socket is gone. ``code``: the close code received from the portal
    (None when the connection failed or dropped without a close frame)."""
    try:
        known = p.CloseCode(code) if code is not None else None
    except ValueError:
        known = None
    if known is None:
        return CloseDecision(True, backoff.next_delay(), f"closed ({code})")
    if not known.retry:
        return CloseDecision(False, 0.0, known.name.lower())
    if known is p.CloseCode.ACCOUNT_DISABLED:
        return CloseDecision(True, backoff.at_cap(), known.name.lower())
    return CloseDecision(True, backoff.next_delay(), known.name.lower())


@dataclass
class Heartbeat:
    """Heartbeat watchdog: a ``heartbeat`` every ``interval`` seconds; when ``max_missed``
    heartbeats in a row got no reply, the connection is considered dead."""

    interval: float = p.HEARTBEAT_INTERVAL_S
    max_missed: int = 3
    unanswered: int = 0
    next_at: float | None = None

    def start(self, now: float) -> None:
        self.unanswered = 0
        self.next_at = now + self.interval

    def on_reply(self) -> None:
        self.unanswered = 0

    def poll(self, now: float) -> str | None:
        """``"send"`` (send a heartbeat now), ``"dead"`` (reconnect) or None (nothing due)."""
        if self.next_at is None or now < self.next_at:
            return None
        if self.unanswered >= self.max_missed:
            return "dead"
        self.unanswered += 1
        self.next_at = now + self.interval
        return "send"
