"""Writes for sites, tunnel addresses, gateways and client devices."""

from __future__ import annotations

import base64
import ipaddress
import logging
import random
import secrets
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, Membership, Token
from agents import protocol
from firezone_site.errors import (
    NotFound,
    ServiceError,
    ValidationFailed,
    clean_name,
    integrity_errors_as_validation,
)
from firezone_site.events import AccessChanged, publish
from gateways import configs, presence, queries
from gateways.models import (
    AccountKeySecret,
    Authorization,
    ClientDevice,
    Gateway,
    GatewayToken,
    StaticDeviceAssignment,
    TunnelAddress,
)
from policies import evaluation
from policies import queries as policy_queries
from policies.models import Policy, Resource, Site

log = logging.getLogger(__name__)

TUNNEL_V4 = ipaddress.IPv4Network(settings.FZ_TUNNEL_IPV4)
TUNNEL_V6 = ipaddress.IPv6Network(settings.FZ_TUNNEL_IPV6)
# Slot 0 is the network address; the last slot would be the IPv4 broadcast address.
FIRST_SLOT = 1
LAST_SLOT = TUNNEL_V4.num_addresses - 2
MAX_ALLOCATION_ATTEMPTS = 64

_CONSTRAINTS = {"site_name_unique": ("name", "A site with this name already exists.")}


class PoolExhausted(ServiceError):
    pass


@dataclass(frozen=True)
class Addresses:
    slot: TunnelAddress
    ipv4: str
    ipv6: str


def slot_addresses(slot: int) -> tuple[str, str]:
    return str(TUNNEL_V4.network_address + slot), str(TUNNEL_V6.network_address + slot)


def allocate_tunnel_address(
    account: Account | uuid.UUID, *, rng: secrets.SystemRandom | None = None
) -> Addresses:
    """Allocate a free (IPv4, IPv6) pair for the account.

    A random slot is tried in a savepoint; the (account, slot) unique constraint decides races, so
    concurrent allocations on PostgreSQL never hand out the same address. Must run inside the
    caller's transaction (the slot belongs to the gateway/device created with it).
    """
    account_id = account.pk if isinstance(account, Account) else account
    rand = rng or secrets.SystemRandom()
    for _ in range(MAX_ALLOCATION_ATTEMPTS):
        slot = rand.randint(FIRST_SLOT, LAST_SLOT)
        try:
            with transaction.atomic():
                row = TunnelAddress.objects.create(account_id=account_id, slot=slot)
        except IntegrityError:
            continue
        ipv4, ipv6 = slot_addresses(slot)
        return Addresses(slot=row, ipv4=ipv4, ipv6=ipv6)
    raise PoolExhausted("No free tunnel address found; the account's address pool is full.")


# --- sites -------------------------------------------------------------------------------------


@transaction.atomic
def create_site(account: Account, *, name: str) -> Site:
    name = clean_name(name)
    if Site.objects.for_account(account).filter(name=name).exists():
        raise ValidationFailed({"name": "A site with this name already exists."})
    with integrity_errors_as_validation(_CONSTRAINTS):
        return Site.objects.create(account=account, name=name)


@transaction.atomic
def rename_site(site: Site, *, name: str) -> Site:
    name = clean_name(name)
    taken = Site.objects.for_account(site.account_id).filter(name=name).exclude(pk=site.pk)
    if taken.exists():
        raise ValidationFailed({"name": "A site with this name already exists."})
    site.name = name
    with integrity_errors_as_validation(_CONSTRAINTS):
        site.save(update_fields=["name"])
    return site


@transaction.atomic
def delete_site(site: Site) -> None:
    current = Site.objects.for_account(site.account_id).filter(pk=site.pk).first()
    if current is None:
        raise NotFound("No such site.")
    if current.resources.exists():
        raise ValidationFailed({"__all__": "Move or delete the site's resources first."})
    slots = list(current.gateways.values_list("address_id", flat=True))
    current.gateways.all().delete()
    TunnelAddress.objects.filter(pk__in=slots).delete()
    # The site's connected gateways are told at once (after commit), not at their next heartbeat.
    presence.send_on_commit(
        [
            presence.close(
                presence.site_group(current.pk),
                protocol.CloseCode.GATEWAY_REMOVED,
                "the gateway's site was deleted",
            )
        ]
    )
    # The site's gateway tokens end with it (their bindings would cascade, the tokens would not).
    gateway_tokens(current).delete()
    current.delete()
    publish(AccessChanged(account_id=site.account_id, reason="site_deleted"))


@transaction.atomic
def create_site_with_token(
    account: Account, *, name: str
) -> tuple[Site, account_services.IssuedToken]:
    """A new site and its first gateway token, together or not at all."""
    site = create_site(account, name=name)
    return site, issue_gateway_token(site)


@transaction.atomic
def issue_gateway_token(site: Site, *, name: str = "") -> account_services.IssuedToken:
    """A gateway token and its binding to ``site``, together or not at all."""
    issued = account_services.create_token(
        site.account, kind=Token.Kind.GATEWAY, name=name or f"{site.name} gateways"
    )
    GatewayToken.objects.create(account_id=site.account_id, token=issued.token, site=site)
    return issued


@transaction.atomic
def rotate_gateway_token(
    token: Token, *, now: datetime | None = None
) -> account_services.IssuedToken:
    """Issue a successor bound to the same site; the old one works for 4 h or until the new is
    used (``accounts.services.replace_token``)."""
    binding = GatewayToken.objects.for_account(token.account_id).filter(token_id=token.pk).first()
    if binding is None:
        raise ValidationFailed({"kind": "Only gateway tokens bound to a site rotate."})
    issued = account_services.replace_token(token, now=now)
    GatewayToken.objects.create(
        account_id=binding.account_id, token=issued.token, site_id=binding.site_id
    )
    return issued


