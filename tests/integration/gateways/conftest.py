"""Helpers for the gateway endpoint tests: sites, tokens, and websocket connections through the
real ASGI application (Channels routing, Redis channel layer, PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.models import Account
from gateways import services
from gateways.models import Site


def new_key() -> str:
    return services.generate_key_pair()[1]


def ws_path(**params: str | None) -> str:
    query = {
        "external_id": "gw-1",
        "name": "gw-1",
        "public_key": new_key(),
        "version": "0.1.0",
        "protocol": "1",
    }
    query.update(params)  # type: ignore[arg-type]
    return "/gateway/websocket?" + urlencode({k: v for k, v in query.items() if v is not None})


class Gateway:
    """One simulated agent connection."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.ws = communicator

    async def receive(self, timeout: float = 3) -> dict[str, Any]:
        return json.loads(await self.ws.receive_from(timeout=timeout))  # type: ignore[no-any-return]

    async def receive_type(self, mtype: str, timeout: float = 3) -> dict[str, Any]:
        """Next message of ``mtype``, skipping heartbeat replies."""
        while True:
            message = await self.receive(timeout)
            if message["type"] == mtype:
                return message
            assert message["type"] == "heartbeat_reply", message

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send_to(text_data=json.dumps(message))

    async def nothing(self, timeout: float = 0.5) -> bool:
        return bool(await self.ws.receive_nothing(timeout=timeout))

    async def close_code(self, timeout: float = 3) -> tuple[int, str]:
        """Read until the portal closes; returns (close code, reason of the error frame)."""
        reason = ""
        while True:
            output = await self.ws.receive_output(timeout=timeout)
            if output["type"] == "websocket.close":
                return int(output.get("code", 1000)), reason
            if output["type"] == "websocket.send" and "text" in output:
                frame = json.loads(output["text"])
                if frame["type"] == "error":
                    reason = frame["reason"]

    async def disconnect(self) -> None:
        await self.ws.disconnect()


async def open_gateway(
    secret: str | None, path: str | None = None, *, authorization: str | None = None
) -> tuple[Gateway, dict[str, Any] | None]:
    """Connect; returns the connection and the init message (None when refused)."""
    from firezone_site.asgi import application

    headers = []
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    elif secret is not None:
        headers.append((b"authorization", f"Bearer {secret}".encode()))
    ws = WebsocketCommunicator(application, path or ws_path(), headers=headers)
    ws.scope["client"] = ("203.0.113.7", 40000)
    connected, _ = await ws.connect(timeout=5)
    assert connected  # the portal accepts, then closes with a 4000-range code when refusing
    gateway = Gateway(ws)
    first = await gateway.ws.receive_output(timeout=5)
    if first["type"] == "websocket.send":
        message = json.loads(first["text"])
        if message["type"] == "init":
            return gateway, message
        # error frame before the close
        gateway._pending_reason = message.get("reason", "")  # type: ignore[attr-defined]
        return gateway, None
    gateway._closed_output = first  # type: ignore[attr-defined]
    return gateway, None


async def refused(secret: str | None, path: str | None = None, **kw: Any) -> tuple[int, str]:
    gateway, init = await open_gateway(secret, path, **kw)
    assert init is None, "the portal should have refused the connection"
    reason = getattr(gateway, "_pending_reason", "")
    closed = getattr(gateway, "_closed_output", None)
    if closed is not None:
        return int(closed.get("code", 1000)), reason
    code, _ = await gateway.close_code()
    return code, reason


@pytest.fixture
def site(acme: Account) -> Site:
    return services.create_site(acme, name="Berlin")


@pytest.fixture
def token(site: Site) -> str:
    return services.issue_gateway_token(site).secret


@pytest.fixture
def globex_site(globex: Account) -> Site:
    return services.create_site(globex, name="Globex HQ")


@pytest.fixture
def globex_token(globex_site: Site) -> str:
    return services.issue_gateway_token(globex_site).secret


@pytest.fixture
async def connected(token: str) -> AsyncIterator[tuple[Gateway, dict[str, Any]]]:
    gateway, init = await open_gateway(token)
    assert init is not None
    yield gateway, init
    await gateway.disconnect()


db = database_sync_to_async


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """Each test runs its own event loop; channels_redis binds locks to the loop that first used
    the layer, so every test gets a new layer instance."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()
