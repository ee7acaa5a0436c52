"""How the portal reaches connected gateways: channel-layer groups and the push helpers.

Every gateway websocket joins four groups: its gateway, its site, its account and the token it
authenticated with. Services and event handlers never talk to sockets: they serialize a
:mod:`agents.protocol` message once and ``group_send`` the text to a group; the consumer forwards
the frames as they are. Pushes are made from ``transaction.on_commit`` callbacks (or from the
access-event handlers, which already run after the commit), so a rolled-back change pushes
nothing. A group with no member (gateway offline) swallows the message: the gateway gets the
current state in ``init`` when it reconnects.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from agents import protocol

log = logging.getLogger(__name__)

PUSH = "gateway.push"  # -> GatewayConsumer.gateway_push
CLOSE = "gateway.close"  # -> GatewayConsumer.gateway_close


def gateway_group(gateway_id: uuid.UUID) -> str:
    return f"gw.{gateway_id.hex}"


def site_group(site_id: uuid.UUID) -> str:
    return f"gw-site.{site_id.hex}"


def account_group(account_id: uuid.UUID) -> str:
    return f"gw-account.{account_id.hex}"


def token_group(token_id: uuid.UUID) -> str:
    return f"gw-token.{token_id.hex}"


# Client sockets (``/client/websocket``) join their device's and actor's groups and the account's
# client group; they also join ``token_group`` and ``account_group`` so that revoking the token or
# disabling the account closes them exactly as it closes gateways.
ACK = "client.ack"  # -> ClientConsumer.client_ack (the gateway installed a flow, or refused it)
REFRESH = "client.refresh"  # -> ClientConsumer.client_refresh (recompute the visible resources)


def client_group(device_id: uuid.UUID) -> str:
    return f"cl.{device_id.hex}"


def client_actor_group(actor_id: uuid.UUID) -> str:
    return f"cl-actor.{actor_id.hex}"


def client_account_group(account_id: uuid.UUID) -> str:
    return f"cl-account.{account_id.hex}"


def ack(device_id: uuid.UUID, authorization_id: uuid.UUID, *, ok: bool) -> Envelope:
    return client_group(device_id), {
        "type": ACK,
        "authorization_id": str(authorization_id),
        "ok": ok,
    }


def refresh(group: str) -> Envelope:
    return group, {"type": REFRESH}


# (group, layer message)
Envelope = tuple[str, dict[str, Any]]


def frames(group: str, messages: Sequence[protocol.Message]) -> Envelope:
    return group, {"type": PUSH, "frames": [protocol.dump(m) for m in messages]}


def close(group: str, code: protocol.CloseCode, reason: str) -> Envelope:
    return group, {"type": CLOSE, "code": int(code), "reason": reason}


def to_gateways(pushes: Iterable[tuple[uuid.UUID, protocol.PortalMessage]]) -> list[Envelope]:
    """Group (gateway id, message) pairs into one envelope per gateway, order kept."""
    by_gateway: dict[uuid.UUID, list[protocol.PortalMessage]] = defaultdict(list)
    for gateway_id, message in pushes:
        by_gateway[gateway_id].append(message)
    return [frames(gateway_group(gw), msgs) for gw, msgs in by_gateway.items()]


async def send_async(envelopes: Sequence[Envelope]) -> None:
    """Send from async code (a consumer) once the transaction that decided them committed."""
    await _send_all(envelopes)


async def _send_all(envelopes: Sequence[Envelope]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for target, message in envelopes:
        if target.startswith("channel:"):
            await layer.send(target.removeprefix("channel:"), message)
        else:
            await layer.group_send(target, message)


def send_now(envelopes: Sequence[Envelope]) -> None:
    """Send from synchronous code that runs after the commit (event handlers, on_commit)."""
    if not envelopes:
        return
    try:
        async_to_sync(_send_all)(list(envelopes))
    except Exception:  # a push failure must not fail the (already committed) request
        log.exception("push to %d gateway group(s) failed", len(envelopes))


def send_on_commit(envelopes: Sequence[Envelope]) -> None:
    """Send once the current transaction commits; nothing if it rolls back."""
    if envelopes:
        batch = list(envelopes)
        transaction.on_commit(lambda: send_now(batch))


def to_channel(channel_name: str, code: protocol.CloseCode, reason: str) -> Envelope:
    """Close one specific connection (by its channel name, not a group)."""
    return f"channel:{channel_name}", {"type": CLOSE, "code": int(code), "reason": reason}