def gateway_tokens(site: Site) -> QuerySet[Token]:
    """The gateway tokens bound to ``site`` (any state)."""
    return Token.objects.for_account(site.account_id).filter(
        kind=Token.Kind.GATEWAY, gateway_binding__site=site
    )


# --- preshared key secret ----------------------------------------------------------------------


def ensure_key_secret(account_id: uuid.UUID) -> None:
    """Create the account's preshared-key secret once (a race is settled by the constraint)."""
    if AccountKeySecret.objects.for_account(account_id).exists():
        return
    try:
        with transaction.atomic():
            AccountKeySecret.objects.create(account_id=account_id, secret=secrets.token_hex(32))
    except IntegrityError:
        pass


# --- gateway connections and presence ------------------------------------------------------------


class GatewayRefused(ServiceError):
    """A gateway connection the portal refuses; ``code`` is the websocket close code."""

    def __init__(self, code: protocol.CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class GatewayParams:
    """The validated connect parameters (see consumers.parse_connect_params)."""

    external_id: str
    name: str
    public_key: str
    version: str
    endpoint: str = ""


def default_endpoint(remote_ip: str | None) -> str:
    return configs.gateway_endpoint("", remote_ip, settings.FZ_GATEWAY_PORT)


@transaction.atomic
def connect_gateway(
    *,
    secret: str,
    params: GatewayParams,
    remote_ip: str | None,
    channel_name: str,
    now: datetime | None = None,
) -> Gateway:
    """Authenticate a gateway socket and make it the gateway's current connection.

    Creates the gateway (with tunnel addresses) on its first connect in the token's site. The
    newest connection wins: an older socket of the same gateway is told to close (4004) after
    the commit. Static devices of the site without a usable gateway move to this one.
    """
    now = now or timezone.now()
    token = account_services.use_token(secret, kind=Token.Kind.GATEWAY, remote_ip=remote_ip)
    if token is None:
        raise GatewayRefused(
            protocol.CloseCode.UNAUTHORIZED, "invalid, expired or revoked gateway token"
        )
    account = token.account
    if account.disabled_at is not None:
        raise GatewayRefused(protocol.CloseCode.ACCOUNT_DISABLED, "the account is disabled")
    binding = GatewayToken.objects.for_account(account).filter(token_id=token.pk).first()
    if binding is None:  # issue_gateway_token binds every gateway token it creates
        raise GatewayRefused(protocol.CloseCode.UNAUTHORIZED, "the gateway token has no site")
    site_id = binding.site_id
    ensure_key_secret(account.pk)
    gateway = (
        Gateway.objects.select_for_update()
        .filter(account_id=account.pk, site_id=site_id, external_id=params.external_id)
        .first()
    )
    key_taken = Gateway.objects.for_account(account).filter(public_key=params.public_key)
    if gateway is not None:
        key_taken = key_taken.exclude(pk=gateway.pk)
    if (
        key_taken.exists()
        or ClientDevice.objects.for_account(account).filter(public_key=params.public_key).exists()
    ):
        raise GatewayRefused(
            protocol.CloseCode.BAD_PARAMETERS, "public_key: another gateway or device uses this key"
        )
    endpoint = params.endpoint or default_endpoint(remote_ip)
    envelopes: list[presence.Envelope] = []
    peer_visible_change = False
    if gateway is None:
        _check_gateway_cap(account.pk, site_id)
        addresses = allocate_tunnel_address(account.pk)
        gateway = Gateway(
            account=account,
            site_id=site_id,
            external_id=params.external_id,
            address=addresses.slot,
            ipv4=addresses.ipv4,
            ipv6=addresses.ipv6,
        )
    else:
        if gateway.online and gateway.channel_name and gateway.channel_name != channel_name:
            envelopes.append(
                presence.to_channel(
                    gateway.channel_name,
                    protocol.CloseCode.REPLACED,
                    "another connection for this gateway took over",
                )
            )
        peer_visible_change = (
            gateway.public_key != params.public_key
            or (not gateway.endpoint_override and gateway.last_seen_endpoint != endpoint)
            or gateway.name != params.name
        )
    gateway.name = params.name
    gateway.public_key = params.public_key
    gateway.online = True
    gateway.channel_name = channel_name
    gateway.last_seen_at = now
    gateway.last_seen_remote_ip = remote_ip
    gateway.last_seen_version = params.version
    gateway.last_seen_endpoint = endpoint
    gateway.endpoint_guessed = not params.endpoint
    gateway.last_token = token
    with integrity_errors_as_validation({}):
        try:
            gateway.save()
        except ValidationFailed as exc:
            raise GatewayRefused(protocol.CloseCode.BAD_PARAMETERS, str(exc)) from exc
    adopted = _adopt_static_devices(gateway)
    # A peer-visible change re-renders every device of the gateway, the adopted ones included.
    for device_id in _devices_of_gateway(gateway.pk) if peer_visible_change else adopted:
        _refresh_config_version(device_id)
    presence.send_on_commit(envelopes)
    return gateway


def _check_gateway_cap(account_id: uuid.UUID, site_id: uuid.UUID) -> None:
    """Refuse a new gateway when the site already has FZ_MAX_GATEWAYS_PER_SITE of them.

    The site row is locked first, so concurrent first connects of different external ids in one
    site are counted one after the other and cannot both take the last place.
    """
    Site.objects.for_account(account_id).select_for_update().filter(pk=site_id).first()
    limit = int(settings.FZ_MAX_GATEWAYS_PER_SITE)
    if Gateway.objects.for_account(account_id).filter(site_id=site_id).count() >= limit:
        raise GatewayRefused(
            protocol.CloseCode.TOO_MANY_GATEWAYS,
            f"the site already has {limit} gateways, the maximum (FZ_MAX_GATEWAYS_PER_SITE); "
            "reuse an existing gateway's external id, or remove offline gateways",
        )


def _devices_of_gateway(gateway_id: uuid.UUID) -> list[uuid.UUID]:
    return list(
        StaticDeviceAssignment.objects.filter(gateway_id=gateway_id).values_list(
            "device_id", flat=True
        )
    )


def _pick_gateway(
    account_id: uuid.UUID, site_id: uuid.UUID, exclude: Iterable[uuid.UUID] = ()
) -> Gateway | None:
    """Least loaded online gateway of the site (fewest static devices); random among equals."""
    candidates = list(queries.gateway_load(site_id, account_id).exclude(pk__in=list(exclude)))
    if not candidates:
        return None
    least = min(c.load for c in candidates)  # type: ignore[attr-defined]
    return random.choice([c for c in candidates if c.load == least])  # type: ignore[attr-defined]


def _adopt_static_devices(gateway: Gateway) -> list[uuid.UUID]:
    """Give ``gateway`` the site's static devices that have no online gateway (init sends them);
    returns their ids (their configs need re-rendering)."""
    orphans = (
        StaticDeviceAssignment.objects.select_for_update(of=("self",))
        .filter(account_id=gateway.account_id, site_id=gateway.site_id)
        .filter(Q(gateway__isnull=True) | Q(gateway__online=False))
        .exclude(gateway_id=gateway.pk)
    )
    moved = []
    for assignment in orphans:
        assignment.gateway = gateway
        assignment.save(update_fields=["gateway"])
        moved.append(assignment.device_id)
    return moved


@transaction.atomic
def set_gateway_endpoint(gateway: Gateway, *, endpoint: str) -> Gateway:
    """Set (or with "" clear) the admin's public endpoint of a gateway. It wins over the agent's
    ``--endpoint`` and the portal's guess; static devices of the gateway get new configs."""
    current = (
        Gateway.objects.select_for_update()
        .filter(pk=gateway.pk, account_id=gateway.account_id)
        .first()
    )
    if current is None:
        raise NotFound("No such gateway.")
    endpoint = endpoint.strip()
    if endpoint and not configs.valid_endpoint(endpoint):
        raise ValidationFailed({"endpoint": "Expected host:port, ipv4:port or [ipv6]:port."})
    if current.endpoint_override != endpoint:
        current.endpoint_override = endpoint
        current.save(update_fields=["endpoint_override"])
        for device_id in _devices_of_gateway(current.pk):
            _refresh_config_version(device_id)
    return current


class HeartbeatResult:
    OK = "ok"
    REPLACED = "replaced"
    REMOVED = "removed"


def gateway_heartbeat(gateway_id: uuid.UUID, channel_name: str, now: datetime | None = None) -> str:
    """Refresh presence; says whether this connection still holds a (still existing) gateway."""
    now = now or timezone.now()
    rows = Gateway.objects.filter(pk=gateway_id, channel_name=channel_name).update(
        last_seen_at=now, online=True
    )
    if rows:
        return HeartbeatResult.OK
    if Gateway.objects.filter(pk=gateway_id).exists():
        return HeartbeatResult.REPLACED
    return HeartbeatResult.REMOVED


@transaction.atomic
def disconnect_gateway(
    gateway_id: uuid.UUID, channel_name: str, now: datetime | None = None
) -> bool:
    """Mark the gateway offline if ``channel_name`` still holds it, and move its static devices
    to another online gateway of the site (they get new config versions). False if a newer
    connection already took over (then nothing changes)."""
    now = now or timezone.now()
    rows = Gateway.objects.filter(pk=gateway_id, channel_name=channel_name).update(
        online=False, channel_name="", last_seen_at=now
    )
    if not rows:
        return False
    gateway = Gateway.objects.get(pk=gateway_id)
    pushes: list[tuple[uuid.UUID, protocol.PortalMessage]] = []
    assignments = (
        StaticDeviceAssignment.objects.select_for_update(of=("self",))
        .filter(gateway_id=gateway_id)
        .select_related("device")
    )
    secret: bytes | None = None
    for assignment in assignments:
        target = _pick_gateway(gateway.account_id, gateway.site_id, exclude=[gateway_id])
        if target is None:
            continue  # stays here: the config keeps pointing at a gateway that may come back
        assignment.gateway = target
        assignment.save(update_fields=["gateway"])
        secret = secret or queries.key_secret(gateway.account_id)
        resources = queries.assignment_resources(gateway.account_id, [assignment])
        pushes.append(
            (
                target.pk,
                protocol.AddStaticPeer(
                    queries.static_peer(
                        assignment.device, target.pk, resources[assignment.pk], secret
                    )
                ),
            )
        )
        _refresh_config_version(assignment.device_id)
    presence.send_on_commit(presence.to_gateways(pushes))
    return True


def _endpoint_ip(endpoint: str | None) -> str | None:
    if not endpoint:
        return None
    host = endpoint.rpartition(":")[0].strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


@transaction.atomic
def record_peer_stats(
    gateway_id: uuid.UUID, peers: Iterable[protocol.PeerStat], now: datetime | None = None
) -> int:
    """Store a gateway's ``peer_stats`` report on the assignments of the static devices it
    serves, and move the devices' "last seen" to their last handshake. Keys of devices the
    gateway does not serve (another gateway's, another account's, deleted) are ignored.
    Returns how many assignments were updated."""
    now = now or timezone.now()
    by_key = {s.public_key: s for s in peers}
    gateway = Gateway.objects.filter(pk=gateway_id).only("account_id").first()
    if gateway is None or not by_key:
        return 0
    rows = list(
        StaticDeviceAssignment.objects.for_account(gateway.account_id)
        .select_for_update(of=("self",))
        .filter(gateway_id=gateway_id, device__public_key__in=list(by_key))
        .select_related("device")
    )
    for a in rows:
        stat = by_key[a.device.public_key]
        a.last_handshake_at = stat.last_handshake_at
        a.rx_bytes, a.tx_bytes = stat.rx_bytes, stat.tx_bytes
        a.peer_endpoint = (stat.endpoint or "")[:100]
        a.stats_at = now
        if stat.last_handshake_at is not None:
            ClientDevice.objects.filter(pk=a.device_id).filter(
                Q(last_seen_at__isnull=True) | Q(last_seen_at__lt=stat.last_handshake_at)
            ).update(
                last_seen_at=stat.last_handshake_at,
                last_seen_remote_ip=_endpoint_ip(stat.endpoint),
            )
    StaticDeviceAssignment.objects.bulk_update(
        rows, ["last_handshake_at", "rx_bytes", "tx_bytes", "peer_endpoint", "stats_at"]
    )
    return len(rows)


def sweep_stale_gateways(now: datetime | None = None) -> int:
    """Mark gateways offline whose portal process died without closing them (no heartbeat
    recorded for three heartbeat timeouts)."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=3 * settings.FZ_HEARTBEAT_TIMEOUT_S)
    stale = Gateway.objects.filter(online=True).filter(
        Q(last_seen_at__lt=cutoff) | Q(last_seen_at__isnull=True)
    )
    count = 0
    for gateway_id, channel_name in stale.values_list("pk", "channel_name"):
        count += disconnect_gateway(gateway_id, channel_name, now=now)
    return count


def remove_offline_gateways(now: datetime | None = None) -> int:
    """Delete gateways offline for longer than FZ_GATEWAY_RETENTION_DAYS (each in its own
    transaction, see `remove_offline_gateway`); returns how many were removed."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.FZ_GATEWAY_RETENTION_DAYS)
    stale = Gateway.objects.filter(online=False, last_seen_at__lt=cutoff)
    return sum(
        remove_offline_gateway(account_id, gateway_id, cutoff, now=now)
        for account_id, gateway_id in stale.values_list("account_id", "pk")
    )


@transaction.atomic
def remove_offline_gateway(
    account_id: uuid.UUID, gateway_id: uuid.UUID, cutoff: datetime, *, now: datetime | None = None
) -> bool:
    """Delete one gateway if it is still offline and last seen before ``cutoff``, releasing its
    tunnel addresses. The row is locked and re-checked, so a gateway that reconnected meanwhile
    stays (and a connect that waited on the lock creates the gateway anew). Its open
    authorizations are revoked; its static devices move to another online gateway of the site
    (after commit, through the access-change handler)."""
    now = now or timezone.now()
    gateway = (
        Gateway.objects.for_account(account_id)
        .select_for_update()
        .filter(pk=gateway_id, online=False, last_seen_at__lt=cutoff)
        .first()
    )
    if gateway is None:
        return False
    device_ids = frozenset(_devices_of_gateway(gateway.pk))
    Authorization.objects.for_account(account_id).filter(
        gateway_id=gateway.pk, revoked_at__isnull=True
    ).update(revoked_at=now, revoke_reason="gateway_removed")
    address_id = gateway.address_id
    gateway.delete()  # static assignments keep their device, with no gateway until re-synced
    TunnelAddress.objects.filter(pk=address_id).delete()
    # A socket that still holds the gateway (a portal process that died) is told, as on delete.
    presence.send_on_commit(
        [
            presence.close(
                presence.gateway_group(gateway_id),
                protocol.CloseCode.GATEWAY_REMOVED,
                "the gateway was removed after being offline too long",
            )
        ]
    )
    if device_ids:
        publish(
            AccessChanged(
                account_id=account_id,
                reason="gateway_removed",
                narrowed=False,
                device_ids=device_ids,
            )
        )
    log.info("removed gateway %s (offline since %s)", gateway_id, gateway.last_seen_at)
    return True


@transaction.atomic
def delete_gateway(gateway: Gateway) -> None:
    """Delete a gateway now (online or not): its flows are revoked, its socket is closed after
    commit (4004 gateway_removed), its tunnel addresses are freed and its static devices move to
    another gateway of the site. Its token still lets it reconnect as a new gateway: revoke the
    token to keep it out."""
    current = Gateway.objects.for_account(gateway.account_id).select_for_update().get(pk=gateway.pk)
    device_ids = frozenset(_devices_of_gateway(current.pk))
    revoked = revoke_authorizations(
        current.account_id, reason="gateway_deleted", gateway_ids={current.pk}
    )
    address_id = current.address_id
    current.delete()  # static assignments keep their device, with no gateway until re-synced
    TunnelAddress.objects.filter(pk=address_id).delete()
    presence.send_on_commit(
        [
            presence.close(
                presence.gateway_group(gateway.pk),
                protocol.CloseCode.GATEWAY_REMOVED,
                "the gateway was deleted",
            )
        ]
    )
    publish(
        AccessChanged(
            account_id=current.account_id,
            reason="gateway_deleted",
            device_ids=device_ids,
            authorization_ids=revoked,
        )
    )


# --- static devices ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredDevice:
    device: ClientDevice
    private_key: str | None  # only when the portal generated the key pair; never stored
    config: configs.DeviceConfig  # rendered with private_key when there is one


def generate_key_pair() -> tuple[str, str]:
    """(private, public) X25519 keys, base64 like wg genkey / wg pubkey."""
    private = X25519PrivateKey.generate()
    raw_private = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    raw_public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw_private).decode(), base64.b64encode(raw_public).decode()


