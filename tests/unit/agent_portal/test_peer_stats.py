"""``peer_stats``: the wire message, and the gateway agent reporting its static peers' activity
(real WireGuard devices in memory; the portal side is a real websocket on loopback)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agents import protocol as p
from agents.net import build
from agents.wireguard.device import Device
from tests.unit.agent_portal.test_portal_client import (
    FakePortal,
    make_client,
    run_until,
)

CL_EP = ("198.51.100.7", 40000)
GW_EP = ("192.0.2.1", 51820)
C4, WEB = "100.64.3.9", "10.0.0.5"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_peer_stats_round_trips_and_only_a_gateway_may_send_it() -> None:
    key = b64(os.urandom(32))
    message = p.PeerStats(
        (
            p.PeerStat(key, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), 1234, 5678, "[::1]:4000"),
            p.PeerStat(b64(os.urandom(32)), None, 0, 0, None),
        )
    )
    text = p.dump(message)
    assert p.parse_message(text, sender="gateway") == message
    assert json.loads(text)["peers"][0]["last_handshake_at"] == "2026-01-02T03:04:05Z"
    with pytest.raises(p.ProtocolError, match="unknown message type 'peer_stats' from the portal"):
        p.parse_message(text, sender="portal")


@pytest.mark.parametrize(
    ("field", "value"),
    [("rx_bytes", -1), ("tx_bytes", True), ("rx_bytes", 2**63), ("tx_bytes", "12")],
)
def test_peer_stats_refuses_bad_counters(field: str, value: object) -> None:
    peer = {
        "public_key": b64(os.urandom(32)),
        "last_handshake_at": None,
        "rx_bytes": 1,
        "tx_bytes": 1,
        field: value,
    }
    with pytest.raises(p.ProtocolError, match=field):
        p.parse_message(json.dumps({"type": "peer_stats", "peers": [peer]}), sender="gateway")


def _init(client_key: bytes, interval: float = 10.0) -> p.Init:
    resource = p.Resource(uuid.uuid4(), "cidr", "10.0.0.0/24")
    static = p.StaticPeer(
        b64(client_key), b64(os.urandom(32)), IPv4Address(C4), IPv6Address("fd00:2021:1111::9"),
        (resource,),
    )  # fmt: skip
    return p.Init(
        gateway_id=uuid.uuid4(),
        ipv4=IPv4Address("100.64.0.1"),
        ipv6=IPv6Address("fd00:2021:1111::1"),
        static_peers=(static,),
        heartbeat_interval_s=interval,
    )


def _talk(client: object, init: p.Init, device: Device, now: float) -> None:
    """The static device handshakes with the gateway and sends one allowed packet."""
    from agents.gateway.portal import PortalClient

    assert isinstance(client, PortalClient)
    gw_pub = client.core.core.device.public_key
    psk = base64.b64decode(init.static_peers[0].preshared_key)
    device.add_peer(gw_pub, preshared_key=psk, endpoint=GW_EP)
    (hello,) = device.encapsulate(gw_pub, build.tcp(C4, WEB, 1, 443, b"x" * 100), now)
    (resp,) = client.core.handle_network_input(hello.data, CL_EP, now).udp
    for t in device.decapsulate(resp.data, GW_EP, now).transmits:
        client.core.handle_network_input(t.data, CL_EP, now)
    (answer,) = client.core.handle_tun_input(build.tcp(WEB, C4, 443, 1), now).udp
    assert device.decapsulate(answer.data, GW_EP, now).packet is not None


def test_the_agent_reports_a_static_peers_handshake_bytes_and_endpoint_once_per_change(
    tmp_path: Path,
) -> None:
    fake = FakePortal(lambda ws, n: asyncio.sleep(0))
    client = make_client(fake, tmp_path)
    device = Device(os.urandom(32))
    init = _init(device.public_key)
    client.handle(init)
    # Known but silent: reported once as never seen, then not again.
    (silent,) = client.peer_stats_report().peers  # type: ignore[union-attr]
    assert silent.last_handshake_at is None and silent.rx_bytes == silent.tx_bytes == 0
    assert silent.endpoint is None
    assert client.peer_stats_report() is None

    _talk(client, init, device, now=1000.0)
    report = client.peer_stats_report()
    assert report is not None
    (stat,) = report.peers
    assert stat.public_key == b64(device.public_key)
    assert stat.last_handshake_at == datetime.fromtimestamp(1000, UTC)  # wall offset 0
    assert stat.rx_bytes > 100 and stat.tx_bytes > 0
    assert stat.endpoint == "198.51.100.7:40000"
    assert client.peer_stats_report() is None  # nothing changed since
    # A peer the portal did not name as static is never reported.
    stranger = Device(os.urandom(32))
    client.core.core.add_peer(stranger.public_key, None, "100.64.3.10")
    assert client.peer_stats_report() is None


async def test_the_agent_sends_peer_stats_with_its_heartbeat(tmp_path: Path) -> None:
    device = Device(os.urandom(32))
    init = _init(device.public_key, interval=0.05)
    got = asyncio.Event()
    frames: list[dict[str, object]] = []

    async def handler(ws: ServerConnection, n: int) -> None:
        await ws.send(p.dump(init))
        async for raw in ws:
            frame = json.loads(raw)
            frames.append(frame)
            if frame["type"] == "heartbeat":
                await ws.send(p.dump(p.HeartbeatReply()))
            if frame["type"] == "peer_stats":
                got.set()

    fake = FakePortal(handler)
    async with serve(fake._serve, "127.0.0.1", 0) as server:
        fake.port = server.sockets[0].getsockname()[1]
        client = make_client(fake, tmp_path)
        client.handle(init)
        _talk(client, init, device, now=1000.0)
        await run_until(client, got)
    kinds = [f["type"] for f in frames]
    assert kinds.index("heartbeat") < kinds.index("peer_stats")
    stats = p.parse_message(json.dumps(frames[kinds.index("peer_stats")]), sender="gateway")
    assert isinstance(stats, p.PeerStats)
    assert [s.public_key for s in stats.peers] == [b64(device.public_key)]
    assert stats.peers[0].rx_bytes > 0


def test_the_agent_stops_reporting_to_a_portal_that_does_not_know_peer_stats(
    tmp_path: Path,
) -> None:
    fake = FakePortal(lambda ws, n: asyncio.sleep(0))
    client = make_client(fake, tmp_path)
    device = Device(os.urandom(32))
    init = _init(device.public_key)
    client.handle(init)
    assert client.peer_stats_report() is not None
    # What an older portal answers (its parser does not know the type).
    client.handle(
        p.Error("invalid_message", "type: unknown message type 'peer_stats' from the gateway")
    )
    _talk(client, init, device, now=1000.0)
    assert client.peer_stats_report() is None
    # Any other error leaves reporting on.
    other = make_client(fake, tmp_path)
    other.handle(init)
    other.handle(p.Error("invalid_message", "authorization_ack.authorization_id: not a UUID"))
    assert other.peer_stats_report() is not None
