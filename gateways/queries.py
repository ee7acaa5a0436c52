"""Account-scoped reads for sites, gateways, devices and authorizations, and the wire views of
them (``init``, static peers, resources) that the consumer and the pushes send."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q, QuerySet

from accounts.models import Account, Membership
from agents import protocol
from gateways.models import (
    AccountKeySecret,
    Authorization,
    ClientDevice,
    Gateway,
    StaticDeviceAssignment,
)
from policies.models import Resource, Site

#: Resource kinds a static WireGuard config can express (AllowedIPs are networks).
STATIC_KINDS = frozenset({Resource.Kind.CIDR, Resource.Kind.IP})


# --- plain scoped reads ----------------------------------------------------------------------


def sites(account: Account | uuid.UUID) -> QuerySet[Site]:
    return Site.objects.for_account(account).order_by("name")


def authorizations(account: Account | uuid.UUID) -> QuerySet[Authorization]:
    return Authorization.objects.for_account(account)


def active_authorizations(account: Account | uuid.UUID, now: datetime) -> QuerySet[Authorization]:
    return authorizations(account).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now), revoked_at__isnull=True
    )


def recent_authorizations_of_policy(
    account_id: uuid.UUID, policy_id: uuid.UUID, *, limit: int
) -> list[Authorization]:
    """Provides ``policies.hooks.recent_authorizations_of_policy`` (the policy page)."""
    return list(
        authorizations(account_id).filter(policy_id=policy_id).order_by("-created_at")[:limit]
    )


def gateways(account: Account | uuid.UUID) -> QuerySet[Gateway]:
    return Gateway.objects.for_account(account).select_related("site").order_by("name")


def devices(account: Account | uuid.UUID) -> QuerySet[ClientDevice]:
    return ClientDevice.objects.for_account(account).select_related("actor").order_by("name")


def static_devices(account: Account | uuid.UUID) -> QuerySet[ClientDevice]:
    return devices(account).filter(kind=ClientDevice.Kind.STATIC)


def device_assignments(device: ClientDevice) -> QuerySet[StaticDeviceAssignment]:
    return (
        StaticDeviceAssignment.objects.for_account(device.account_id)
        .filter(device_id=device.pk)
        .select_related("gateway", "site")
        .order_by("site__name")
    )


def recent_static_activity(
    account: Account | uuid.UUID, limit: int = 10
) -> QuerySet[StaticDeviceAssignment]:
    """Static devices' assignments with a reported handshake, most recent first."""
    return (
        StaticDeviceAssignment.objects.for_account(account)
        .filter(last_handshake_at__isnull=False)
        .select_related("device", "device__actor", "gateway", "site")
        .order_by("-last_handshake_at", "pk")[:limit]
    )


def affected_static_devices(
    account_id: uuid.UUID,
    *,
    actor_ids: Iterable[uuid.UUID] = (),
    group_ids: Iterable[uuid.UUID] = (),
    device_ids: Iterable[uuid.UUID] = (),
    everything: bool = False,
) -> list[uuid.UUID]:
    """Ids of the static devices whose access may have changed."""
    qs = ClientDevice.objects.for_account(account_id).filter(kind=ClientDevice.Kind.STATIC)
    if not everything:
        actors = set(actor_ids)
        groups = set(group_ids)
        if groups:
            actors |= set(
                Membership.objects.for_account(account_id)
                .filter(group_id__in=groups)
                .values_list("actor_id", flat=True)
            )
        qs = qs.filter(Q(actor_id__in=actors) | Q(pk__in=set(device_ids)))
    return list(qs.order_by("pk").values_list("pk", flat=True))