def _check_public_key(account_id: uuid.UUID, public_key: str) -> str:
    public_key = (public_key or "").strip()
    if not protocol.valid_public_key(public_key):
        raise ValidationFailed({"public_key": "Enter a WireGuard public key (base64, 44 chars)."})
    if (
        ClientDevice.objects.for_account(account_id).filter(public_key=public_key).exists()
        or Gateway.objects.for_account(account_id).filter(public_key=public_key).exists()
    ):
        raise ValidationFailed({"public_key": "This key is already in use."})
    return public_key


_DEVICE_CONSTRAINTS = {
    "device_key_unique": ("public_key", "This key is already in use."),
    "static_device_name_unique": ("name", "You already have a device with this name."),
}


@transaction.atomic
def register_static_device(
    actor: Actor, *, name: str, public_key: str | None = None
) -> RegisteredDevice:
    """A standard WireGuard device of ``actor``: addresses, gateways per site, config.

    Without ``public_key`` the portal generates the key pair; the private key is returned (and
    rendered into ``config``) once and never stored.
    """
    actor = Actor.objects.for_account(actor.account_id).get(pk=actor.pk)
    name = clean_name(name)
    if (
        ClientDevice.objects.for_account(actor.account_id)
        .filter(actor=actor, kind=ClientDevice.Kind.STATIC, name=name)
        .exists()
    ):
        raise ValidationFailed({"name": "You already have a device with this name."})
    private_key: str | None = None
    if public_key is None:
        private_key, public_key = generate_key_pair()
    public_key = _check_public_key(actor.account_id, public_key)
    ensure_key_secret(actor.account_id)
    addresses = allocate_tunnel_address(actor.account_id)
    with integrity_errors_as_validation(_DEVICE_CONSTRAINTS):
        device = ClientDevice.objects.create(
            account_id=actor.account_id,
            actor=actor,
            kind=ClientDevice.Kind.STATIC,
            external_id=f"static:{uuid.uuid4()}",
            name=name,
            public_key=public_key,
            address=addresses.slot,
            ipv4=addresses.ipv4,
            ipv6=addresses.ipv6,
            verified_at=timezone.now(),
        )
    _sync_device(device)
    return RegisteredDevice(
        device=device,
        private_key=private_key,
        config=configs.device_config(device, private_key=private_key),
    )


