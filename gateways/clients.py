"""Dynamic clients (issue 10): connecting a client agent, what it may see, and on-demand
authorizations (``request_authorization`` -> gateway ``create_authorization`` -> ack ->
``authorization_created``). Client protocol v1 in docs/protocol.md.

Every write is one transaction; pushes go out after the commit (``presence.send_on_commit`` or
``events.publish``). Every query is scoped to the device's account.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address, IPv6Address

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Actor, Token
from agents import protocol
from firezone_site.events import AccessChanged, publish
from gateways import context, presence, queries, services
from gateways.models import Authorization, ClientDevice, Gateway
from policies import evaluation
from policies.models import Policy, Resource

log = logging.getLogger(__name__)


class ClientRefused(services.GatewayRefused):
    """A client connection (or request) the portal refuses; ``code`` is the close code."""


@dataclass(frozen=True)
class ClientParams:
    external_id: str
    name: str
    public_key: str
    version: str


@dataclass(frozen=True)
class ClientSession:
    """What the consumer keeps about its connection."""

    device_id: uuid.UUID
    actor_id: uuid.UUID
    account_id: uuid.UUID
    token_id: uuid.UUID
    version: str
    remote_ip: str | None


def authenticate(secret: str, remote_ip: str | None) -> Token:
    """A client session token, or a service account's token; else ClientRefused(4001)."""
    token = account_services.use_token(secret, kind=Token.Kind.CLIENT, remote_ip=remote_ip)
    if token is None:
        token = account_services.use_token(secret, kind=Token.Kind.API, remote_ip=remote_ip)
        if token is not None and (
            token.actor is None or token.actor.type != Actor.Type.SERVICE_ACCOUNT
        ):
            token = None
    if token is None or token.actor is None:
        raise ClientRefused(
            protocol.CloseCode.UNAUTHORIZED,
            "invalid, expired or revoked client token (sign in again)",
        )
    if token.provider is not None and token.provider.disabled_at is not None:
        raise ClientRefused(protocol.CloseCode.UNAUTHORIZED, "the sign-in provider is disabled")
    return token


def _context(
    token: Token, device: ClientDevice, remote_ip: str | None, now: datetime
) -> evaluation.ClientContext:
    ip = context._parse_ip(remote_ip) if remote_ip else None
    return evaluation.ClientContext(
        remote_ip=ip,
        country=context.country(ip),
        auth_provider_id=str(token.provider_id) if token.provider_id else None,
        verified=device.verified_at is not None,
        now=now,
        session_expires_at=token.expires_at,
    )


@transaction.atomic
def connect_client(
    *,
    secret: str,
    params: ClientParams,
    remote_ip: str | None,
    channel_name: str,
    now: datetime | None = None,
) -> ClientSession:
    """Authenticate a client socket, upsert its device (allocating tunnel addresses on the first
    connect) and make this the device's connection (an older socket gets 4004 after commit).

    A reconnect re-evaluates the device's active flows with the new remote IP and country, and a
    changed public key ends them (the gateways know the old key)."""
    now = now or timezone.now()
    token = authenticate(secret, remote_ip)
    actor = token.actor
    assert actor is not None
    account = token.account
    if account.disabled_at is not None:
        raise ClientRefused(protocol.CloseCode.ACCOUNT_DISABLED, "the account is disabled")
    services.ensure_key_secret(account.pk)
    device = (
        ClientDevice.objects.for_account(account.pk)
        .select_for_update()
        .filter(actor_id=actor.pk, external_id=params.external_id)
        .first()
    )
    if device is not None and device.kind != ClientDevice.Kind.DYNAMIC:
        raise ClientRefused(protocol.CloseCode.BAD_PARAMETERS, "external_id: not a client agent")
    if device is not None and device.disabled_at is not None:
        raise ClientRefused(protocol.CloseCode.DEVICE_DISABLED, "this device is disabled")
    key_taken = ClientDevice.objects.for_account(account).filter(public_key=params.public_key)
    if device is not None:
        key_taken = key_taken.exclude(pk=device.pk)
    if (
        key_taken.exists()
        or Gateway.objects.for_account(account).filter(public_key=params.public_key).exists()
    ):
        raise ClientRefused(
            protocol.CloseCode.BAD_PARAMETERS, "public_key: another device or gateway uses this key"
        )
    envelopes: list[presence.Envelope] = []
    revoked: set[uuid.UUID] = set()
    if device is None:
        addresses = services.allocate_tunnel_address(account.pk)
        device = ClientDevice(
            account=account,
            actor=actor,
            kind=ClientDevice.Kind.DYNAMIC,
            external_id=params.external_id,
            address=addresses.slot,
            ipv4=addresses.ipv4,
            ipv6=addresses.ipv6,
        )
    else:
        if device.channel_name and device.channel_name != channel_name:
            envelopes.append(
                presence.to_channel(
                    device.channel_name,
                    protocol.CloseCode.REPLACED,
                    "another connection for this device took over",
                )
            )
        if device.public_key != params.public_key:
            revoked |= services.revoke_authorizations(
                account.pk, device_ids={device.pk}, reason="client_key_changed"
            )
    device.name = params.name
    device.public_key = params.public_key
    device.channel_name = channel_name
    device.last_seen_at = now
    device.last_seen_remote_ip = remote_ip
    device.last_seen_version = params.version
    device.save()
    revoked |= _reevaluate(device, token, remote_ip, now, exclude=revoked)
    presence.send_on_commit(envelopes)
    if revoked:
        publish(
            AccessChanged(
                account_id=account.pk,
                reason="client_context_changed",
                device_ids=frozenset({device.pk}),
                authorization_ids=frozenset(revoked),
            )
        )
    return ClientSession(
        device_id=device.pk,
        actor_id=actor.pk,
        account_id=account.pk,
        token_id=token.pk,
        version=params.version,
        remote_ip=remote_ip,
    )


