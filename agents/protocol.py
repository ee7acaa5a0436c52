"""Wire protocol v1 between the portal and gateway agents (JSON text frames over one websocket).

Theory of operation
-------------------
A gateway agent opens ``GET /gateway/websocket?external_id=..&name=..&public_key=..&version=..
&protocol=1[&endpoint=host:port]`` with ``Authorization: Bearer <gateway token>``. The portal
either closes with one of the 4000-range codes below (the reason text says why) or sends ``init``.
After that the agent sends ``heartbeat`` every :data:`HEARTBEAT_INTERVAL_S` seconds and the portal
answers each with ``heartbeat_reply``; the portal pushes ``create_authorization``,
``reject_access``, ``resource_updated``, ``add_static_peer``, ``remove_static_peer`` and
``token_rotated`` whenever its database changes (after the commit); the agent acknowledges
``create_authorization`` with ``authorization_ack`` or answers with ``error``. Optionally the
agent reports its static peers' activity with ``peer_stats`` (at most every heartbeat interval,
only when something changed); a portal that does not know the type answers ``error`` and nothing
else happens.

Convergence: a push can be lost (a Redis blip, a portal process dying after the commit), so each
``heartbeat_reply`` may carry ``state_digest``, the :func:`state_digest` of what the database says
the gateway should hold. The agent computes the same digest over what the portal told it; on a
mismatch it sends ``resync_request`` and the portal answers with a fresh ``init`` (applied
retain-only). A lost message is therefore repaired within one heartbeat interval plus a round
trip; the pushes stay the fast path.

Every frame is one JSON object with a ``type`` member naming the message; the other members are the
message's fields. Unknown members are ignored (a v1 peer may add optional members); an unknown
``type``, a missing or malformed field is a :class:`ProtocolError`. The same module is imported by
the portal (Django side) and the agent, so both parse and emit exactly these types. Nothing here
does IO or reads a clock.

Docs with examples for every message and close code: ``docs/protocol.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from ipaddress import (
    IPv4Address,
    IPv6Address,
    ip_address,
    ip_network,
)
from typing import Any, ClassVar, Final, Literal, TypeAlias, get_args, overload

from agents.net.filter import Filter, PortRange

__all__ = [
    "AUTHORIZATION_ACK_TIMEOUT_S",
    "HEARTBEAT_INTERVAL_S",
    "PROTOCOL_VERSION",
    "SUPPORTED_PROTOCOL_VERSIONS",
    "AddStaticPeer",
    "Authorization",
    "AuthorizationAck",
    "AuthorizationCreated",
    "AuthorizationCreationFailed",
    "AuthorizationRevoked",
    "ClientInit",
    "ClientMessage",
    "ClientResource",
    "CloseCode",
    "CreateAuthorization",
    "Error",
    "FailureReason",
    "Filter",
    "GatewayMessage",
    "Heartbeat",
    "HeartbeatReply",
    "Init",
    "Message",
    "PeerStat",
    "PeerStats",
    "PortRange",
    "PortalMessage",
    "PortalToClientMessage",
    "ProtocolError",
    "RejectAccess",
    "Relay",
    "RemoveStaticPeer",
    "RequestAuthorization",
    "Resource",
    "ResourceCreatedOrUpdated",
    "ResourceDeleted",
    "ResourceUpdated",
    "ResyncRequest",
    "StaticPeer",
    "TokenRotated",
    "dump",
    "parse_message",
    "state_digest",
    "valid_public_key",
    "versions_compatible",
]

#: The protocol version this module speaks (query parameter ``protocol``).
PROTOCOL_VERSION: Final = 1
#: Versions the portal accepts; anything else is closed with CloseCode.INCOMPATIBLE_VERSION.
SUPPORTED_PROTOCOL_VERSIONS: Final = frozenset({1})
#: How often the agent sends ``heartbeat`` (seconds). Three missing replies mean reconnect.
HEARTBEAT_INTERVAL_S: Final = 10.0
#: The portal drops a socket silent for this long (seconds; settings.FZ_HEARTBEAT_TIMEOUT_S).
HEARTBEAT_TIMEOUT_S: Final = 37.0


class CloseCode(IntEnum):
    """Websocket close codes the portal uses (the close reason carries a human-readable text).

    ``retry`` says whether an agent should reconnect (with backoff) after this code.
    """

    UNAUTHORIZED = 4001  # missing/invalid/revoked/expired token, or not a gateway token
    BAD_PARAMETERS = 4002  # a query parameter is missing or malformed
    ACCOUNT_DISABLED = 4003  # the token's account is disabled
    REPLACED = 4004  # another connection with the same external id took over (newest wins)
    INCOMPATIBLE_VERSION = 4005  # protocol version not supported by this portal
    HEARTBEAT_TIMEOUT = 4006  # nothing received for HEARTBEAT_TIMEOUT_S
    GATEWAY_REMOVED = 4007  # the gateway or its site was deleted by an admin
    TOO_MANY_GATEWAYS = 4008  # a new external id, but the site has its maximum of gateways
    DEVICE_DISABLED = 4009  # client protocol: the client device was disabled or deleted

    @property
    def retry(self) -> bool:
        return self in (CloseCode.ACCOUNT_DISABLED, CloseCode.HEARTBEAT_TIMEOUT)


class ProtocolError(ValueError):
    """A frame that is not a valid v1 message; ``reason`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


ResourceType: TypeAlias = Literal["cidr", "ip", "dns", "internet"]
_RESOURCE_TYPES: Final = frozenset(get_args(ResourceType))


# --- field validation ----------------------------------------------------------------------------


def valid_public_key(value: object) -> bool:
    """A WireGuard key on the wire: standard base64 of exactly 32 bytes (44 characters)."""
    if not isinstance(value, str) or len(value) != 44:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def _obj(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected an object")
    return value


def _str(data: Mapping[str, Any], key: str, where: str, *, max_len: int = 1024) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{where}.{key}: expected a string")
    if len(value) > max_len:
        raise ProtocolError(f"{where}.{key}: longer than {max_len} characters")
    return value


def _opt_str(data: Mapping[str, Any], key: str, where: str) -> str | None:
    if data.get(key) is None:
        return None
    return _str(data, key, where)


def _key(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not valid_public_key(value):
        raise ProtocolError(f"{where}.{key}: expected base64 of 32 bytes")
    assert isinstance(value, str)
    return value


def _uuid(value: object, where: str) -> uuid.UUID:
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected a UUID string")
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise ProtocolError(f"{where}: {value!r} is not a UUID") from exc


def _ipv4(data: Mapping[str, Any], key: str, where: str) -> IPv4Address:
    value = data.get(key)
    try:
        parsed = ip_address(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, IPv4Address):
        raise ProtocolError(f"{where}.{key}: expected an IPv4 address")
    return parsed


def _ipv6(data: Mapping[str, Any], key: str, where: str) -> IPv6Address:
    value = data.get(key)
    try:
        parsed = ip_address(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if not isinstance(parsed, IPv6Address):
        raise ProtocolError(f"{where}.{key}: expected an IPv6 address")
    return parsed


def _list(
    data: Mapping[str, Any], key: str, where: str, *, default_empty: bool = False
) -> Sequence[Any]:
    value = data.get(key)
    if value is None and default_empty:
        return ()
    if not isinstance(value, list):
        raise ProtocolError(f"{where}.{key}: expected a list")
    return value


def _time(value: object, where: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected an ISO 8601 time or null")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ProtocolError(f"{where}: {value!r} is not an ISO 8601 time") from exc
    if parsed.utcoffset() is None:
        raise ProtocolError(f"{where}: the time needs a UTC offset")
    return parsed.astimezone(UTC)


def _dump_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.utcoffset() is None:
        raise ValueError("times on the wire must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- building blocks -----------------------------------------------------------------------------


def _parse_filter(value: object, where: str) -> Filter:
    data = _obj(value, where)
    protocol = data.get("protocol")
    if protocol not in ("tcp", "udp", "icmp"):
        raise ProtocolError(f"{where}.protocol: expected tcp, udp or icmp")
    ports: list[PortRange] = []
    for i, item in enumerate(_list(data, "ports", where, default_empty=True)):
        if isinstance(item, int) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise ProtocolError(f"{where}.ports[{i}]: expected '443' or '1000-2000'")
        try:
            port_range = PortRange.parse(item)
        except ValueError as exc:
            raise ProtocolError(f"{where}.ports[{i}]: {exc}") from exc
        if port_range.start < 1:
            raise ProtocolError(f"{where}.ports[{i}]: ports are 1-65535")
        ports.append(port_range)
    return Filter(protocol=protocol, ports=tuple(ports))


def _dump_filter(value: Filter) -> dict[str, Any]:
    return {"protocol": value.protocol, "ports": [str(p) for p in value.ports]}


@dataclass(frozen=True, slots=True)
class Resource:
    """A resource as the gateway needs it. ``address``: a network (``10.0.0.0/24``) for cidr, an
    address for ip, a name pattern for dns, ``""`` for internet. ``filters == ()`` allows all."""

    id: uuid.UUID
    type: ResourceType
    address: str
    filters: tuple[Filter, ...] = ()

    @classmethod
    def from_json(cls, value: object, where: str = "resource") -> Resource:
        data = _obj(value, where)
        rtype: ResourceType = data.get("type")  # type: ignore[assignment]
        if rtype not in _RESOURCE_TYPES:
            raise ProtocolError(f"{where}.type: expected one of cidr, ip, dns, internet")
        address = _str(data, "address", where, max_len=253) if rtype != "internet" else ""
        if rtype in ("cidr", "ip"):
            try:
                network = ip_network(address, strict=False)
            except ValueError as exc:
                raise ProtocolError(f"{where}.address: {address!r} is not an IP network") from exc
            if rtype == "ip" and network.num_addresses != 1:
                raise ProtocolError(f"{where}.address: an ip resource is a single address")
        elif rtype == "dns" and not address:
            raise ProtocolError(f"{where}.address: a dns resource needs a name")
        filters = tuple(
            _parse_filter(f, f"{where}.filters[{i}]")
            for i, f in enumerate(_list(data, "filters", where, default_empty=True))
        )
        return cls(
            id=_uuid(data.get("id"), f"{where}.id"), type=rtype, address=address, filters=filters
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "address": self.address,
            "filters": [_dump_filter(f) for f in self.filters],
        }


@dataclass(frozen=True, slots=True)
class StaticPeer:
    """A standard WireGuard device with a portal-issued config, and what it may reach here."""

    public_key: str
    preshared_key: str
    ipv4: IPv4Address
    ipv6: IPv6Address
    resources: tuple[Resource, ...]

    @classmethod
    def from_json(cls, value: object, where: str = "static_peer") -> StaticPeer:
        data = _obj(value, where)
        return cls(
            public_key=_key(data, "public_key", where),
            preshared_key=_key(data, "preshared_key", where),
            ipv4=_ipv4(data, "ipv4", where),
            ipv6=_ipv6(data, "ipv6", where),
            resources=tuple(
                Resource.from_json(r, f"{where}.resources[{i}]")
                for i, r in enumerate(_list(data, "resources", where))
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "public_key": self.public_key,
            "preshared_key": self.preshared_key,
            "ipv4": str(self.ipv4),
            "ipv6": str(self.ipv6),
            "resources": [r.to_json() for r in self.resources],
        }


@dataclass(frozen=True, slots=True)
class Authorization:
    """One flow: client ``client_public_key`` may reach ``resource`` until ``expires_at``
    (``None``: no limit other than revocation)."""

    id: uuid.UUID
    client_public_key: str
    preshared_key: str
    client_ipv4: IPv4Address
    client_ipv6: IPv6Address
    resource: Resource
    expires_at: datetime | None

    @classmethod
    def from_json(cls, value: object, where: str = "authorization") -> Authorization:
        data = _obj(value, where)
        return cls(
            id=_uuid(data.get("id"), f"{where}.id"),
            client_public_key=_key(data, "client_public_key", where),
            preshared_key=_key(data, "preshared_key", where),
            client_ipv4=_ipv4(data, "client_ipv4", where),
            client_ipv6=_ipv6(data, "client_ipv6", where),
            resource=Resource.from_json(data.get("resource"), f"{where}.resource"),
            expires_at=_time(data.get("expires_at"), f"{where}.expires_at"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "client_public_key": self.client_public_key,
            "preshared_key": self.preshared_key,
            "client_ipv4": str(self.client_ipv4),
            "client_ipv6": str(self.client_ipv6),
            "resource": self.resource.to_json(),
            "expires_at": _dump_time(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class Relay:
    """A TURN relay with REST credentials (reserved: v1 portals send an empty list)."""

    uri: str
    username: str
    password: str
    expires_at: datetime | None

    @classmethod
    def from_json(cls, value: object, where: str = "relay") -> Relay:
        data = _obj(value, where)
        return cls(
            uri=_str(data, "uri", where),
            username=_str(data, "username", where),
            password=_str(data, "password", where),
            expires_at=_time(data.get("expires_at"), f"{where}.expires_at"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "username": self.username,
            "password": self.password,
            "expires_at": _dump_time(self.expires_at),
        }


# --- messages: portal -> gateway -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Init:
    """First message after a successful connect: the complete desired state. The agent replaces
    whatever it held before with this (authorizations not listed are dropped)."""

    TYPE: ClassVar[str] = "init"
    gateway_id: uuid.UUID
    ipv4: IPv4Address
    ipv6: IPv6Address
    static_peers: tuple[StaticPeer, ...] = ()
    authorizations: tuple[Authorization, ...] = ()
    relays: tuple[Relay, ...] = ()
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Init:
        interval = data.get("heartbeat_interval_s", HEARTBEAT_INTERVAL_S)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ProtocolError("init.heartbeat_interval_s: expected a positive number")
        return cls(
            gateway_id=_uuid(data.get("gateway_id"), "init.gateway_id"),
            ipv4=_ipv4(data, "ipv4", "init"),
            ipv6=_ipv6(data, "ipv6", "init"),
            static_peers=tuple(
                StaticPeer.from_json(p, f"init.static_peers[{i}]")
                for i, p in enumerate(_list(data, "static_peers", "init", default_empty=True))
            ),
            authorizations=tuple(
                Authorization.from_json(a, f"init.authorizations[{i}]")
                for i, a in enumerate(_list(data, "authorizations", "init", default_empty=True))
            ),
            relays=tuple(
                Relay.from_json(r, f"init.relays[{i}]")
                for i, r in enumerate(_list(data, "relays", "init", default_empty=True))
            ),
            heartbeat_interval_s=float(interval),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "gateway_id": str(self.gateway_id),
            "ipv4": str(self.ipv4),
            "ipv6": str(self.ipv6),
            "static_peers": [p.to_json() for p in self.static_peers],
            "authorizations": [a.to_json() for a in self.authorizations],
            "relays": [r.to_json() for r in self.relays],
            "heartbeat_interval_s": self.heartbeat_interval_s,
        }


@dataclass(frozen=True, slots=True)
class CreateAuthorization:
    """Allow one more flow; the agent answers ``authorization_ack`` (or ``error``)."""

    TYPE: ClassVar[str] = "create_authorization"
    authorization: Authorization

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CreateAuthorization:
        return cls(
            Authorization.from_json(data.get("authorization"), "create_authorization.authorization")
        )

    def to_json(self) -> dict[str, Any]:
        return {"authorization": self.authorization.to_json()}


@dataclass(frozen=True, slots=True)
class RejectAccess:
    """Stop these flows now. ``authorization_ids``: flows created by ``create_authorization`` /
    ``init``. Optionally one (client key, resource) pair for flows the agent keyed differently."""

    TYPE: ClassVar[str] = "reject_access"
    authorization_ids: tuple[uuid.UUID, ...] = ()
    client_public_key: str | None = None
    resource_id: uuid.UUID | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RejectAccess:
        ids = tuple(
            _uuid(v, f"reject_access.authorization_ids[{i}]")
            for i, v in enumerate(
                _list(data, "authorization_ids", "reject_access", default_empty=True)
            )
        )
        key = None
        if data.get("client_public_key") is not None:
            key = _key(data, "client_public_key", "reject_access")
        resource_id = None
        if data.get("resource_id") is not None:
            resource_id = _uuid(data.get("resource_id"), "reject_access.resource_id")
        if (key is None) != (resource_id is None):
            raise ProtocolError("reject_access: client_public_key and resource_id go together")
        if not ids and key is None:
            raise ProtocolError("reject_access: nothing to reject")
        return cls(authorization_ids=ids, client_public_key=key, resource_id=resource_id)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"authorization_ids": [str(i) for i in self.authorization_ids]}
        if self.client_public_key is not None:
            out["client_public_key"] = self.client_public_key
            out["resource_id"] = str(self.resource_id)
        return out


@dataclass(frozen=True, slots=True)
class ResourceUpdated:
    """A resource's filters changed: apply to every flow and static peer that uses it."""

    TYPE: ClassVar[str] = "resource_updated"
    resource: Resource

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceUpdated:
        return cls(Resource.from_json(data.get("resource"), "resource_updated.resource"))

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.resource.to_json()}


@dataclass(frozen=True, slots=True)
class AddStaticPeer:
    """Add a static peer, or replace the one with the same public key (its resources, addresses
    and preshared key become exactly these). An empty ``resources`` keeps the peer, with no
    access."""

    TYPE: ClassVar[str] = "add_static_peer"
    peer: StaticPeer

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AddStaticPeer:
        return cls(StaticPeer.from_json(data.get("peer"), "add_static_peer.peer"))

    def to_json(self) -> dict[str, Any]:
        return {"peer": self.peer.to_json()}


@dataclass(frozen=True, slots=True)
class RemoveStaticPeer:
    """Remove a static peer and everything it may reach (unknown keys are ignored)."""

    TYPE: ClassVar[str] = "remove_static_peer"
    public_key: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RemoveStaticPeer:
        return cls(_key(data, "public_key", "remove_static_peer"))

    def to_json(self) -> dict[str, Any]:
        return {"public_key": self.public_key}


_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


def _opt_digest(data: Mapping[str, Any], where: str) -> str | None:
    value = data.get("state_digest")
    if value is None:
        return None
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise ProtocolError(f"{where}.state_digest: expected 64 lowercase hex digits")
    return value


def state_digest(
    static_peers: Iterable[StaticPeer], authorizations: Iterable[Authorization]
) -> str:
    """SHA-256 (hex) of a gateway's state in canonical form: static peers by public key, their
    resources by id, authorizations by id, JSON with sorted keys. Order-independent, so the
    portal (database rows) and the agent (messages applied in order) get the same value for the
    same content. Filters keep their order (the portal sends them as stored)."""
    peers = sorted(
        (
            {**sp.to_json(), "resources": sorted((r.to_json() for r in sp.resources),
                                                 key=lambda r: str(r["id"]))}
            for sp in static_peers
        ),
        key=lambda sp: str(sp["public_key"]),
    )  # fmt: skip
    auths = sorted((a.to_json() for a in authorizations), key=lambda a: str(a["id"]))
    text = json.dumps(
        {"static_peers": peers, "authorizations": auths}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """Answer to ``heartbeat``. ``state_digest`` (optional): :func:`state_digest` of the state the
    portal's database holds for this gateway right now; an agent whose own digest differs asks
    for ``init`` again with ``resync_request``."""

    TYPE: ClassVar[str] = "heartbeat_reply"
    state_digest: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeartbeatReply:
        return cls(_opt_digest(data, "heartbeat_reply"))

    def to_json(self) -> dict[str, Any]:
        return {} if self.state_digest is None else {"state_digest": self.state_digest}


@dataclass(frozen=True, slots=True)
class TokenRotated:
    """The portal rotated this gateway's token: store ``token`` and use it on the next connect.
    The old token keeps working until ``grace_until`` or until the new one is first used."""

    TYPE: ClassVar[str] = "token_rotated"
    token: str
    grace_until: datetime | None

    def __repr__(self) -> str:  # keep the secret out of logs
        return f"TokenRotated(token='***', grace_until={self.grace_until!r})"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TokenRotated:
        token = _str(data, "token", "token_rotated", max_len=512)
        if not token:
            raise ProtocolError("token_rotated.token: empty")
        return cls(
            token=token, grace_until=_time(data.get("grace_until"), "token_rotated.grace_until")
        )

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "grace_until": _dump_time(self.grace_until)}


# --- messages: gateway -> portal -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heartbeat:
    TYPE: ClassVar[str] = "heartbeat"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Heartbeat:
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class AuthorizationAck:
    """The flow of ``create_authorization`` is installed."""

    TYPE: ClassVar[str] = "authorization_ack"
    authorization_id: uuid.UUID

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizationAck:
        return cls(_uuid(data.get("authorization_id"), "authorization_ack.authorization_id"))

    def to_json(self) -> dict[str, Any]:
        return {"authorization_id": str(self.authorization_id)}


#: Upper bound for the byte counters of ``peer_stats`` (they fit a signed 64-bit column).
MAX_COUNTER: Final = 2**63 - 1


def _counter(data: Mapping[str, Any], key: str, where: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        raise ProtocolError(f"{where}.{key}: expected a non-negative integer")
    return value


@dataclass(frozen=True, slots=True)
class PeerStat:
    """One static peer as the gateway's WireGuard device sees it. ``last_handshake_at``: the last
    completed handshake (None: never); ``rx_bytes`` / ``tx_bytes``: transport-data bytes
    received / sent since the peer was added to this agent; ``endpoint``: where its packets last
    came from (``ip:port`` / ``[ipv6]:port``, None before the first one)."""

    public_key: str
    last_handshake_at: datetime | None
    rx_bytes: int
    tx_bytes: int
    endpoint: str | None = None

    @classmethod
    def from_json(cls, value: object, where: str = "peer") -> PeerStat:
        data = _obj(value, where)
        endpoint = data.get("endpoint")
        if endpoint is not None and (not isinstance(endpoint, str) or len(endpoint) > 64):
            raise ProtocolError(f"{where}.endpoint: expected a host:port string or null")
        return cls(
            public_key=_key(data, "public_key", where),
            last_handshake_at=_time(data.get("last_handshake_at"), f"{where}.last_handshake_at"),
            rx_bytes=_counter(data, "rx_bytes", where),
            tx_bytes=_counter(data, "tx_bytes", where),
            endpoint=endpoint,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "public_key": self.public_key,
            "last_handshake_at": _dump_time(self.last_handshake_at),
            "rx_bytes": self.rx_bytes,
            "tx_bytes": self.tx_bytes,
            "endpoint": self.endpoint,
        }


@dataclass(frozen=True, slots=True)
class PeerStats:
    """Optional, additive: the activity of the gateway's static peers (only those that changed
    since the last report may be listed). The portal shows it; nothing depends on it."""

    TYPE: ClassVar[str] = "peer_stats"
    peers: tuple[PeerStat, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PeerStats:
        return cls(
            tuple(
                PeerStat.from_json(v, f"peer_stats.peers[{i}]")
                for i, v in enumerate(_list(data, "peers", "peer_stats"))
            )
        )

    def to_json(self) -> dict[str, Any]:
        return {"peers": [v.to_json() for v in self.peers]}


@dataclass(frozen=True, slots=True)
class ResyncRequest:
    """The agent's state digest differs from the one in ``heartbeat_reply``: send ``init`` again.
    ``state_digest``: the agent's own digest (for the portal's log)."""

    TYPE: ClassVar[str] = "resync_request"
    state_digest: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResyncRequest:
        return cls(_opt_digest(data, "resync_request"))

    def to_json(self) -> dict[str, Any]:
        return {} if self.state_digest is None else {"state_digest": self.state_digest}


# --- both directions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Error:
    """Something the sender could not handle. ``code``: a short machine-readable word
    (``invalid_message``, ``authorization_failed``, ...); ``reason``: human-readable text;
    ``authorization_id``: set when it answers a ``create_authorization``."""

    TYPE: ClassVar[str] = "error"
    code: str
    reason: str = ""
    authorization_id: uuid.UUID | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Error:
        auth = data.get("authorization_id")
        return cls(
            code=_str(data, "code", "error", max_len=64),
            reason=_opt_str(data, "reason", "error") or "",
            authorization_id=None if auth is None else _uuid(auth, "error.authorization_id"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.authorization_id is not None:
            out["authorization_id"] = str(self.authorization_id)
        return out


# --- client protocol v1 (portal <-> client, /client/websocket) ------------------------------------
#
# Same framing, conventions and close codes as the gateway protocol. A client opens
# ``GET /client/websocket?external_id=..&name=..&public_key=..&version=..&protocol=1`` with
# ``Authorization: Bearer <client session token or service-account token>``; the portal closes with
# a 4000-range code or sends ``init`` (:class:`ClientInit`). Parse a client's frames with
# ``parse_message(text, sender="client")`` and the portal's frames to a client with
# ``parse_message(text, sender="portal_to_client")``; ``dump`` serializes every message.

#: Why ``request_authorization`` failed (``authorization_creation_failed.reason``).
FailureReason: TypeAlias = Literal["not_found", "offline", "forbidden", "version_mismatch"]
_FAILURE_REASONS: Final = frozenset(get_args(FailureReason))
#: How long the portal waits for the gateway's ``authorization_ack`` before answering ``offline``.
AUTHORIZATION_ACK_TIMEOUT_S: Final = 15.0


def versions_compatible(client_version: str, gateway_version: str) -> bool:
    """Whether a client of ``client_version`` may use a gateway of ``gateway_version``: the same
    major version, and for 0.x the same minor version too. Unparseable versions are incompatible
    (only ``major.minor[.patch][-suffix]`` is understood)."""

    def major_minor(value: str) -> tuple[int, int] | None:
        parts = value.strip().lstrip("v").split("-", 1)[0].split("+", 1)[0].split(".")
        if len(parts) < 2 or not all(p.isdigit() for p in parts[:2]):
            return None
        return int(parts[0]), int(parts[1])

    a, b = major_minor(client_version), major_minor(gateway_version)
    if a is None or b is None or a[0] != b[0]:
        return False
    return a[0] > 0 or a[1] == b[1]


@dataclass(frozen=True, slots=True)
class ClientResource:
    """A resource as a client sees it: what to route (``type`` + ``address``), a display ``name``,
    the ``site_id`` whose gateways serve it and the ``filters`` (informational: gateways enforce
    them). Conditions are not listed: they are checked when the client asks for the resource."""

    id: uuid.UUID
    type: ResourceType
    address: str
    name: str
    site_id: uuid.UUID
    address_description: str = ""
    filters: tuple[Filter, ...] = ()

    @classmethod
    def from_json(cls, value: object, where: str = "resource") -> ClientResource:
        data = _obj(value, where)
        base = Resource.from_json(data, where)
        return cls(
            id=base.id,
            type=base.type,
            address=base.address,
            name=_str(data, "name", where, max_len=255),
            site_id=_uuid(data.get("site_id"), f"{where}.site_id"),
            address_description=_opt_str(data, "address_description", where) or "",
            filters=base.filters,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type,
            "address": self.address,
            "name": self.name,
            "site_id": str(self.site_id),
            "address_description": self.address_description,
            "filters": [_dump_filter(f) for f in self.filters],
        }


def _endpoint(value: object, where: str) -> str:
    """``host:port`` (IPv6 as ``[addr]:port``)."""
    if not isinstance(value, str) or len(value) > 300:
        raise ProtocolError(f"{where}: expected host:port")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ProtocolError(f"{where}: expected host:port, got {value!r}")
    if host.startswith("[") != host.endswith("]"):
        raise ProtocolError(f"{where}: an IPv6 host goes in brackets")
    return value


@dataclass(frozen=True, slots=True)
class ClientInit:
    """First message to a client after a successful connect: its device id, tunnel addresses, and
    the complete list of resources the actor may see (replaces what the client held)."""

    TYPE: ClassVar[str] = "init"
    client_id: uuid.UUID
    ipv4: IPv4Address
    ipv6: IPv6Address
    resources: tuple[ClientResource, ...] = ()
    relays: tuple[Relay, ...] = ()
    heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClientInit:
        interval = data.get("heartbeat_interval_s", HEARTBEAT_INTERVAL_S)
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ProtocolError("init.heartbeat_interval_s: expected a positive number")
        return cls(
            client_id=_uuid(data.get("client_id"), "init.client_id"),
            ipv4=_ipv4(data, "ipv4", "init"),
            ipv6=_ipv6(data, "ipv6", "init"),
            resources=tuple(
                ClientResource.from_json(r, f"init.resources[{i}]")
                for i, r in enumerate(_list(data, "resources", "init", default_empty=True))
            ),
            relays=tuple(
                Relay.from_json(r, f"init.relays[{i}]")
                for i, r in enumerate(_list(data, "relays", "init", default_empty=True))
            ),
            heartbeat_interval_s=float(interval),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "client_id": str(self.client_id),
            "ipv4": str(self.ipv4),
            "ipv6": str(self.ipv6),
            "resources": [r.to_json() for r in self.resources],
            "relays": [r.to_json() for r in self.relays],
            "heartbeat_interval_s": self.heartbeat_interval_s,
        }


@dataclass(frozen=True, slots=True)
class ResourceCreatedOrUpdated:
    """The actor may now see this resource, or its address/name/filters changed: replace the
    client's copy (matched by ``id``)."""

    TYPE: ClassVar[str] = "resource_created_or_updated"
    resource: ClientResource

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceCreatedOrUpdated:
        return cls(
            ClientResource.from_json(data.get("resource"), "resource_created_or_updated.resource")
        )

    def to_json(self) -> dict[str, Any]:
        return {"resource": self.resource.to_json()}


@dataclass(frozen=True, slots=True)
class ResourceDeleted:
    """The actor may no longer see this resource: drop its routes and flows (unknown ids are
    ignored)."""

    TYPE: ClassVar[str] = "resource_deleted"
    resource_id: uuid.UUID

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResourceDeleted:
        return cls(_uuid(data.get("resource_id"), "resource_deleted.resource_id"))

    def to_json(self) -> dict[str, Any]:
        return {"resource_id": str(self.resource_id)}


@dataclass(frozen=True, slots=True)
class AuthorizationCreated:
    """The gateway installed the flow: set up WireGuard to ``gateway_public_key`` at one of
    ``gateway_endpoints`` with ``preshared_key`` and send the resource's traffic through it until
    ``expires_at`` (``None``: until revoked)."""

    TYPE: ClassVar[str] = "authorization_created"
    authorization_id: uuid.UUID
    resource_id: uuid.UUID
    gateway_id: uuid.UUID
    gateway_public_key: str
    gateway_endpoints: tuple[str, ...]
    preshared_key: str
    gateway_ipv4: IPv4Address
    gateway_ipv6: IPv6Address
    client_ipv4: IPv4Address
    client_ipv6: IPv6Address
    expires_at: datetime | None

    def __repr__(self) -> str:  # keep the preshared key out of logs
        return (
            f"AuthorizationCreated(authorization_id={self.authorization_id!s}, "
            f"resource_id={self.resource_id!s}, gateway_id={self.gateway_id!s}, "
            f"gateway_endpoints={self.gateway_endpoints!r}, preshared_key='***', "
            f"expires_at={self.expires_at!r})"
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizationCreated:
        w = "authorization_created"
        endpoints = tuple(
            _endpoint(e, f"{w}.gateway_endpoints[{i}]")
            for i, e in enumerate(_list(data, "gateway_endpoints", w))
        )
        if not endpoints:
            raise ProtocolError(f"{w}.gateway_endpoints: at least one endpoint")
        return cls(
            authorization_id=_uuid(data.get("authorization_id"), f"{w}.authorization_id"),
            resource_id=_uuid(data.get("resource_id"), f"{w}.resource_id"),
            gateway_id=_uuid(data.get("gateway_id"), f"{w}.gateway_id"),
            gateway_public_key=_key(data, "gateway_public_key", w),
            gateway_endpoints=endpoints,
            preshared_key=_key(data, "preshared_key", w),
            gateway_ipv4=_ipv4(data, "gateway_ipv4", w),
            gateway_ipv6=_ipv6(data, "gateway_ipv6", w),
            client_ipv4=_ipv4(data, "client_ipv4", w),
            client_ipv6=_ipv6(data, "client_ipv6", w),
            expires_at=_time(data.get("expires_at"), f"{w}.expires_at"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "authorization_id": str(self.authorization_id),
            "resource_id": str(self.resource_id),
            "gateway_id": str(self.gateway_id),
            "gateway_public_key": self.gateway_public_key,
            "gateway_endpoints": list(self.gateway_endpoints),
            "preshared_key": self.preshared_key,
            "gateway_ipv4": str(self.gateway_ipv4),
            "gateway_ipv6": str(self.gateway_ipv6),
            "client_ipv4": str(self.client_ipv4),
            "client_ipv6": str(self.client_ipv6),
            "expires_at": _dump_time(self.expires_at),
        }


@dataclass(frozen=True, slots=True)
class AuthorizationCreationFailed:
    """``request_authorization`` for ``resource_id`` failed. ``reason``: ``not_found`` (no such
    resource the actor may see, also for another account's ids), ``offline`` (no online gateway in
    the site, or the gateway did not acknowledge in time), ``forbidden`` (a policy exists but its
    conditions fail; ``violated`` names them: ``remote_ip``, ``remote_ip_location_region``,
    ``provider_id``, ``current_utc_datetime``, ``client_verified``), ``version_mismatch`` (online
    gateways exist, none compatible with the client's version)."""

    TYPE: ClassVar[str] = "authorization_creation_failed"
    resource_id: uuid.UUID
    reason: FailureReason
    violated: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizationCreationFailed:
        w = "authorization_creation_failed"
        reason: FailureReason = data.get("reason")  # type: ignore[assignment]
        if reason not in _FAILURE_REASONS:
            raise ProtocolError(
                f"{w}.reason: expected one of not_found, offline, forbidden, version_mismatch"
            )
        violated: list[str] = []
        for i, v in enumerate(_list(data, "violated", w, default_empty=True)):
            if not isinstance(v, str) or not v or len(v) > 64:
                raise ProtocolError(f"{w}.violated[{i}]: expected a property name")
            violated.append(v)
        return cls(
            resource_id=_uuid(data.get("resource_id"), f"{w}.resource_id"),
            reason=reason,
            violated=tuple(violated),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "resource_id": str(self.resource_id),
            "reason": self.reason,
            "violated": list(self.violated),
        }


@dataclass(frozen=True, slots=True)
class AuthorizationRevoked:
    """The portal revoked these flows (the gateway got ``reject_access``): drop them; the client may
    ``request_authorization`` again if the resource is still listed (another policy may allow)."""

    TYPE: ClassVar[str] = "authorization_revoked"
    authorization_ids: tuple[uuid.UUID, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuthorizationRevoked:
        w = "authorization_revoked"
        ids = tuple(
            _uuid(v, f"{w}.authorization_ids[{i}]")
            for i, v in enumerate(_list(data, "authorization_ids", w))
        )
        if not ids:
            raise ProtocolError(f"{w}.authorization_ids: empty")
        return cls(ids)

    def to_json(self) -> dict[str, Any]:
        return {"authorization_ids": [str(i) for i in self.authorization_ids]}


@dataclass(frozen=True, slots=True)
class RequestAuthorization:
    """Client -> portal: set up a flow to ``resource_id``. ``connected_gateway_ids``: gateways the
    client already has a WireGuard session with (preferred, so one session carries many
    resources). Answered by ``authorization_created`` or ``authorization_creation_failed``."""

    TYPE: ClassVar[str] = "request_authorization"
    resource_id: uuid.UUID
    connected_gateway_ids: tuple[uuid.UUID, ...] = ()
    #: gateways the client could not reach (failover): avoided while another one is available
    failed_gateway_ids: tuple[uuid.UUID, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RequestAuthorization:
        w = "request_authorization"

        def ids(key: str) -> tuple[uuid.UUID, ...]:
            values = _list(data, key, w, default_empty=True)
            if len(values) > 1000:
                raise ProtocolError(f"{w}.{key}: more than 1000 ids")
            return tuple(_uuid(v, f"{w}.{key}[{i}]") for i, v in enumerate(values))

        return cls(
            resource_id=_uuid(data.get("resource_id"), f"{w}.resource_id"),
            connected_gateway_ids=ids("connected_gateway_ids"),
            failed_gateway_ids=ids("failed_gateway_ids"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "resource_id": str(self.resource_id),
            "connected_gateway_ids": [str(i) for i in self.connected_gateway_ids],
            "failed_gateway_ids": [str(i) for i in self.failed_gateway_ids],
        }


PortalToClientMessage: TypeAlias = (
    ClientInit
    | ResourceCreatedOrUpdated
    | ResourceDeleted
    | AuthorizationCreated
    | AuthorizationCreationFailed
    | AuthorizationRevoked
    | HeartbeatReply
    | Error
)
ClientMessage: TypeAlias = RequestAuthorization | Heartbeat | Error

PortalMessage: TypeAlias = (
    Init
    | CreateAuthorization
    | RejectAccess
    | ResourceUpdated
    | AddStaticPeer
    | RemoveStaticPeer
    | HeartbeatReply
    | TokenRotated
    | Error
)
GatewayMessage: TypeAlias = Heartbeat | AuthorizationAck | PeerStats | ResyncRequest | Error
Message: TypeAlias = PortalMessage | GatewayMessage | PortalToClientMessage | ClientMessage

_PORTAL_TYPES: Final[dict[str, Any]] = {
    cls.TYPE: cls
    for cls in (
        Init,
        CreateAuthorization,
        RejectAccess,
        ResourceUpdated,
        AddStaticPeer,
        RemoveStaticPeer,
        HeartbeatReply,
        TokenRotated,
        Error,
    )
}
_GATEWAY_TYPES: Final[dict[str, Any]] = {
    cls.TYPE: cls for cls in (Heartbeat, AuthorizationAck, PeerStats, ResyncRequest, Error)
}
_ALL_TYPES: Final[dict[str, Any]] = {**_PORTAL_TYPES, **_GATEWAY_TYPES}
_PORTAL_TO_CLIENT_TYPES: Final[dict[str, Any]] = {
    cls.TYPE: cls
    for cls in (
        ClientInit,
        ResourceCreatedOrUpdated,
        ResourceDeleted,
        AuthorizationCreated,
        AuthorizationCreationFailed,
        AuthorizationRevoked,
        HeartbeatReply,
        Error,
    )
}
_CLIENT_TYPES: Final[dict[str, Any]] = {
    cls.TYPE: cls for cls in (RequestAuthorization, Heartbeat, Error)
}
Sender: TypeAlias = Literal["portal", "gateway", "client", "portal_to_client"]

#: Largest frame either side accepts (init with thousands of peers fits comfortably).
MAX_FRAME_BYTES: Final = 8 * 1024 * 1024


@overload
def parse_message(text: str | bytes, *, sender: Literal["portal"]) -> PortalMessage: ...
@overload
def parse_message(text: str | bytes, *, sender: Literal["gateway"]) -> GatewayMessage: ...
@overload
def parse_message(text: str | bytes, *, sender: Literal["client"]) -> ClientMessage: ...
@overload
def parse_message(
    text: str | bytes, *, sender: Literal["portal_to_client"]
) -> PortalToClientMessage: ...
@overload
def parse_message(text: str | bytes, *, sender: None = None) -> Message: ...


def parse_message(text: str | bytes, *, sender: Sender | None = None) -> Message:
    """Parse one frame. ``sender`` restricts the accepted types to what that side may send:
    ``"portal"`` (portal -> gateway), ``"gateway"``, ``"client"`` (client -> portal) or
    ``"portal_to_client"``. ``None`` accepts the gateway protocol's types only (the client
    protocol's ``init`` differs from the gateway's).

    Raises :class:`ProtocolError` (never anything else) with a reason naming the bad field.
    """
    if len(text) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame larger than {MAX_FRAME_BYTES} bytes")
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not JSON: {exc}") from exc
    except RecursionError as exc:  # a deeply nested frame must not escape as a crash
        raise ProtocolError("JSON nested too deeply") from exc
    if not isinstance(data, dict):
        raise ProtocolError("a message is a JSON object")
    mtype = data.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError("type: missing")
    table = {
        None: _ALL_TYPES,
        "portal": _PORTAL_TYPES,
        "gateway": _GATEWAY_TYPES,
        "client": _CLIENT_TYPES,
        "portal_to_client": _PORTAL_TO_CLIENT_TYPES,
    }[sender]
    cls = table.get(mtype)
    if cls is None:
        who = f" from the {sender.replace('_to_', ' to the ')}" if sender else ""
        raise ProtocolError(f"type: unknown message type {mtype!r}{who}")
    try:
        message: Message = cls.from_json(data)
    except ProtocolError:
        raise
    except (ValueError, TypeError) as exc:  # e.g. PortRange / Filter invariants
        raise ProtocolError(f"{mtype}: {exc}") from exc
    return message


def dump(message: Message) -> str:
    """Serialize a message to one compact JSON text frame."""
    return json.dumps({"type": message.TYPE, **message.to_json()}, separators=(",", ":"))