def _locked_static_device(device: ClientDevice) -> ClientDevice:
    current = (
        ClientDevice.objects.select_for_update()
        .filter(pk=device.pk, account_id=device.account_id, kind=ClientDevice.Kind.STATIC)
        .first()
    )
    if current is None:
        raise NotFound("No such device.")
    return current


def revoke_authorizations(
    account_id: uuid.UUID,
    *,
    reason: str,
    resource_ids: Iterable[uuid.UUID] | None = None,
    policy_ids: Iterable[uuid.UUID] | None = None,
    actor_ids: Iterable[uuid.UUID] | None = None,
    device_ids: Iterable[uuid.UUID] | None = None,
    gateway_ids: Iterable[uuid.UUID] | None = None,
) -> frozenset[uuid.UUID]:
    """Revoke the account's active authorizations matching every given filter.

    The one place flows end (the rows stay as the audit trail); returns the revoked ids so the
    caller's event can tell the gateways. Runs in the caller's transaction. Provides
    ``accounts.hooks.revoke_flows`` (policies and accounts end flows through it).
    """
    qs = Authorization.objects.for_account(account_id).filter(revoked_at__isnull=True)
    if resource_ids is not None:
        qs = qs.filter(resource_id__in=resource_ids)
    if policy_ids is not None:
        qs = qs.filter(policy_id__in=policy_ids)
    if actor_ids is not None:
        qs = qs.filter(actor_id__in=actor_ids)
    if device_ids is not None:
        qs = qs.filter(device_id__in=device_ids)
    if gateway_ids is not None:
        qs = qs.filter(gateway_id__in=gateway_ids)
    ids = frozenset(qs.select_for_update().values_list("pk", flat=True))
    if ids:
        Authorization.objects.filter(pk__in=ids).update(
            revoked_at=timezone.now(), revoke_reason=reason[:64]
        )
    return ids