def _reevaluate(
    device: ClientDevice,
    token: Token,
    remote_ip: str | None,
    now: datetime,
    *,
    exclude: Iterable[uuid.UUID] = (),
) -> set[uuid.UUID]:
    """Revoke the device's active flows that its current context no longer allows."""
    active = list(
        queries.active_authorizations(device.account_id, now)
        .filter(device_id=device.pk, resource__isnull=False)
        .exclude(pk__in=list(exclude))
        .select_related("resource")
    )
    if not active:
        return set()
    actor = Actor.objects.for_account(device.account_id).get(pk=device.actor_id)
    ctx = _context(token, device, remote_ip, now)
    group_ids = _group_ids(actor)
    stale: set[uuid.UUID] = set()
    for auth in active:
        assert auth.resource_id is not None
        decision = evaluation.evaluate(group_ids, _rules(device.account_id, auth.resource_id), ctx)
        if not decision.allowed:
            stale.add(auth.pk)
    if stale:
        Authorization.objects.for_account(device.account_id).filter(pk__in=stale).update(
            revoked_at=now, revoke_reason="client_context_changed"
        )
    return stale


def disconnect_client(session: ClientSession, channel_name: str) -> bool:
    """The socket closed: the device is offline unless a newer connection holds it."""
    rows = (
        ClientDevice.objects.for_account(session.account_id)
        .filter(pk=session.device_id, channel_name=channel_name)
        .update(channel_name="", last_seen_at=timezone.now())
    )
    return bool(rows)


def client_heartbeat(session: ClientSession, channel_name: str) -> bool:
    """Refresh presence; False when another connection took the device over (or it is gone)."""
    rows = (
        ClientDevice.objects.for_account(session.account_id)
        .filter(pk=session.device_id, channel_name=channel_name)
        .update(last_seen_at=timezone.now())
    )
    return bool(rows)


# --- what a client may see -----------------------------------------------------------------------


def _group_ids(actor: Actor) -> frozenset[uuid.UUID]:
    from policies import queries as policy_queries

    return policy_queries.group_ids_of(actor)


def _rules(account_id: uuid.UUID, resource_id: uuid.UUID) -> list[evaluation.PolicyRule]:
    return [
        evaluation.PolicyRule(
            policy_id=p.pk,
            group_id=p.group_id,
            resource_id=p.resource_id,
            conditions=evaluation.parse_conditions_cached(p.conditions) if p.conditions else (),
        )
        for p in Policy.objects.for_account(account_id)
        .filter(resource_id=resource_id, disabled_at__isnull=True)
        .order_by("id")
    ]


def client_resource(resource: Resource) -> protocol.ClientResource:
    wire = queries.resource_to_wire(resource)
    return protocol.ClientResource(
        id=wire.id,
        type=wire.type,
        address=wire.address,
        name=resource.name,
        site_id=resource.site_id,
        address_description=resource.address_description,
        filters=wire.filters,
    )


