"""The gateway websocket endpoint: authentication, parameters, init, presence, heartbeats."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, Token
from agents.protocol import CloseCode
from gateways import services
from gateways.models import Gateway
from policies.models import Site

from .conftest import db, new_key, open_gateway, refused, ws_path

pytestmark = pytest.mark.django_db(transaction=True)


async def test_it_refuses_a_missing_token(token: str) -> None:
    code, reason = await refused(None)
    assert code == CloseCode.UNAUTHORIZED
    assert "Authorization" in reason


async def test_it_refuses_a_non_bearer_header(token: str) -> None:
    code, _ = await refused(None, authorization=f"Basic {token}")
    assert code == CloseCode.UNAUTHORIZED


async def test_it_refuses_an_invalid_token(token: str) -> None:
    code, _ = await refused(token[:-3] + "xyz")
    assert code == CloseCode.UNAUTHORIZED
    code, _ = await refused("garbage")
    assert code == CloseCode.UNAUTHORIZED


async def test_it_refuses_a_revoked_token(site: Site) -> None:
    issued = await db(services.issue_gateway_token)(site)
    await db(account_services.revoke_token)(issued.token)
    code, _ = await refused(issued.secret)
    assert code == CloseCode.UNAUTHORIZED


async def test_it_refuses_an_expired_token(site: Site) -> None:
    issued = await db(services.issue_gateway_token)(site)
    await db(
        lambda: Token.objects.filter(pk=issued.token.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    )()
    code, _ = await refused(issued.secret)
    assert code == CloseCode.UNAUTHORIZED


async def test_it_refuses_a_token_of_another_kind(acme: Account, alice: Actor) -> None:
    issued = await db(account_services.create_token)(acme, kind=Token.Kind.CLIENT, actor=alice)
    code, _ = await refused(issued.secret)
    assert code == CloseCode.UNAUTHORIZED
    assert not await db(lambda: Gateway.objects.for_account(acme).exists())()


async def test_it_refuses_a_disabled_account(acme: Account, token: str) -> None:
    await db(account_services.disable_account)(acme)
    code, reason = await refused(token)
    assert code == CloseCode.ACCOUNT_DISABLED
    assert "disabled" in reason


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"external_id": None}, "external_id"),
        ({"name": ""}, "name"),
        ({"public_key": "not-a-key"}, "public_key"),
        ({"public_key": "AAAA"}, "public_key"),
        ({"version": None}, "version"),
        ({"endpoint": "no-port"}, "endpoint"),
        ({"name": "x" * 300}, "name"),
    ],
)
async def test_it_refuses_bad_parameters(token: str, params: dict[str, Any], field: str) -> None:
    code, reason = await refused(token, ws_path(**params))
    assert code == CloseCode.BAD_PARAMETERS
    assert field in reason


async def test_it_refuses_an_incompatible_protocol_version(token: str) -> None:
    code, reason = await refused(token, ws_path(protocol="2"))
    assert code == CloseCode.INCOMPATIBLE_VERSION
    assert "1" in reason


async def test_init_carries_the_gateway_addresses_and_creates_the_gateway(
    acme: Account, site: Site, token: str
) -> None:
    key = new_key()
    path = ws_path(public_key=key, endpoint="198.51.100.1:51821")
    gateway, init = await open_gateway(token, path)
    assert init is not None
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert init["gateway_id"] == str(row.pk)
    assert init["ipv4"] == row.ipv4 and init["ipv6"] == row.ipv6
    assert init["ipv4"].startswith("100.") and init["ipv6"].startswith("fd00:2021:1111:")
    assert init["static_peers"] == [] and init["authorizations"] == [] and init["relays"] == []
    assert row.site_id == site.pk and row.public_key == key and row.online
    assert row.last_seen_remote_ip == "203.0.113.7" and row.last_seen_version == "0.1.0"
    assert row.last_seen_endpoint == "198.51.100.1:51821"
    await gateway.disconnect()
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert not row.online


async def test_a_reconnect_keeps_the_gateway_and_its_addresses(acme: Account, token: str) -> None:
    first, init1 = await open_gateway(token, ws_path(external_id="gw-a"))
    await first.disconnect()
    second, init2 = await open_gateway(token, ws_path(external_id="gw-a", name="renamed"))
    assert init1 and init2 and init1["gateway_id"] == init2["gateway_id"]
    assert init1["ipv4"] == init2["ipv4"]
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert row.name == "renamed"
    assert row.last_seen_endpoint == "203.0.113.7:51820"  # default endpoint
    await second.disconnect()


async def test_the_newest_connection_wins_and_the_older_gets_replaced(
    acme: Account, token: str
) -> None:
    path_key = new_key()
    older, _ = await open_gateway(token, ws_path(external_id="gw-dup", public_key=path_key))
    newer, init = await open_gateway(token, ws_path(external_id="gw-dup", public_key=path_key))
    assert init is not None
    code, _ = await older.close_code()
    assert code == CloseCode.REPLACED
    # The older socket's close does not take the gateway offline: the newer one holds it.
    await older.disconnect()
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert row.online
    await newer.send({"type": "heartbeat"})
    assert (await newer.receive())["type"] == "heartbeat_reply"
    await newer.disconnect()


async def test_heartbeats_are_answered_and_bad_frames_get_an_error(connected: Any) -> None:
    gateway, _ = connected
    await gateway.send({"type": "heartbeat"})
    reply = await gateway.receive()
    assert reply["type"] == "heartbeat_reply" and len(reply["state_digest"]) == 64
    await gateway.ws.send_to(text_data="{not json")
    error = await gateway.receive()
    assert error["type"] == "error" and error["code"] == "invalid_message"
    await gateway.send({"type": "init"})  # a portal-only message
    assert (await gateway.receive())["code"] == "invalid_message"
    await gateway.send({"type": "heartbeat"})  # the socket is still usable
    assert (await gateway.receive())["state_digest"] == reply["state_digest"]


async def test_a_silent_gateway_is_dropped_after_the_heartbeat_timeout(
    acme: Account, token: str, settings: Any
) -> None:
    settings.FZ_HEARTBEAT_TIMEOUT_S = 0.6
    gateway, init = await open_gateway(token)
    assert init is not None
    # Heartbeats keep it alive past one timeout ...
    for _ in range(3):
        await asyncio.sleep(0.3)
        await gateway.send({"type": "heartbeat"})
        assert (await gateway.receive())["type"] == "heartbeat_reply"
    # ... silence does not.
    code, _ = await gateway.close_code(timeout=3)
    assert code == CloseCode.HEARTBEAT_TIMEOUT
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert not row.online


async def test_charlies_token_never_connects_to_acmes_site(
    acme: Account, site: Site, globex_token: str
) -> None:
    gateway, init = await open_gateway(globex_token)
    assert init is not None
    globex = await db(lambda: Account.objects.get(slug="globex"))()
    row = await db(lambda: Gateway.objects.for_account(globex).get())()
    assert str(row.pk) == init["gateway_id"] and row.site_id != site.pk
    assert not await db(lambda: Gateway.objects.for_account(acme).exists())()
    await gateway.disconnect()


async def test_revoking_the_token_closes_its_connections(site: Site) -> None:
    issued = await db(services.issue_gateway_token)(site)
    gateway, init = await open_gateway(issued.secret)
    assert init is not None
    await db(account_services.revoke_token)(issued.token)
    code, _ = await gateway.close_code()
    assert code == CloseCode.UNAUTHORIZED


async def test_disabling_the_account_closes_its_gateways_but_not_others(
    acme: Account, token: str, globex_token: str
) -> None:
    ours, _ = await open_gateway(token)
    theirs, _ = await open_gateway(globex_token)
    await db(account_services.disable_account)(acme)
    code, _ = await ours.close_code()
    assert code == CloseCode.ACCOUNT_DISABLED
    assert await theirs.nothing()
    await theirs.disconnect()