@transaction.atomic
def reissue_static_device_key(
    device: ClientDevice, *, public_key: str | None = None
) -> RegisteredDevice:
    """Give a static device a new key pair (or the given public key) and return its complete
    config, once. For a device registered before its site had a gateway (its first config had no
    peer) and for a lost private key: the old key stops working at once, everywhere."""
    current = _locked_static_device(device)
    private_key: str | None = None
    if public_key is None:
        private_key, public_key = generate_key_pair()
    public_key = _check_public_key(current.account_id, public_key)
    old_key, current.public_key = current.public_key, public_key
    with integrity_errors_as_validation(_DEVICE_CONSTRAINTS):
        current.save(update_fields=["public_key"])
    assignments = list(
        StaticDeviceAssignment.objects.filter(device_id=current.pk, gateway__isnull=False)
    )
    # (A disabled device has no assignments: _sync_device removed them.)
    pushes: list[tuple[uuid.UUID, protocol.PortalMessage]] = []
    if assignments:
        secret = queries.key_secret(current.account_id)
        resources = queries.assignment_resources(current.account_id, assignments)
        for a in assignments:
            assert a.gateway_id is not None
            peer = queries.static_peer(current, a.gateway_id, resources[a.pk], secret)
            pushes.append((a.gateway_id, protocol.RemoveStaticPeer(old_key)))
            pushes.append((a.gateway_id, protocol.AddStaticPeer(peer)))
    # The old key's activity says nothing about the new one.
    StaticDeviceAssignment.objects.filter(device_id=current.pk).update(
        last_handshake_at=None, rx_bytes=0, tx_bytes=0, peer_endpoint="", stats_at=None
    )
    # The private key line is not part of the digest: bump the version by hand so "is my config
    # current?" still has a one-number answer.
    ClientDevice.objects.filter(pk=current.pk).update(config_version=current.config_version + 1)
    presence.send_on_commit(presence.to_gateways(pushes))
    return RegisteredDevice(
        device=current,
        private_key=private_key,
        config=configs.device_config(current, private_key=private_key),
    )