def visible_resources(session: ClientSession) -> dict[uuid.UUID, protocol.ClientResource]:
    """The resources with an enabled policy for one of the actor's groups (conditions are checked
    at authorization time); nothing for a disabled actor, device or account."""
    actor = (
        Actor.objects.for_account(session.account_id)
        .select_related("account")
        .filter(pk=session.actor_id)
        .first()
    )
    if actor is None or actor.disabled_at is not None or actor.account.disabled_at is not None:
        return {}
    group_ids = _group_ids(actor)
    if not group_ids:
        return {}
    granting = Policy.objects.for_account(session.account_id).filter(
        group_id__in=group_ids, disabled_at__isnull=True
    )
    resources = (
        Resource.objects.for_account(session.account_id)
        .filter(pk__in=granting.values("resource_id"))
        .order_by("name", "id")
    )
    return {r.pk: client_resource(r) for r in resources}


def init_message(session: ClientSession) -> protocol.ClientInit:
    device = ClientDevice.objects.for_account(session.account_id).get(pk=session.device_id)
    return protocol.ClientInit(
        client_id=device.pk,
        ipv4=IPv4Address(device.ipv4),
        ipv6=IPv6Address(device.ipv6),
        resources=tuple(visible_resources(session).values()),
        relays=(),
        heartbeat_interval_s=protocol.HEARTBEAT_INTERVAL_S,
    )


# --- on-demand authorizations --------------------------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """A recorded authorization waiting for its gateway's ack; ``created`` goes to the client
    once the ack arrives. ``push`` (``create_authorization`` for the gateway) is for the caller
    to send once the transaction committed (``presence.send_async``)."""

    authorization_id: uuid.UUID
    gateway_id: uuid.UUID
    created: protocol.AuthorizationCreated
    push: list[presence.Envelope]


_key_secrets: dict[uuid.UUID, bytes] = {}


def _key_secret(account_id: uuid.UUID) -> bytes:
    """The account's preshared-key secret; it never changes once created, so it is cached."""
    secret = _key_secrets.get(account_id)
    if secret is None:
        secret = _key_secrets[account_id] = queries.key_secret(account_id)
    return secret


Outcome = Pending | protocol.AuthorizationCreationFailed


def _failed(
    resource_id: uuid.UUID, reason: protocol.FailureReason, violated: Iterable[str] = ()
) -> protocol.AuthorizationCreationFailed:
    return protocol.AuthorizationCreationFailed(resource_id, reason, tuple(violated))


def _gateway_load(account_id: uuid.UUID, site_id: uuid.UUID, now: datetime) -> list[Gateway]:
    active = Q(authorizations__revoked_at__isnull=True) & (
        Q(authorizations__expires_at__isnull=True) | Q(authorizations__expires_at__gt=now)
    )
    return list(
        Gateway.objects.for_account(account_id)
        .filter(site_id=site_id, online=True)
        .annotate(load=Count("authorizations", filter=active))
    )


def pick_gateway(
    candidates: list[Gateway],
    *,
    client_version: str,
    connected: Iterable[uuid.UUID] = (),
    failed: Iterable[uuid.UUID] = (),
    rng: random.Random | None = None,
) -> Gateway | protocol.FailureReason:
    """Online gateways of the site (annotated with ``load``) -> the one to use: compatible
    version; one the client is connected to if any; else not one it failed to reach if another
    exists; least loaded; random among equals."""
    if not candidates:
        return "offline"
    compatible = [
        g for g in candidates if protocol.versions_compatible(client_version, g.last_seen_version)
    ]
    if not compatible:
        return "version_mismatch"
    failed_ids = set(failed)
    usable = [g for g in compatible if g.pk not in failed_ids] or compatible
    connected_ids = set(connected) - failed_ids
    preferred = [g for g in usable if g.pk in connected_ids] or usable
    least = min(g.load for g in preferred)  # type: ignore[attr-defined]
    return (rng or random).choice([g for g in preferred if g.load == least])  # type: ignore[attr-defined]


def _endpoints(gateway: Gateway) -> tuple[str, ...]:
    endpoint = gateway.last_seen_endpoint or services.default_endpoint(gateway.last_seen_remote_ip)
    return (endpoint,)


