"""PortalClient against an in-process fake portal (real websockets, loopback, no Django)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import stat
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agents import protocol as p
from agents.gateway import portal
from agents.gateway import portal_state as ps
from agents.gateway.core import GatewayCore
from agents.logging import JsonFormatter, KeyValueFormatter
from agents.wireguard.device import Device

TOKEN = "fzg_0123456789abcdef_s3cr3tSECRETs3cr3t"


def b64key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def init_frame(*peers: p.StaticPeer, interval: float = 10.0) -> str:
    return p.dump(
        p.Init(
            gateway_id=uuid.uuid4(),
            ipv4=IPv4Address("100.64.0.1"),
            ipv6=IPv6Address("fd00:2021:1111::1"),
            static_peers=peers,
            heartbeat_interval_s=interval,
        )
    )


def peer(n: int) -> p.StaticPeer:
    res = p.Resource(uuid.uuid4(), "cidr", "10.0.0.0/24")
    return p.StaticPeer(
        b64key(), b64key(), IPv4Address(f"100.64.3.{n}"), IPv6Address(f"fd00:2021:1111::{n}"),
        (res,),
    )  # fmt: skip


Handler = Callable[[ServerConnection, int], Awaitable[None]]


class FakePortal:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections: list[dict[str, Any]] = []
        self.received: list[list[dict[str, Any]]] = []
        self.port = 0

    async def _serve(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        n = len(self.connections)
        self.connections.append(
            {
                "authorization": ws.request.headers.get("Authorization"),
                "path": urlsplit(ws.request.path).path,
                "query": {k: v[0] for k, v in parse_qs(urlsplit(ws.request.path).query).items()},
            }
        )
        self.received.append([])
        await self.handler(ws, n)

    async def recv(self, ws: ServerConnection, n: int) -> dict[str, Any]:
        frame = json.loads(await ws.recv())
        self.received[n].append(frame)
        return frame  # type: ignore[no-any-return]


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


def make_client(
    fake: FakePortal, tmp_path: Path, tokens: tuple[str, ...] = (TOKEN,), **kw: Any
) -> portal.PortalClient:
    options = portal.Options(
        portal_url=f"http://127.0.0.1:{fake.port}",
        tokens=tokens,
        external_id="gw-ext-1",
        name="gw-one",
        endpoint="10.201.0.1:51820",
        listen_port=51820,
        io_mode="single",
        state_dir=tmp_path,
        token_file=kw.pop("token_file", None),
    )
    core = portal.SharedCore(GatewayCore(Device(os.urandom(32))), lambda: 0.0)
    backoff = ps.Backoff(base=0.02, cap=0.1)
    return portal.PortalClient(options, b64key(), core, backoff=backoff, **kw)


async def run_until(client: portal.PortalClient, done: asyncio.Event, timeout: float = 5) -> int:
    task = asyncio.create_task(client.run())
    waiter = asyncio.create_task(done.wait())
    finished, _ = await asyncio.wait({task, waiter}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
    if task in finished:
        waiter.cancel()
        return task.result()
    client.stop_threadsafe()
    code = await asyncio.wait_for(task, 5)
    assert waiter in finished, "timed out"
    return code


async def test_it_connects_with_bearer_header_and_query_and_applies_init(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()
    sp = peer(5)

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(init_frame(sp))
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    inits: list[int] = []
    client = make_client(fake, tmp_path, on_init=lambda s: inits.append(s.peer_count))
    assert await run_until(client, done) == portal.EXIT_OK
    conn = fake.connections[0]
    assert conn["authorization"] == f"Bearer {TOKEN}"
    assert conn["path"] == "/gateway/websocket"
    assert conn["query"] == {
        "external_id": "gw-ext-1",
        "name": "gw-one",
        "public_key": client.public_key,
        "version": portal.AGENT_VERSION,
        "protocol": "1",
        "endpoint": "10.201.0.1:51820",
    }
    assert TOKEN not in json.dumps(conn["query"])
    assert inits == [1]
    assert client.core.core.firewall.has_peer(base64.b64decode(sp.public_key))


async def test_it_acks_create_authorization_and_reports_dns_as_failed(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()
    ok_id, dns_id = uuid.uuid4(), uuid.uuid4()
    replies: list[dict[str, Any]] = []

    def auth(aid: uuid.UUID, rtype: p.ResourceType, address: str) -> str:
        resource = p.Resource(uuid.uuid4(), rtype, address)
        v4, v6 = IPv4Address("100.64.1.2"), IPv6Address("fd00:2021:1111::102")
        authorization = p.Authorization(aid, b64key(), b64key(), v4, v6, resource, None)
        return p.dump(p.CreateAuthorization(authorization))

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(init_frame())
        await ws.send(auth(ok_id, "ip", "10.0.0.5"))
        await ws.send(auth(dns_id, "dns", "app.example.com"))
        replies.append(await fake.recv(ws, n))
        replies.append(await fake.recv(ws, n))
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    await run_until(client, done)
    assert replies[0] == {"type": "authorization_ack", "authorization_id": str(ok_id)}
    assert replies[1]["type"] == "error"
    assert replies[1]["code"] == "authorization_failed"
    assert replies[1]["authorization_id"] == str(dns_id)


async def test_it_reconnects_after_three_unanswered_heartbeats(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(init_frame(interval=0.05))
        if n == 1:
            done.set()
        with pytest.raises(Exception):  # noqa: B017 - the agent aborts the socket
            while True:
                await fake.recv(ws, n)  # never answered

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    assert await run_until(client, done) == portal.EXIT_OK
    assert len(fake.connections) == 2
    beats = [f for f in fake.received[0] if f["type"] == "heartbeat"]
    assert len(beats) == 3


async def test_answered_heartbeats_keep_the_connection(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(init_frame(interval=0.02))
        for _ in range(6):
            assert (await fake.recv(ws, n))["type"] == "heartbeat"
            await ws.send(p.dump(p.HeartbeatReply()))
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    await run_until(client, done)
    assert len(fake.connections) == 1


@pytest.mark.parametrize("code", [4001, 4002, 4004, 4005, 4007])
async def test_it_stops_for_good_on_refusing_close_codes(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path, code: int
) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.close(code, "no")

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    assert await asyncio.wait_for(client.run(), 5) == portal.EXIT_REFUSED
    await asyncio.sleep(0.2)
    assert len(fake.connections) == 1


async def test_an_error_frame_naming_the_close_code_counts_when_the_code_is_lost(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(p.dump(p.Error("replaced", "another connection took over")))
        await ws.close(1000)

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    assert await asyncio.wait_for(client.run(), 5) == portal.EXIT_REFUSED
    assert len(fake.connections) == 1


async def test_reconnect_init_is_retain_only(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()
    a, b, c = peer(1), peer(2), peer(3)

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 0:
            await ws.send(init_frame(a, b))
            await ws.close(1001, "portal restarting")
            return
        await ws.send(init_frame(a, c))
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    await run_until(client, done)
    await asyncio.sleep(0.05)
    held = set(client.core.core.firewall.peers())
    assert held == {base64.b64decode(x.public_key) for x in (a, c)}
    assert client.inits == 2


async def test_a_rotated_token_is_stored_privately_and_used_on_the_next_connect(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()
    new_token = "fzg_fedcba9876543210_n3wn3wn3w"

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(init_frame())
        if n == 0:
            await ws.send(p.dump(p.TokenRotated(new_token, None)))
            await ws.close(1011, "bye")
            return
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    client = make_client(fake, tmp_path, token_file=token_file)
    await run_until(client, done)
    assert [c["authorization"] for c in fake.connections] == [
        f"Bearer {TOKEN}",
        f"Bearer {new_token}",
    ]
    assert token_file.read_text().strip() == new_token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600


async def test_a_refused_rotated_token_falls_back_to_the_configured_one(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    done = asyncio.Event()

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 0:
            await ws.close(4001, "unauthorized")
            return
        await ws.send(init_frame())
        done.set()
        await ws.wait_closed()

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path, tokens=("fzg_old_rotated", TOKEN))
    assert await run_until(client, done) == portal.EXIT_OK
    assert fake.connections[1]["authorization"] == f"Bearer {TOKEN}"


async def test_an_unreachable_portal_is_retried_with_backoff(tmp_path: Path) -> None:
    fake = FakePortal(lambda ws, n: asyncio.sleep(0))
    fake.port = 9  # discard port on loopback: connection refused
    client = make_client(fake, tmp_path)
    task = asyncio.create_task(client.run())
    await asyncio.sleep(0.5)
    assert not task.done()
    assert client.backoff.attempt >= 3
    client.stop_threadsafe()
    assert await asyncio.wait_for(task, 5) == portal.EXIT_OK


# --- options and logs --------------------------------------------------------------------------


def test_websocket_url_accepts_http_and_ws_bases() -> None:
    assert portal.websocket_url("https://portal.example.com", {"a": "1"}) == (
        "wss://portal.example.com/gateway/websocket?a=1"
    )
    assert (
        portal.websocket_url("ws://127.0.0.1:8000/", {}) == "ws://127.0.0.1:8000/gateway/websocket"
    )
    with pytest.raises(portal.ConfigurationError):
        portal.websocket_url("ftp://x", {})


def test_token_comes_from_file_then_flag_then_env(tmp_path: Path) -> None:
    parser = portal.build_parser()
    base = ["--portal-url", "http://x", "--state-dir", str(tmp_path), "--external-id", "e"]
    env = {"FIREZONE_TOKEN": "from-env"}
    assert portal.options_from_args(parser.parse_args(base), env).tokens == ("from-env",)
    args = parser.parse_args([*base, "--token", "from-flag"])
    assert portal.options_from_args(args, env).tokens == ("from-flag",)
    (tmp_path / "t").write_text("from-file\n")
    args = parser.parse_args([*base, "--token", "from-flag", "--token-file", str(tmp_path / "t")])
    assert portal.options_from_args(args, env).tokens == ("from-file",)
    with pytest.raises(portal.ConfigurationError, match="no token"):
        portal.options_from_args(parser.parse_args(base), {})


def test_options_reject_bad_endpoints_and_never_show_the_token(tmp_path: Path) -> None:
    parser = portal.build_parser()
    base = ["--portal-url", "http://x", "--state-dir", str(tmp_path), "--token", TOKEN]
    with pytest.raises(portal.ConfigurationError, match="endpoint"):
        portal.options_from_args(parser.parse_args([*base, "--endpoint", "1.2.3.4"]), {})
    options = portal.options_from_args(parser.parse_args([*base, "--endpoint", "[::1]:5"]), {})
    assert TOKEN not in repr(options)
    assert len(options.external_id) == 64  # derived from the machine id, or stored random id


def test_the_private_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    first = portal.load_or_create_private_key(tmp_path / "state")
    again = portal.load_or_create_private_key(tmp_path / "state")
    assert first == again and len(first) == 32
    assert stat.S_IMODE((tmp_path / "state" / "private_key").stat().st_mode) == 0o600


@pytest.mark.parametrize("formatter", [KeyValueFormatter(), JsonFormatter()])
def test_logs_never_contain_tokens_or_keys(formatter: logging.Formatter) -> None:
    psk = b64key()
    record = logging.makeLogRecord(
        {
            "name": "agents.gateway.portal",
            "levelname": "INFO",
            "msg": "connecting with %s",
            "args": (f"Authorization: Bearer {TOKEN}",),
            "token": TOKEN,
            "preshared_key": psk,
            "url": f"http://portal/?t={TOKEN}",
            "peer": "abc",
        }
    )
    text = formatter.format(record)
    assert TOKEN not in text and "s3cr3t" not in text and psk not in text
    assert "peer" in text and "abc" in text


def test_json_logs_are_one_object_per_line_with_fields() -> None:
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "WARNING", "msg": "closed", "close_code": 4006}
    )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["level"] == "warning" and doc["msg"] == "closed" and doc["close_code"] == 4006


async def test_expired_flows_are_dropped_while_the_portal_is_unreachable(
    make_portal: Callable[[Handler], Awaitable[FakePortal]], tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    client_key = b64key()
    resource = p.Resource(uuid.uuid4(), "ip", "10.0.0.5")
    expires = datetime.now(UTC) + timedelta(seconds=0.3)
    auth = p.Authorization(
        uuid.uuid4(), client_key, b64key(), IPv4Address("100.64.1.2"),
        IPv6Address("fd00:2021:1111::102"), resource, expires,
    )  # fmt: skip
    init = p.Init(
        uuid.uuid4(), IPv4Address("100.64.0.1"), IPv6Address("fd00:2021:1111::1"),
        authorizations=(auth,), heartbeat_interval_s=0.05,
    )  # fmt: skip

    async def handler(ws: ServerConnection, n: int) -> None:
        if n == 0:
            await ws.send(p.dump(init))
        await ws.close(1011, "portal broken")  # and every later attempt fails

    fake = await make_portal(handler)
    client = make_client(fake, tmp_path)
    task = asyncio.create_task(client.run())
    firewall = client.core.core.firewall
    key = base64.b64decode(client_key)
    await asyncio.sleep(0.15)
    assert firewall.has_peer(key)
    for _ in range(60):  # the expiry check runs at least once a second
        await asyncio.sleep(0.05)
        if not firewall.has_peer(key):
            break
    assert not firewall.has_peer(key)
    assert len(fake.connections) >= 2  # it kept retrying meanwhile
    client.stop_threadsafe()
    assert await asyncio.wait_for(task, 5) == portal.EXIT_OK