def authorizations_by_gateway(
    account_id: uuid.UUID, authorization_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Which gateway holds which of these authorizations (revoked or not)."""
    out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    rows = (
        Authorization.objects.for_account(account_id)
        .filter(pk__in=set(authorization_ids), gateway_id__isnull=False)
        .values_list("gateway_id", "pk")
    )
    for gateway_id, auth_id in rows:
        out[gateway_id].append(auth_id)
    return dict(out)


def authorizations_by_device(
    account_id: uuid.UUID, authorization_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Which client device holds which of these authorizations."""
    out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    rows = (
        Authorization.objects.for_account(account_id)
        .filter(pk__in=set(authorization_ids), device_id__isnull=False)
        .values_list("device_id", "pk")
    )
    for device_id, auth_id in rows:
        out[device_id].append(auth_id)
    return dict(out)


def gateway_load(site_id: uuid.UUID, account_id: uuid.UUID) -> QuerySet[Gateway]:
    return (
        Gateway.objects.for_account(account_id)
        .filter(site_id=site_id, online=True)
        .annotate(load=Count("static_assignments"))
    )


# --- preshared keys --------------------------------------------------------------------------


def key_secret(account_id: uuid.UUID) -> bytes:
    row = AccountKeySecret.objects.for_account(account_id).only("secret").first()
    if row is None:
        raise LookupError("the account has no key secret yet (services.ensure_key_secret)")
    return bytes.fromhex(row.secret)


def derive_preshared_key(secret: bytes, device_id: uuid.UUID, gateway_id: uuid.UUID) -> str:
    """WireGuard preshared key for one (device, gateway) pair.

    HMAC-SHA256 keyed by the account's random 256-bit secret (stored only in the portal database),
    over a domain tag and both ids: different for every pair, stable across reconnects (configs
    stay valid), and not computable from anything a client or gateway sees.
    """
    mac = hmac.new(secret, b"fz-psk-v1\x00" + device_id.bytes + gateway_id.bytes, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


# --- wire views ------------------------------------------------------------------------------


def resource_to_wire(resource: Resource) -> protocol.Resource:
    filters = tuple(
        protocol.Filter(
            protocol=f["protocol"],
            ports=tuple(protocol.PortRange.parse(str(p)) for p in f.get("ports") or ()),
        )
        for f in resource.filters or ()
    )
    return protocol.Resource(
        id=resource.pk,
        type=resource.kind,  # type: ignore[arg-type]
        address=resource.address if resource.kind != Resource.Kind.INTERNET else "",
        filters=filters,
    )


def assignment_resources(
    account_id: uuid.UUID, assignments: Iterable[StaticDeviceAssignment]
) -> dict[uuid.UUID, list[Resource]]:
    """The live Resource rows of each assignment (by assignment id), in name order."""
    assignments = list(assignments)
    wanted = {uuid.UUID(r) for a in assignments for r in a.resource_ids}
    by_id = {
        r.pk: r
        for r in Resource.objects.for_account(account_id).filter(
            pk__in=wanted, kind__in=STATIC_KINDS
        )
    }
    out: dict[uuid.UUID, list[Resource]] = {}
    for a in assignments:
        rows = [by_id[uuid.UUID(r)] for r in a.resource_ids if uuid.UUID(r) in by_id]
        out[a.pk] = sorted(
            (r for r in rows if r.site_id == a.site_id), key=lambda r: (r.name, str(r.pk))
        )
    return out


def static_peer(
    device: ClientDevice, gateway_id: uuid.UUID, resources: Iterable[Resource], secret: bytes
) -> protocol.StaticPeer:
    return protocol.StaticPeer(
        public_key=device.public_key,
        preshared_key=derive_preshared_key(secret, device.pk, gateway_id),
        ipv4=IPv4Address(device.ipv4),
        ipv6=IPv6Address(device.ipv6),
        resources=tuple(resource_to_wire(r) for r in resources),
    )


def static_peers_of_gateway(gateway: Gateway, secret: bytes) -> list[protocol.StaticPeer]:
    assignments = list(
        _static_assignments(gateway.account_id, gateway.pk)
        .select_related("device")
        .order_by("device_id")
    )
    if not assignments:
        return []
    resources = assignment_resources(gateway.account_id, assignments)
    return [static_peer(a.device, gateway.pk, resources[a.pk], secret) for a in assignments]


def authorization_to_wire(
    authorization: Authorization, secret: bytes
) -> protocol.Authorization | None:
    device, resource = authorization.device, authorization.resource
    if device is None or resource is None or authorization.gateway_id is None:
        return None
    return protocol.Authorization(
        id=authorization.pk,
        client_public_key=device.public_key,
        preshared_key=derive_preshared_key(secret, device.pk, authorization.gateway_id),
        client_ipv4=IPv4Address(device.ipv4),
        client_ipv6=IPv6Address(device.ipv6),
        resource=resource_to_wire(resource),
        expires_at=authorization.expires_at,
    )


def _active_authorizations(
    account_id: uuid.UUID, gateway_id: uuid.UUID, now: datetime
) -> QuerySet[Authorization]:
    return Authorization.objects.for_account(account_id).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        gateway_id=gateway_id,
        revoked_at__isnull=True,
        device__isnull=False,
        resource__isnull=False,
    )


def _static_assignments(
    account_id: uuid.UUID, gateway_id: uuid.UUID
) -> QuerySet[StaticDeviceAssignment]:
    return StaticDeviceAssignment.objects.for_account(account_id).filter(
        gateway_id=gateway_id, device__disabled_at__isnull=True
    )


def init_message(gateway: Gateway, now: datetime) -> protocol.Init:
    """The complete desired state of ``gateway`` (what ``init`` carries)."""
    secret = key_secret(gateway.account_id)
    active = (
        _active_authorizations(gateway.account_id, gateway.pk, now)
        .select_related("device", "resource")
        .order_by("created_at")
    )
    wire = [authorization_to_wire(a, secret) for a in active]
    return protocol.Init(
        gateway_id=gateway.pk,
        ipv4=IPv4Address(gateway.ipv4),
        ipv6=IPv6Address(gateway.ipv6),
        static_peers=tuple(static_peers_of_gateway(gateway, secret)),
        authorizations=tuple(a for a in wire if a is not None),
        relays=(),
        heartbeat_interval_s=float(settings.FZ_HEARTBEAT_INTERVAL_S),
    )


def gateway_init(
    account_id: uuid.UUID, gateway_id: uuid.UUID, now: datetime
) -> protocol.Init | None:
    """``init`` for a gateway of this account (a resync), or None if the gateway is gone."""
    gateway = Gateway.objects.for_account(account_id).filter(pk=gateway_id).first()
    return None if gateway is None else init_message(gateway, now)


@dataclass
class DigestCache:
    """One connection's last digest and the fingerprint of the rows it was computed from."""

    fingerprint: str = ""
    digest: str | None = None
    computed: int = 0  # how often the digest had to be computed (tests, logs)


@functools.cache
def _fingerprint_sql() -> str:
    """One statement, four scalar subqueries: MD5 over the text of every row and column
    ``init_message`` reads (tables named from the models, so a moved model keeps working)."""
    a, d, r = Authorization._meta.db_table, ClientDevice._meta.db_table, Resource._meta.db_table
    s, k = StaticDeviceAssignment._meta.db_table, AccountKeySecret._meta.db_table
    g = Gateway._meta.db_table
    kinds = ", ".join(f"'{kind}'" for kind in sorted(STATIC_KINDS))

    def agg(*columns: str, order: str) -> str:
        fields = ", ".join(f"coalesce(({c})::text, '~')" for c in columns)
        return f"md5(string_agg(concat_ws('|', {fields}), ';' ORDER BY {order}))"

    return f"""
SELECT
  EXISTS (SELECT 1 FROM "{g}" g WHERE g.id = %(gw)s AND g.account_id = %(acc)s),
  (SELECT {agg("a.id", "a.expires_at", "d.id", "d.public_key", "d.ipv4", "d.ipv6", "r.id",
               "r.kind", "r.address", "r.filters", order="a.id")}
     FROM "{a}" a JOIN "{d}" d ON d.id = a.device_id JOIN "{r}" r ON r.id = a.resource_id
    WHERE a.account_id = %(acc)s AND a.gateway_id = %(gw)s AND a.revoked_at IS NULL
      AND (a.expires_at IS NULL OR a.expires_at > %(now)s)),
  (SELECT {agg("x.id", "x.site_id", "x.resource_ids", "d.id", "d.public_key", "d.ipv4",
               "d.ipv6", order="x.id")}
     FROM "{s}" x JOIN "{d}" d ON d.id = x.device_id
    WHERE x.account_id = %(acc)s AND x.gateway_id = %(gw)s AND d.disabled_at IS NULL),
  (SELECT {agg("r.id", "r.site_id", "r.kind", "r.address", "r.filters", order="r.id")}
     FROM "{r}" r WHERE r.account_id = %(acc)s AND r.kind IN ({kinds})
      AND r.id::text IN (SELECT jsonb_array_elements_text(x.resource_ids) FROM "{s}" x
                          WHERE x.account_id = %(acc)s AND x.gateway_id = %(gw)s)),
  (SELECT {agg("k.id", "k.secret", order="k.id")} FROM "{k}" k WHERE k.account_id = %(acc)s)
"""  # fmt: skip


def state_fingerprint(account_id: uuid.UUID, gateway_id: uuid.UUID, now: datetime) -> str | None:
    """A cheap fingerprint of every row and column ``init_message`` reads for this gateway (one
    statement aggregated by PostgreSQL, no model instances), or None if the gateway is gone.
    Equal fingerprints mean an equal ``init`` content: it covers the gateway's active flows
    with their devices and resources, its static assignments with their devices, every
    resource those assignments list, and the key secret. An idle gateway costs four index
    lookups."""
    with connection.cursor() as cursor:
        cursor.execute(_fingerprint_sql(), {"gw": gateway_id, "acc": account_id, "now": now})
        row = cursor.fetchone()
    if row is None or not row[0]:
        return None
    return "/".join(str(part or "") for part in row[1:])


def state_digest(
    account_id: uuid.UUID,
    gateway_id: uuid.UUID,
    now: datetime,
    cache: DigestCache | None = None,
) -> str | None:
    """`protocol.state_digest` of what the database says the gateway should hold (the content
    of its ``init``), or None if the gateway is gone. Sent with every ``heartbeat_reply``.

    With ``cache`` (one per connection), the digest is recomputed only when
    `state_fingerprint` changed: a few aggregate queries per heartbeat instead of building
    the whole ``init`` (benchmarks/heartbeat_digest.py)."""
    # The fingerprint is read before the init: a change committed in between pairs an old
    # fingerprint with the new digest, which the next heartbeat's fingerprint replaces.
    fingerprint = ""
    if connection.vendor != "postgresql":  # the fingerprint is PostgreSQL SQL; embedded: no cache
        cache = None
    if cache is not None:
        found = state_fingerprint(account_id, gateway_id, now)
        if found is None:
            return None
        if cache.digest is not None and cache.fingerprint == found:
            return cache.digest
        fingerprint = found
    init = gateway_init(account_id, gateway_id, now)
    if init is None:
        return None
    digest = protocol.state_digest(init.static_peers, init.authorizations)
    if cache is not None:
        cache.fingerprint, cache.digest = fingerprint, digest
        cache.computed += 1
    return digest