@transaction.atomic
def request_authorization(
    session: ClientSession,
    request: protocol.RequestAuthorization,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Decide ``request`` with the client's real context; on success record the Authorization
    and push ``create_authorization`` to the chosen gateway after commit."""
    now = now or timezone.now()
    account_id = session.account_id
    resource_id = request.resource_id
    device = (
        ClientDevice.objects.for_account(account_id)
        .select_related("actor")
        .filter(pk=session.device_id, disabled_at__isnull=True)
        .first()
    )
    token = (
        Token.objects.for_account(account_id)
        .select_related("provider")
        .filter(pk=session.token_id, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if device is None or token is None or device.actor.disabled_at is not None:
        raise ClientRefused(protocol.CloseCode.UNAUTHORIZED, "the session is no longer valid")
    resource = Resource.objects.for_account(account_id).filter(pk=resource_id).first()
    if resource is None:
        return _failed(resource_id, "not_found")
    group_ids = _group_ids(device.actor)
    rules = _rules(account_id, resource.pk)
    if not any(r.group_id in group_ids for r in rules):
        return _failed(resource_id, "not_found")  # the client may not even see it
    ctx = _context(token, device, session.remote_ip, now)
    decision = evaluation.evaluate(group_ids, rules, ctx)
    if not decision.allowed:
        violated = list(dict.fromkeys(c.property for c in decision.violated))
        return _failed(resource_id, "forbidden", violated)
    chosen = pick_gateway(
        _gateway_load(account_id, resource.site_id, now),
        client_version=session.version,
        connected=request.connected_gateway_ids,
        failed=request.failed_gateway_ids,
    )
    if isinstance(chosen, str):
        return _failed(resource_id, chosen)
    cap = now + timedelta(seconds=int(settings.FZ_AUTHORIZATION_MAX_AGE_S))
    expires_at = min(decision.expires_at or cap, cap)
    authorization = Authorization(
        account_id=account_id,
        actor=device.actor,
        device=device,
        resource=resource,
        policy_id=decision.policy_id,
        gateway=chosen,
        token=token,
        actor_email=device.actor.email,
        resource_name=resource.name,
        resource_address=resource.address,
        client_remote_ip=str(ctx.remote_ip) if ctx.remote_ip else None,
        expires_at=expires_at,
    )
    authorization.save(force_insert=True)
    secret = _key_secret(account_id)
    psk = queries.derive_preshared_key(secret, device.pk, chosen.pk)
    flow = protocol.Authorization(
        id=authorization.pk,
        client_public_key=device.public_key,
        preshared_key=psk,
        client_ipv4=IPv4Address(device.ipv4),
        client_ipv6=IPv6Address(device.ipv6),
        resource=queries.resource_to_wire(resource),
        expires_at=expires_at,
    )
    push = presence.to_gateways([(chosen.pk, protocol.CreateAuthorization(flow))])
    created = protocol.AuthorizationCreated(
        authorization_id=authorization.pk,
        resource_id=resource.pk,
        gateway_id=chosen.pk,
        gateway_public_key=chosen.public_key,
        gateway_endpoints=_endpoints(chosen),
        preshared_key=psk,
        gateway_ipv4=IPv4Address(chosen.ipv4),
        gateway_ipv6=IPv6Address(chosen.ipv6),
        client_ipv4=IPv4Address(device.ipv4),
        client_ipv6=IPv6Address(device.ipv6),
        expires_at=expires_at,
    )
    return Pending(
        authorization_id=authorization.pk, gateway_id=chosen.pk, created=created, push=push
    )


@transaction.atomic
def abandon_authorization(
    account_id: uuid.UUID, authorization_id: uuid.UUID, *, reason: str
) -> bool:
    """Fail closed: the gateway did not acknowledge in time (or refused). Revoke the half-made
    flow; its gateway gets ``reject_access`` after commit. False if it was already revoked."""
    qs = Authorization.objects.for_account(account_id).filter(
        pk=authorization_id, revoked_at__isnull=True
    )
    revoked = frozenset(qs.select_for_update().values_list("pk", flat=True))
    if revoked:
        Authorization.objects.for_account(account_id).filter(pk__in=revoked).update(
            revoked_at=timezone.now(), revoke_reason=reason[:64]
        )
        publish(
            AccessChanged(
                account_id=account_id,
                reason=reason,
                narrowed=True,
                authorization_ids=revoked,
            )
        )
    return bool(revoked)


def gateway_answered(
    account_id: uuid.UUID, gateway_id: uuid.UUID, authorization_id: uuid.UUID, *, ok: bool
) -> list[presence.Envelope]:
    """The gateway acknowledged (``ok``) or refused a ``create_authorization``: returns the
    message for the client that asked (the caller sends it). Only a still active authorization
    of this gateway counts."""
    device_id = (
        Authorization.objects.for_account(account_id)
        .filter(pk=authorization_id, gateway_id=gateway_id, revoked_at__isnull=True)
        .values_list("device_id", flat=True)
        .first()
    )
    if device_id is None:
        return []
    if not ok:
        abandon_authorization(account_id, authorization_id, reason="gateway_refused")
    return [presence.ack(device_id, authorization_id, ok=ok)]
