"""Helpers for the client endpoint tests: client tokens and simulated client/gateway agents
through the real ASGI application (Channels routing, Redis channel layer, PostgreSQL)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, Token

from .conftest import Gateway, db, new_key, open_gateway, ws_path


def client_token(actor: Actor, *, hours: int = 8) -> str:
    return account_services.create_token(
        actor.account,
        kind=Token.Kind.CLIENT,
        actor=actor,
        name="laptop sign-in",
        expires_at=timezone.now() + timedelta(hours=hours),
    ).secret


def service_account_token(account: Account) -> str:
    return account_services.issue_api_token(account, new_service_account="ci-runner").secret


def client_path(**params: str | None) -> str:
    query: dict[str, str | None] = {
        "external_id": "laptop-1",
        "name": "laptop",
        "public_key": new_key(),
        "version": "0.1.0",
        "protocol": "1",
    }
    query.update(params)
    return "/client/websocket?" + urlencode({k: v for k, v in query.items() if v is not None})


class Client(Gateway):
    """One simulated client agent connection (same helpers as the gateway's)."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        super().__init__(communicator)
        self.skipped: list[dict[str, Any]] = []

    async def receive_type(self, mtype: str, timeout: float = 3) -> dict[str, Any]:
        """Next message of ``mtype``; heartbeat replies and revocation notices on the way are
        kept in ``skipped`` (their order relative to answers is not part of the protocol)."""
        while True:
            message = await self.receive(timeout)
            if message["type"] == mtype:
                return message
            assert message["type"] in ("heartbeat_reply", "authorization_revoked"), message
            self.skipped.append(message)

    async def request(self, resource_id: Any, **extra: Any) -> None:
        await self.send({"type": "request_authorization", "resource_id": str(resource_id), **extra})


async def open_client(
    secret: str | None,
    path: str | None = None,
    *,
    peer: str = "203.0.113.50",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[Client, dict[str, Any] | None, tuple[int, str] | None]:
    """Connect; returns (connection, init or None, (close code, reason) when refused)."""
    from firezone_site.asgi import application

    all_headers = list(headers or [])
    if secret is not None:
        all_headers.append((b"authorization", f"Bearer {secret}".encode()))
    ws = WebsocketCommunicator(application, path or client_path(), headers=all_headers)
    ws.scope["client"] = (peer, 40000)
    connected, _ = await ws.connect(timeout=5)
    assert connected
    client = Client(ws)
    first = json.loads((await ws.receive_output(timeout=5))["text"])
    if first["type"] == "init":
        return client, first, None
    assert first["type"] == "error", first
    code, _ = await client.close_code()
    return client, None, (code, first["reason"])


async def gateway_online(token: str, **params: str) -> tuple[Gateway, dict[str, Any]]:
    gateway, init = await open_gateway(token, ws_path(**params) if params else None)
    assert init is not None
    return gateway, init


__all__ = ["Client", "client_path", "client_token", "db", "gateway_online", "open_client"]
