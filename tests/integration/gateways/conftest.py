"""Helpers for the gateway endpoint tests: sites, tokens, and websocket connections through the
real ASGI application (Channels routing, Redis channel layer, PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, Group
from gateways import services
from gateways.models import Authorization, ClientDevice
from policies import services as policy_services
from policies.models import Policy, Resource, Site


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


# --- access and flows ------------------------------------------------------------------------


def dynamic_device(actor: Actor) -> ClientDevice:
    addresses = services.allocate_tunnel_address(actor.account_id)
    return ClientDevice.objects.create(
        account_id=actor.account_id,
        actor=actor,
        external_id=str(uuid.uuid4()),
        name="laptop",
        public_key=new_key(),
        address=addresses.slot,
        ipv4=addresses.ipv4,
        ipv6=addresses.ipv6,
    )


def authorize(policy: Policy, actor: Actor, gateway_id: str | None) -> Authorization:
    resource = policy.resource
    return Authorization.objects.create(
        account_id=actor.account_id,
        actor=actor,
        device=dynamic_device(actor),
        resource=resource,
        policy=policy,
        gateway_id=gateway_id,
        actor_email=actor.email,
        resource_name=resource.name,
        resource_address=resource.address,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def setup_access(
    acme: Account, site: Site, bob: Actor, cidr: str = "10.1.0.0/24"
) -> tuple[Group, Resource, Policy]:
    group = account_services.create_group(acme, name="Engineering")
    account_services.add_member(group, bob)
    resource = policy_services.create_resource(
        acme,
        name="LAN",
        kind="cidr",
        address=cidr,
        site=site,
        filters=[{"protocol": "tcp", "ports": ["22"]}],
    )
    policy = policy_services.create_policy(acme, group=group, resource=resource)
    return group, resource, policy


@dataclass
class Flow:
    """A connected gateway holding one authorization (made by :func:`gateway_with_flow`)."""

    gateway: Gateway
    init: dict[str, Any]
    group: Group
    resource: Resource
    policy: Policy
    auth: Authorization


async def gateway_with_flow(acme: Account, site: Site, actor: Actor, token: str) -> Flow:
    """Give ``actor`` access to a cidr resource of ``site``, connect a gateway with ``token`` and
    authorize one flow of the actor on it."""
    group, resource, policy = await db(setup_access)(acme, site, actor)
    gateway, init = await open_gateway(token)
    assert init is not None
    auth = await db(authorize)(policy, actor, init["gateway_id"])
    return Flow(gateway, init, group, resource, policy, auth)


async def is_revoked(auth: Authorization) -> bool:
    row = await db(Authorization.objects.get)(pk=auth.pk)
    return row.revoked_at is not None


@pytest.fixture(autouse=True)
def fresh_channel_layer() -> Iterator[None]:
    """Each test runs its own event loop; channels_redis binds locks to the loop that first used
    the layer, so every test gets a new layer instance."""
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(autouse=True)
def digests_finished() -> Iterator[None]:
    """The consumers' digest thread keeps its own database connection (as a worker thread in
    production does): after each test, wait for a digest still running (one thread, FIFO) and
    close that connection, or the test database could not be dropped at the end."""
    yield
    from django.db import connections

    from gateways import consumers

    consumers._DIGEST_EXECUTOR.submit(connections.close_all).result(timeout=30)