@transaction.atomic
def disable_device(device: ClientDevice) -> ClientDevice:
    """Disable a static device: gateways drop it at once; its config stops working."""
    current = _locked_static_device(device)
    if current.disabled_at is None:
        current.disabled_at = timezone.now()
        current.save(update_fields=["disabled_at"])
        _sync_device(current)
        revoked = revoke_authorizations(
            current.account_id, device_ids={current.pk}, reason="device_disabled"
        )
        publish(
            AccessChanged(
                account_id=current.account_id,
                reason="device_disabled",
                device_ids=frozenset({current.pk}),
                authorization_ids=revoked,
            )
        )
    return current


@transaction.atomic
def enable_device(device: ClientDevice) -> ClientDevice:
    current = _locked_static_device(device)
    if current.disabled_at is not None:
        current.disabled_at = None
        current.save(update_fields=["disabled_at"])
        _sync_device(current)
    return current


@transaction.atomic
def delete_device(device: ClientDevice) -> None:
    """Delete a static device, its gateway peers and its tunnel addresses."""
    current = _locked_static_device(device)
    pushes: list[tuple[uuid.UUID, protocol.PortalMessage]] = [
        (a.gateway_id, protocol.RemoveStaticPeer(current.public_key))
        for a in StaticDeviceAssignment.objects.filter(device_id=current.pk)
        if a.gateway_id is not None
    ]
    revoked = revoke_authorizations(
        current.account_id, device_ids={current.pk}, reason="device_deleted"
    )
    slot_id = current.address_id
    event = AccessChanged(
        account_id=current.account_id,
        reason="device_deleted",
        device_ids=frozenset({current.pk}),
        authorization_ids=revoked,
    )
    current.delete()
    TunnelAddress.objects.filter(pk=slot_id).delete()
    presence.send_on_commit(presence.to_gateways(pushes))
    publish(event)


def delete_actor_devices(actor: Actor) -> None:
    """Delete an actor's devices before the actor goes (provides
    ``accounts.hooks.delete_actor_devices``; runs in ``accounts.services.delete_actor``'s
    transaction). Static devices go through :func:`delete_device`, which tells their gateways;
    client-agent devices only have flows, which the caller revokes with the actor's."""
    dynamic_slots: list[uuid.UUID] = []
    for device in ClientDevice.objects.for_account(actor.account_id).filter(actor=actor):
        if device.kind == ClientDevice.Kind.STATIC:
            delete_device(device)
        else:
            dynamic_slots.append(device.address_id)
    ClientDevice.objects.for_account(actor.account_id).filter(
        actor=actor, kind=ClientDevice.Kind.DYNAMIC
    ).delete()
    TunnelAddress.objects.filter(pk__in=dynamic_slots).delete()


def static_context(now: datetime) -> evaluation.ClientContext:
    """What the portal knows about a static device: nothing about where it connects from."""
    return evaluation.ClientContext(
        remote_ip=None, country=None, auth_provider_id=None, verified=True, now=now
    )


def _desired_static_access(device: ClientDevice, now: datetime) -> dict[uuid.UUID, list[str]]:
    """site id -> sorted ids of the cidr/ip resources the device may reach there."""
    actor = device.actor
    if device.disabled_at is not None or actor.disabled_at is not None:
        return {}
    if Account.objects.filter(pk=device.account_id, disabled_at__isnull=False).exists():
        return {}
    desired: dict[uuid.UUID, list[str]] = defaultdict(list)
    for allowed in policy_queries.allowed_resources(actor, static_context(now)):
        resource = allowed.resource
        if resource.kind in queries.STATIC_KINDS:
            desired[resource.site_id].append(str(resource.pk))
    return {site: sorted(ids) for site, ids in desired.items()}


def _sync_device(device: ClientDevice, now: datetime | None = None) -> bool:
    """Bring the device's assignments in line with its access; push the differences to the
    gateways after commit and bump the config version if the config changed. Runs inside the
    caller's transaction with the device row locked. True if anything changed."""
    now = now or timezone.now()
    desired = _desired_static_access(device, now)
    existing = {
        a.site_id: a
        for a in StaticDeviceAssignment.objects.select_for_update(of=("self",))
        .filter(device_id=device.pk)
        .select_related("gateway")
    }
    pushes: list[tuple[uuid.UUID, protocol.PortalMessage]] = []
    changed: list[StaticDeviceAssignment] = []
    for site_id, assignment in existing.items():
        if site_id not in desired:
            if assignment.gateway_id is not None:
                pushes.append((assignment.gateway_id, protocol.RemoveStaticPeer(device.public_key)))
            assignment.delete()
    for site_id, resource_ids in desired.items():
        current = existing.get(site_id)
        old_gateway = current.gateway if current is not None else None
        gateway = old_gateway
        if gateway is None or not gateway.online:
            gateway = _pick_gateway(device.account_id, site_id) or gateway
        if current is None:
            current = StaticDeviceAssignment.objects.create(
                account_id=device.account_id,
                device=device,
                site_id=site_id,
                gateway=gateway,
                resource_ids=resource_ids,
            )
            changed.append(current)
            continue
        moved = (gateway.pk if gateway else None) != (old_gateway.pk if old_gateway else None)
        if moved or current.resource_ids != resource_ids:
            if moved and old_gateway is not None:
                pushes.append((old_gateway.pk, protocol.RemoveStaticPeer(device.public_key)))
            current.gateway = gateway
            current.resource_ids = resource_ids
            current.save(update_fields=["gateway", "resource_ids"])
            changed.append(current)
    # The config text changed (e.g. a resource was re-addressed): every gateway of the device
    # gets the peer again with the current resource addresses.
    if _refresh_config_version(device.pk):
        known = {a.pk for a in changed}
        changed += [
            a
            for a in StaticDeviceAssignment.objects.filter(device_id=device.pk)
            if a.pk not in known
        ]
        bumped = True
    else:
        bumped = False
    changed = [a for a in changed if a.gateway_id is not None]
    if changed:
        secret = queries.key_secret(device.account_id)
        resources = queries.assignment_resources(device.account_id, changed)
        for a in changed:
            assert a.gateway_id is not None
            pushes.append(
                (
                    a.gateway_id,
                    protocol.AddStaticPeer(
                        queries.static_peer(device, a.gateway_id, resources[a.pk], secret)
                    ),
                )
            )
    presence.send_on_commit(presence.to_gateways(pushes))
    return bool(pushes) or bumped


