"""First-run friction (issue 17) through the real gateway websocket: a device registered before
any gateway gets a complete config once one exists, and the gateway's ``peer_stats`` reports
reach the device page and the overview."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from django.test import Client
from django.urls import reverse

from accounts.models import Account, Actor
from gateways import configs, services
from gateways.models import ClientDevice, Gateway, StaticDeviceAssignment
from policies.models import Site

from .conftest import db, open_gateway, ws_path
from .test_static_devices import grant, parse_config

pytestmark = pytest.mark.django_db(transaction=True)


def public_of(private_b64: str) -> str:
    key = X25519PrivateKey.from_private_bytes(base64.b64decode(private_b64))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


async def test_a_device_registered_before_the_gateway_gets_a_complete_config_with_a_new_key(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    first = await db(services.register_static_device)(bob, name="phone")
    assert parse_config(first.config.text)[1] == []  # no gateway: no peer
    old_key = first.device.public_key
    gateway, init = await open_gateway(token)
    assert init is not None
    assert [p["public_key"] for p in init["static_peers"]] == [old_key]

    again = await db(services.reissue_static_device_key)(first.device)
    assert again.private_key is not None
    interface, peers = parse_config(again.config.text)
    assert interface["PrivateKey"] == again.private_key
    assert public_of(again.private_key) == again.device.public_key != old_key
    assert len(peers) == 1
    gateway_row = await db(Gateway.objects.get)(pk=init["gateway_id"])
    assert peers[0]["PublicKey"] == gateway_row.public_key
    assert peers[0]["Endpoint"] == "203.0.113.7:51820"
    assert peers[0]["AllowedIPs"] == "10.1.0.0/24"
    # The gateway drops the old key and gets the new one, with the same preshared key.
    removed = await gateway.receive_type("remove_static_peer")
    assert removed["public_key"] == old_key
    added = await gateway.receive_type("add_static_peer")
    assert added["peer"]["public_key"] == again.device.public_key
    assert added["peer"]["preshared_key"] == peers[0]["PresharedKey"]
    assert again.config.version > first.config.version
    # A later download has no private key, and the old key is gone for good.
    later = await db(configs.device_config)(again.device)
    assert "PrivateKey = <your private key>" in later.text
    assert not await db(
        lambda: ClientDevice.objects.for_account(acme).filter(public_key=old_key).exists()
    )()
    await gateway.disconnect()


async def test_the_first_config_of_a_device_is_complete_when_the_gateway_exists(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    gateway, _ = await open_gateway(token)
    registered = await db(services.register_static_device)(bob, name="phone")
    interface, peers = parse_config(registered.config.text)
    assert interface["PrivateKey"] == registered.private_key and len(peers) == 1
    await gateway.disconnect()


def _stat(key: str, rx: int, tx: int, when: str | None, endpoint: str | None) -> dict[str, object]:
    return {
        "public_key": key,
        "last_handshake_at": when,
        "rx_bytes": rx,
        "tx_bytes": tx,
        "endpoint": endpoint,
    }


async def test_peer_stats_are_stored_for_the_gateways_own_devices_only(
    acme: Account,
    site: Site,
    alice: Actor,
    bob: Actor,
    token: str,
    globex: Account,
    charlie: Actor,
    globex_token: str,
    globex_site: Site,
) -> None:
    await db(grant)(acme, site, bob)
    await db(grant)(globex, globex_site, charlie)
    gateway, _ = await open_gateway(token)
    other, _ = await open_gateway(globex_token, ws_path(external_id="gw-globex"))
    bobs = (await db(services.register_static_device)(bob, name="phone")).device
    charlies = (await db(services.register_static_device)(charlie, name="phone")).device
    await gateway.receive_type("add_static_peer")
    await other.receive_type("add_static_peer")
    when = "2026-12-04T10:00:00Z"
    # acme's gateway reports bob's device, and (wrongly) globex's device.
    await gateway.send(
        {
            "type": "peer_stats",
            "peers": [
                _stat(bobs.public_key, 4096, 8192, when, "198.51.100.20:41000"),
                _stat(charlies.public_key, 1, 1, when, "192.0.2.99:1"),
            ],
        }
    )
    await gateway.send({"type": "heartbeat"})
    await gateway.receive_type("heartbeat_reply")  # the frames before it are handled

    row = await db(lambda: StaticDeviceAssignment.objects.get(device=bobs))()
    assert (row.rx_bytes, row.tx_bytes, row.peer_endpoint) == (4096, 8192, "198.51.100.20:41000")
    assert row.last_handshake_at == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    device = await db(ClientDevice.objects.get)(pk=bobs.pk)
    assert device.last_seen_at == row.last_handshake_at
    assert device.last_seen_remote_ip == "198.51.100.20"
    untouched = await db(lambda: StaticDeviceAssignment.objects.get(device=charlies))()
    assert untouched.stats_at is None and untouched.rx_bytes == 0
    assert (await db(ClientDevice.objects.get)(pk=charlies.pk)).last_seen_at is None

    # A malformed report is answered with an error and changes nothing.
    await gateway.send({"type": "peer_stats", "peers": [_stat(bobs.public_key, -5, 0, None, None)]})
    error = await gateway.receive_type("error")
    assert error["code"] == "invalid_message" and "rx_bytes" in error["reason"]
    assert (await db(lambda: StaticDeviceAssignment.objects.get(device=bobs))()).rx_bytes == 4096

    # The device page and the overview show the activity (and which gateway).
    def pages() -> tuple[str, str]:
        client = Client()
        client.force_login(alice.user)
        detail = client.get(reverse("device_detail", args=[bobs.pk])).content.decode()
        overview = client.get(reverse("overview")).content.decode()
        return detail, overview

    detail, overview = await db(pages)()
    activity = detail.split('data-testid="device-activity"', 1)[1].split("</table>", 1)[0]
    assert "gw-1" in activity and "4.0\xa0KB" in activity and "8.0\xa0KB" in activity
    assert "198.51.100.20:41000" in activity
    assert "Last seen</dt><dd>2026-12-04 10:00" in detail
    static = overview.split('data-testid="static-activity"', 1)[1].split("</table>", 1)[0]
    assert f'data-device="{bobs.pk}"' in static and "gw-1" in static
    assert f'data-device="{charlies.pk}"' not in static

    # A new key starts from nothing: the old key's activity is not shown for it.
    await db(services.reissue_static_device_key)(bobs)
    row = await db(lambda: StaticDeviceAssignment.objects.get(device=bobs))()
    assert row.last_handshake_at is None and row.rx_bytes == row.tx_bytes == 0
    await gateway.disconnect()
    await other.disconnect()
