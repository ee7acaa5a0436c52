"""Access-change handlers: what gateways are told after a committed change.

Subscribed in ``GatewaysConfig.ready()``; ``firezone_site.events`` calls them from
``transaction.on_commit``, so a rolled-back change never reaches a gateway. Revocation is pushed
first and directly (one query, then ``group_send`` to the gateways holding the authorizations):
no Celery hop sits between the commit and ``reject_access``.

Static devices: revocation stays synchronous too. A narrowing policy or resource change takes
the resources away here from the devices that hold them and may no longer reach them
(`services.revoke_static_access`: one bulk evaluation, one transaction, pushes on commit); a
narrowing scoped to actors, groups or devices recomputes those devices (each in its own short
transaction). Everything else - the account-wide recomputation a change implies, widening,
config versions - runs in the ``gateways.sync_account_static_devices`` Celery task, queued after
the commit and coalesced per account (`gateways.tasks.request_static_sync`), so an admin's
request does not pay for every device of the account. A push lost on the way is repaired by the
gateways' state digest (docs/protocol.md, "Convergence").
"""

from __future__ import annotations

import logging
import uuid

from accounts.models import Token
from agents import protocol
from firezone_site.events import AccessChanged
from gateways import presence, queries, services, tasks
from policies.models import Resource

log = logging.getLogger(__name__)


def _push_rejections(account_id: uuid.UUID, authorization_ids: frozenset[uuid.UUID]) -> None:
    if not authorization_ids:
        return
    by_gateway = queries.authorizations_by_gateway(account_id, authorization_ids)
    presence.send_now(
        presence.to_gateways(
            (gateway_id, protocol.RejectAccess(authorization_ids=tuple(sorted(ids, key=str))))
            for gateway_id, ids in by_gateway.items()
        )
    )
    # Then the clients holding them (the gateway already drops the traffic).
    by_device = queries.authorizations_by_device(account_id, authorization_ids)
    presence.send_now(
        [
            presence.frames(
                presence.client_group(device_id),
                [protocol.AuthorizationRevoked(tuple(sorted(ids, key=str)))],
            )
            for device_id, ids in by_device.items()
        ]
    )


#: Events that only end flows: no static device and no client's resource list changes.
FLOW_ONLY_REASONS = frozenset(
    {
        "authorization_expired",
        "gateway_ack_timeout",
        "gateway_refused",
        "client_disconnected",
        "client_context_changed",
        "client_key_changed",
        "push_failed",
    }
)


def _refresh_clients(event: AccessChanged) -> None:
    """Connected clients whose visible resources may have changed recompute them and get the
    differences (resource_created_or_updated / resource_deleted)."""
    if event.reason in FLOW_ONLY_REASONS or event.reason == "account_disabled":
        return  # nothing a client sees changed (or its socket is about to close)
    if event.actor_ids and not (event.group_ids or event.resource_ids or event.policy_ids):
        groups = [presence.client_actor_group(a) for a in sorted(event.actor_ids, key=str)]
    elif event.token_ids or (event.device_ids and not event.resource_ids):
        return  # token revoked (sockets close) or a device changed: nothing visible changed
    else:
        groups = [presence.client_account_group(event.account_id)]
    presence.send_now([presence.refresh(g) for g in groups])


def _push_resource_updates(account_id: uuid.UUID, resource_ids: frozenset[uuid.UUID]) -> None:
    resources = Resource.objects.for_account(account_id).filter(pk__in=resource_ids)
    presence.send_now(
        [
            presence.frames(
                presence.site_group(r.site_id),
                [protocol.ResourceUpdated(queries.resource_to_wire(r))],
            )
            for r in resources
        ]
    )


def _close_connections(event: AccessChanged) -> None:
    # A socket joins the group of the token it connected with; after a rotation it keeps running
    # on the successor, so revoking the successor must also close its predecessor's group.
    predecessors = Token.objects.for_account(event.account_id).filter(
        replaced_by_id__in=event.token_ids
    )
    token_ids = set(event.token_ids) | set(predecessors.values_list("pk", flat=True))
    envelopes: list[presence.Envelope] = [
        presence.close(presence.token_group(t), protocol.CloseCode.UNAUTHORIZED, "token revoked")
        for t in sorted(token_ids, key=str)
    ]
    if event.reason == "account_disabled":
        envelopes.append(
            presence.close(
                presence.account_group(event.account_id),
                protocol.CloseCode.ACCOUNT_DISABLED,
                "the account is disabled",
            )
        )
    presence.send_now(envelopes)


def _revoke_static_access(event: AccessChanged) -> None:
    """Synchronously take away what a narrowing event took from static devices."""
    if event.resource_ids:
        # Policy and resource changes: only holders of those resources can lose anything;
        # one bulk evaluation for all of them (the group scope is implied by the policies).
        services.revoke_static_access(
            event.account_id,
            event.resource_ids,
            readdressed=event.reason == "resource_readdressed",
        )
        return
    if event.actor_ids or event.group_ids or event.device_ids:
        device_ids = queries.affected_static_devices(
            event.account_id,
            actor_ids=event.actor_ids,
            group_ids=event.group_ids,
            device_ids=event.device_ids,
        )
    else:  # account-wide narrowing without a resource (the account was disabled)
        device_ids = queries.affected_static_devices(event.account_id, everything=True)
    services.sync_static_devices(event.account_id, device_ids)


def on_access_changed(event: AccessChanged) -> None:
    if event.narrowed:
        _push_rejections(event.account_id, event.authorization_ids)
        _push_rejections(event.account_id, services.revoke_stale_authorizations(event))
    _refresh_clients(event)
    if event.filters_only:
        _push_resource_updates(event.account_id, event.resource_ids)
        return  # filters are not part of static configs; resource_updated covers the peers
    if event.reason not in FLOW_ONLY_REASONS:  # those change no static device
        if event.narrowed:
            _revoke_static_access(event)
        tasks.request_static_sync(event.account_id)
    if event.narrowed:
        # Last: a gateway must receive the rejections and peer removals before its socket closes
        # (the channel layer keeps per-channel order), or it would keep them while retrying.
        _close_connections(event)