def _refresh_config_version(device_id: uuid.UUID) -> bool:
    """Re-render the device's config; bump its version if the text changed."""
    device = ClientDevice.objects.select_related("account").get(pk=device_id)
    body = configs.render_body(device, list(queries.device_assignments(device)))
    new_digest = configs.digest(body)
    if new_digest == device.config_digest:
        return False
    version = device.config_version + (1 if device.config_digest else 0)
    ClientDevice.objects.filter(pk=device.pk).update(
        config_digest=new_digest, config_version=version
    )
    return True


def sync_static_devices(account_id: uuid.UUID, device_ids: Iterable[uuid.UUID]) -> int:
    """Recompute each device in its own short transaction; returns how many changed."""
    changed = 0
    now = timezone.now()
    for device_id in device_ids:
        with transaction.atomic():
            device = (
                ClientDevice.objects.select_for_update()
                .select_related("actor")
                .filter(pk=device_id, account_id=account_id)
                .first()
            )
            if device is not None:
                changed += _sync_device(device, now)
    return changed


@transaction.atomic
def revoke_static_access(
    account_id: uuid.UUID,
    resource_ids: Iterable[uuid.UUID],
    *,
    device_ids: Iterable[uuid.UUID] | None = None,
    readdressed: bool = False,
    now: datetime | None = None,
) -> int:
    """The fast, synchronous half of a narrowing change of ``resource_ids``: take from every
    static device (of ``device_ids``; None: all of the account) the ones of those resources it
    may no longer reach, in one transaction and a handful of queries whatever the number of
    devices, and push the changed peers to their gateways after the commit. ``readdressed``:
    the resources' addresses changed, so every holder's peer is pushed again.

    Only removes: anything a device gains, and the config version, follow in the account's
    `sync_static_devices` run (queued by the caller). Returns the number of assignments changed.
    """
    now = now or timezone.now()
    wanted = {str(r) for r in resource_ids}
    if not wanted:
        return 0
    postgres = connection.vendor == "postgresql"
    qs = (
        StaticDeviceAssignment.objects.for_account(account_id)
        .select_for_update(of=("self",))
        .select_related("device", "device__actor")
        .order_by("pk")
    )
    if postgres:  # jsonb containment; the embedded SQLite database is filtered below
        holds = Q()
        for rid in sorted(wanted):
            holds |= Q(resource_ids__contains=[rid])
        qs = qs.filter(holds)
    if device_ids is not None:
        qs = qs.filter(device_id__in=set(device_ids))
    assignments = [a for a in qs if wanted.intersection(a.resource_ids)]
    if not assignments:
        return 0
    resources = {
        str(r.pk): r
        for r in Resource.objects.for_account(account_id).filter(
            pk__in=wanted, kind__in=queries.STATIC_KINDS
        )
    }
    rules: dict[str, list[evaluation.PolicyRule]] = defaultdict(list)
    for policy in (
        Policy.objects.for_account(account_id)
        .filter(resource_id__in=wanted, disabled_at__isnull=True)
        .order_by("id")
    ):
        rules[str(policy.resource_id)].append(
            evaluation.PolicyRule(
                policy_id=policy.pk,
                group_id=policy.group_id,
                resource_id=policy.resource_id,
                conditions=evaluation.parse_conditions_cached(policy.conditions)
                if policy.conditions
                else (),
            )
        )
    groups: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for actor_id, group_id in (
        Membership.objects.for_account(account_id)
        .filter(actor_id__in={a.device.actor_id for a in assignments})
        .values_list("actor_id", "group_id")
    ):
        groups[actor_id].add(group_id)
    account_disabled = Account.objects.filter(pk=account_id, disabled_at__isnull=False).exists()
    context = static_context(now)

    def still_allowed(a: StaticDeviceAssignment, rid: str) -> bool:
        device, resource = a.device, resources.get(rid)
        if account_disabled or device.disabled_at is not None:
            return False
        if device.actor.disabled_at is not None or resource is None:
            return False
        if resource.site_id != a.site_id:
            return False
        return evaluation.evaluate(frozenset(groups[device.actor_id]), rules[rid], context).allowed

    pushes: list[tuple[uuid.UUID, protocol.PortalMessage]] = []
    kept: list[StaticDeviceAssignment] = []
    removed: list[StaticDeviceAssignment] = []
    by_loss: dict[frozenset[str], list[uuid.UUID]] = defaultdict(list)
    for a in assignments:
        lost = frozenset(
            rid for rid in a.resource_ids if rid in wanted and not still_allowed(a, rid)
        )
        if not lost and not readdressed:
            continue
        a.resource_ids = [rid for rid in a.resource_ids if rid not in lost]
        (kept if a.resource_ids else removed).append(a)
        if lost and a.resource_ids:
            by_loss[lost].append(a.pk)
    # One UPDATE per distinct set of lost resources (jsonb minus text[] drops those strings):
    # Django's bulk_update builds a CASE per row and costs seconds for thousands of rows.
    column = StaticDeviceAssignment._meta.get_field("resource_ids").column
    for lost, pks in by_loss.items():
        if postgres:
            StaticDeviceAssignment.objects.filter(pk__in=pks).update(
                resource_ids=RawSQL(f'"{column}" - %s::text[]', (sorted(lost),))
            )
        else:
            changed = set(pks)
            for a in kept:
                if a.pk in changed:
                    a.save(update_fields=["resource_ids"])
    StaticDeviceAssignment.objects.filter(pk__in=[a.pk for a in removed]).delete()
    for a in removed:
        if a.gateway_id is not None:
            pushes.append((a.gateway_id, protocol.RemoveStaticPeer(a.device.public_key)))
    with_gateway = [a for a in kept if a.gateway_id is not None]
    if with_gateway:
        secret = queries.key_secret(account_id)
        current = queries.assignment_resources(account_id, with_gateway)
        for a in with_gateway:
            assert a.gateway_id is not None
            pushes.append(
                (
                    a.gateway_id,
                    protocol.AddStaticPeer(
                        queries.static_peer(a.device, a.gateway_id, current[a.pk], secret)
                    ),
                )
            )
    presence.send_on_commit(presence.to_gateways(pushes))
    return len(kept) + len(removed)


