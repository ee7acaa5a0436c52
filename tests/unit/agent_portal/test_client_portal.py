"""The client's PortalClient against an in-process fake portal (real websockets, loopback, no
Django): connect parameters, init -> routes, first packet -> request_authorization -> the grant
installs the gateway, refusal close codes stop the client with a clear message, and requests
while the portal is unreachable fail at once."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agents import protocol as p
from agents.client import portal
from agents.gateway import portal_state as gps
from agents.net import build
from agents.wireguard.device import Device

TOKEN = "fzc_0123456789abcdef_s3cr3tSECRETs3cr3t"
C4, C6 = IPv4Address("100.64.0.9"), IPv6Address("fd00:2021:1111::9")
RES = p.ClientResource(uuid.uuid4(), "cidr", "10.0.0.0/24", "web", uuid.uuid4())


def b64key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def init_frame() -> str:
    return p.dump(p.ClientInit(client_id=uuid.uuid4(), ipv4=C4, ipv6=C6, resources=(RES,)))


Handler = Callable[[ServerConnection, "FakePortal"], Awaitable[None]]


class FakePortal:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[dict[str, Any]] = []
        self.port = 0

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = {k: v[0] for k, v in parse_qs(urlsplit(ws.request.path).query).items()}
        self.connections.append(
            {
                "authorization": ws.request.headers.get("Authorization"),
                "path": urlsplit(ws.request.path).path,
                "query": query,
            }
        )
        await self.handler(ws, self)


@pytest.fixture
async def make_portal() -> AsyncIterator[Callable[[Handler], Awaitable[FakePortal]]]:
    servers = []

    async def start(handler: Handler) -> FakePortal:
        fake = FakePortal(handler)
        server = await serve(fake._serve, "127.0.0.1", 0)
        servers.append(server)
        fake.port = server.sockets[0].getsockname()[1]
        return fake

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def make_client(fake: FakePortal | None, tmp_path: Path) -> portal.PortalClient:
    port = fake.port if fake is not None else 9  # discard: nothing listens
    options = portal.Options(
        portal_url=f"http://127.0.0.1:{port}",
        token=TOKEN,
        token_file=tmp_path / "token",
        external_id="cl-ext-1",
        name="laptop",
        state_dir=tmp_path,
        io_mode="single",
    )
    engine = portal.DynamicClient(Device(os.urandom(32)), lambda: 0.0)
    return portal.PortalClient(options, b64key(), engine, backoff=gps.Backoff(base=0.02, cap=0.1))


async def run_until(client: portal.PortalClient, done: asyncio.Event, timeout: float = 5) -> int:
    task = asyncio.create_task(client.run())
    waiter = asyncio.create_task(done.wait())
    finished, _ = await asyncio.wait(
        {task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    if task in finished:
        waiter.cancel()
        return task.result()
    client.stop_threadsafe()
    code = await asyncio.wait_for(task, 5)
    assert waiter in finished, "timed out"
    return code


def ping() -> bytes:
    return build.icmp_echo(str(C4), "10.0.0.5", ident=1, seq=1)


async def test_connects_requests_on_first_packet_and_installs_the_granted_gateway(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()
    gateway_key = b64key()
    requests: list[dict[str, Any]] = []

    async def handler(ws: ServerConnection, fake: FakePortal) -> None:
        await ws.send(init_frame())
        frame = json.loads(await ws.recv())
        requests.append(frame)
        await ws.send(
            p.dump(
                p.AuthorizationCreated(
                    authorization_id=uuid.uuid4(),
                    resource_id=uuid.UUID(frame["resource_id"]),
                    gateway_id=uuid.uuid4(),
                    gateway_public_key=gateway_key,
                    gateway_endpoints=("192.0.2.1:51820",),
                    preshared_key=b64key(),
                    gateway_ipv4=IPv4Address("100.64.0.1"),
                    gateway_ipv6=IPv6Address("fd00:2021:1111::1"),
                    client_ipv4=C4,
                    client_ipv6=C6,
                    expires_at=None,
                )
            )
        )
        await asyncio.sleep(0.2)
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    routes: list[tuple[Any, ...]] = []
    client.engine.set_routes = routes.append
    inits = asyncio.Event()
    client.on_init = inits.set
    task = asyncio.create_task(run_until(client, done))
    await asyncio.wait_for(inits.wait(), 5)
    assert routes == [(ip_network("10.0.0.0/24"),)]
    await asyncio.sleep(0.05)  # the session loop takes the request queue after init
    out = client.engine.handle_tun_input(ping(), 1.0)
    assert not out.tun and not out.udp, "held until the tunnel is up"
    assert await task == portal.EXIT_OK
    conn = fake.connections[0]
    assert conn["authorization"] == f"Bearer {TOKEN}"
    assert conn["path"] == "/client/websocket"
    assert conn["query"] == {
        "external_id": "cl-ext-1",
        "name": "laptop",
        "public_key": client.public_key,
        "version": portal.CLIENT_VERSION,
        "protocol": "1",
    }
    assert requests == [
        {
            "type": "request_authorization",
            "resource_id": str(RES.id),
            "connected_gateway_ids": [],
            "failed_gateway_ids": [],
        }
    ]
    assert client.engine.device.has_peer(base64.b64decode(gateway_key))
    # The held packet was sealed (handshake initiation queued for the IO loop).
    assert client.engine.poll_timeout() == 0.0
    assert client.engine.handle_timeout(1.1).udp


@pytest.mark.parametrize("code", [int(p.CloseCode.UNAUTHORIZED), int(p.CloseCode.DEVICE_DISABLED)])
async def test_a_refused_token_stops_the_client_with_a_clear_message(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path, code: int
) -> None:
    async def handler(ws: ServerConnection, fake: FakePortal) -> None:
        await ws.close(code, "no")

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    assert await asyncio.wait_for(client.run(), 5) == portal.EXIT_REFUSED
    await asyncio.sleep(0.2)
    assert len(fake.connections) == 1, "no retry"
    assert client.refusal is not None
    if code == p.CloseCode.UNAUTHORIZED:
        assert "sign in again" in client.refusal


async def test_heartbeat_timeout_close_is_retried(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()

    async def handler(ws: ServerConnection, fake: FakePortal) -> None:
        if len(fake.connections) < 3:
            await ws.close(int(p.CloseCode.HEARTBEAT_TIMEOUT), "quiet")
            return
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    assert await run_until(client, done) == portal.EXIT_OK
    assert len(fake.connections) == 3


async def test_requests_while_the_portal_is_unreachable_fail_at_once(tmp_path: Path) -> None:
    client = make_client(None, tmp_path)
    client.engine.portal_event(
        lambda st, now: st.on_init(C4, C6, [portal.client_resource(RES)], now)
    )
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.1)
    client.engine.handle_tun_input(ping(), 1.0)
    await asyncio.sleep(0.6)
    assert client.engine.poll_timeout() == 0.0
    out = client.engine.handle_timeout(1.5)
    assert len(out.tun) == 1, "an ICMP unreachable for the held packet"
    client.stop_threadsafe()
    assert await asyncio.wait_for(task, 5) == portal.EXIT_OK


def test_options_read_the_token_file_and_never_show_it(tmp_path: Path) -> None:
    import argparse

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = argparse.Namespace(
        portal_url="https://portal.example.com",
        token_file=token_file,
        external_id="x",
        name="n",
        state_dir=tmp_path,
        io_mode="single",
        ifname=None,
    )
    options = portal.options_from_args(args)
    assert options.token == TOKEN
    assert TOKEN not in repr(options)
    args.token_file = tmp_path / "missing"
    with pytest.raises(portal.ConfigurationError, match="sign-in"):
        portal.options_from_args(args)