def resync_all_static_devices(now: datetime | None = None) -> int:
    """Periodic job: re-evaluate every device's policies now (time-window conditions change
    access with no event; an account recomputation whose task was lost). A push a gateway
    missed is repaired by its state digest, not here."""
    total = 0
    rows = ClientDevice.objects.filter(kind=ClientDevice.Kind.STATIC).values_list(
        "account_id", "pk"
    )
    by_account: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for account_id, device_id in rows:
        by_account[account_id].append(device_id)
    for account_id, ids in by_account.items():
        total += sync_static_devices(account_id, ids)
    return total


# --- authorizations --------------------------------------------------------------------------


@transaction.atomic
def expire_authorizations(now: datetime | None = None, *, batch: int = 5000) -> int:
    """Revoke authorizations past ``expires_at`` (reason "expired"); gateways get reject_access."""
    now = now or timezone.now()
    due = list(
        Authorization.objects.select_for_update(skip_locked=True)
        .filter(revoked_at__isnull=True, expires_at__lte=now)
        .values_list("account_id", "pk")[:batch]
    )
    by_account: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for account_id, auth_id in due:
        by_account[account_id].add(auth_id)
    for account_id, ids in by_account.items():
        Authorization.objects.filter(pk__in=ids, revoked_at__isnull=True).update(
            revoked_at=now, revoke_reason="expired"
        )
        publish(
            AccessChanged(
                account_id=account_id,
                reason="authorization_expired",
                authorization_ids=frozenset(ids),
            )
        )
    return len(due)


@transaction.atomic
def revoke_stale_authorizations(event: AccessChanged) -> frozenset[uuid.UUID]:
    """Revoke the active authorizations a narrowing event made invalid that its service did not
    revoke itself (membership removed, actor or token disabled, account disabled).

    Dynamic-client context (remote IP, country) is not known here, so the test is the part that
    does not depend on it: the actor still belongs to a group with an enabled policy for the
    resource, its token is not revoked, actor and account are enabled.
    """
    if not event.narrowed or event.filters_only:
        return frozenset()
    qs = Authorization.objects.for_account(event.account_id).filter(revoked_at__isnull=True)
    if event.reason == "account_disabled":
        stale = qs
    else:
        scope = Q()
        if event.actor_ids:
            scope |= Q(actor_id__in=event.actor_ids)
        if event.token_ids:
            scope |= Q(token_id__in=event.token_ids)
        if event.device_ids:
            scope |= Q(device_id__in=event.device_ids)
        if not scope:
            return frozenset()
        candidates = qs.filter(scope)
        allowed_policy = Policy.objects.filter(
            resource_id=OuterRef("resource_id"),
            disabled_at__isnull=True,
            group__memberships__actor_id=OuterRef("actor_id"),
        )
        stale = candidates.filter(
            Q(actor__disabled_at__isnull=False)
            | Q(token__revoked_at__isnull=False)
            | Q(device__disabled_at__isnull=False)
            | Q(actor__isnull=True)
            | ~Exists(allowed_policy)
        )
    ids = frozenset(stale.exclude(pk__in=event.authorization_ids).values_list("pk", flat=True))
    if ids:
        Authorization.objects.filter(pk__in=ids).update(
            revoked_at=timezone.now(), revoke_reason=event.reason[:64]
        )
    return ids


def push_create_authorization(authorization: Authorization) -> None:
    """Tell the authorization's gateway about a new flow (after commit). For dynamic clients."""
    if authorization.gateway_id is None:
        return
    message = queries.authorization_to_wire(
        authorization, queries.key_secret(authorization.account_id)
    )
    if message is not None:
        presence.send_on_commit(
            presence.to_gateways(
                [(authorization.gateway_id, protocol.CreateAuthorization(message))]
            )
        )


# --- gateway tokens ----------------------------------------------------------------------------

GATEWAY_TOKEN_MAX_AGE = timedelta(days=30)


def rotate_gateway_tokens(
    now: datetime | None = None, *, max_age: timedelta = GATEWAY_TOKEN_MAX_AGE
) -> int:
    """Rotate gateway tokens older than ``max_age`` that a connected gateway uses, and push the
    new secret to every gateway connected with the old one (``token_rotated``). Tokens nobody is
    connected with are left alone: nobody could receive their successor."""
    now = now or timezone.now()
    in_use = Gateway.objects.filter(last_token_id=OuterRef("pk"), online=True)
    due = Token.objects.filter(
        Exists(in_use),
        kind=Token.Kind.GATEWAY,
        revoked_at__isnull=True,
        replaced_by__isnull=True,
        grace_until__isnull=True,
        created_at__lte=now - max_age,
    ).filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    rotated = 0
    for token in due:
        with transaction.atomic():
            issued = rotate_gateway_token(token, now=now)
            old = Token.objects.get(pk=token.pk)
            presence.send_on_commit(
                [
                    presence.frames(
                        presence.token_group(token.pk),
                        [protocol.TokenRotated(token=issued.secret, grace_until=old.grace_until)],
                    )
                ]
            )
        rotated += 1
    return rotated
