"""Gateways per site are capped (close 4008, nothing written) and long-offline gateways are
removed with their tunnel addresses (issue 19 part 2)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from accounts.models import Account, Actor, Token
from agents.protocol import CloseCode
from gateways import services, tasks
from gateways.models import (
    Authorization,
    ClientDevice,
    Gateway,
    StaticDeviceAssignment,
    TunnelAddress,
)
from policies.models import Site

from .conftest import authorize, db, open_gateway, refused, setup_access, ws_path

pytestmark = pytest.mark.django_db(transaction=True)


def params(external_id: str) -> services.GatewayParams:
    return services.GatewayParams(
        external_id=external_id,
        name=external_id,
        public_key=services.generate_key_pair()[1],
        version="0.1.0",
    )


def connect(secret: str, external_id: str, channel: str | None = None) -> Gateway:
    return services.connect_gateway(
        secret=secret,
        params=params(external_id),
        remote_ip="203.0.113.7",
        channel_name=channel or f"test.{external_id}",
    )


def written(account: Account) -> tuple[int, int, Any]:
    token_use = list(Token.objects.for_account(account).values_list("last_used_at", flat=True))
    return (
        Gateway.objects.for_account(account).count(),
        TunnelAddress.objects.for_account(account).count(),
        token_use,
    )


# --- the cap -----------------------------------------------------------------------------------


async def test_a_new_gateway_beyond_the_cap_is_refused_with_4008_and_nothing_is_written(
    settings: Any, acme: Account, site: Site, token: str
) -> None:
    settings.FZ_MAX_GATEWAYS_PER_SITE = 2
    first, init1 = await open_gateway(token, ws_path(external_id="gw-a"))
    second, init2 = await open_gateway(token, ws_path(external_id="gw-b"))
    assert init1 is not None and init2 is not None
    before = await db(written)(acme)
    code, reason = await refused(token, ws_path(external_id="gw-c"))
    assert code == CloseCode.TOO_MANY_GATEWAYS == 4008
    assert "2 gateways" in reason and "FZ_MAX_GATEWAYS_PER_SITE" in reason
    # No gateway row, no tunnel address, not even the token's last use was written.
    assert await db(written)(acme) == before
    assert not await db(Gateway.objects.filter(external_id="gw-c").exists)()
    # A known external id still reconnects when the site is full.
    await first.disconnect()
    again, init = await open_gateway(token, ws_path(external_id="gw-a"))
    assert init is not None and init["gateway_id"] == init1["gateway_id"]
    await again.disconnect()
    await second.disconnect()
    assert not CloseCode.TOO_MANY_GATEWAYS.retry


async def test_the_cap_counts_per_site(
    settings: Any, acme: Account, site: Site, token: str
) -> None:
    settings.FZ_MAX_GATEWAYS_PER_SITE = 1
    await db(connect)(token, "gw-a")
    other_site, issued = await db(services.create_site_with_token)(acme, name="Other")
    gateway = await db(connect)(issued.secret, "gw-a")
    assert gateway.site_id == other_site.pk
    with pytest.raises(services.GatewayRefused) as exc:
        await db(connect)(token, "gw-b")
    assert exc.value.code == CloseCode.TOO_MANY_GATEWAYS


def test_concurrent_first_connects_cannot_both_take_the_last_place(
    settings: Any, acme: Account, site: Site, token: str
) -> None:
    settings.FZ_MAX_GATEWAYS_PER_SITE = 3
    connect(token, "gw-0")
    connect(token, "gw-1")
    # One token each: connects with the same token already queue on the token row.
    secrets = [services.issue_gateway_token(site).secret for _ in range(6)]
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def race(n: int) -> None:
        try:
            start.wait(5)
            connect(secrets[n], f"racer-{n}")
            outcomes.append("ok")
        except services.GatewayRefused as exc:
            outcomes.append(exc.code.name)
        finally:
            connection.close()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["TOO_MANY_GATEWAYS"] * 5 + ["ok"]
    assert Gateway.objects.filter(site=site).count() == 3
    assert TunnelAddress.objects.for_account(acme).count() == 3


def test_the_site_page_shows_how_many_gateways_of_the_maximum(
    settings: Any, alice: Actor, charlie: Actor, site: Site, token: str
) -> None:
    settings.FZ_MAX_GATEWAYS_PER_SITE = 2
    connect(token, "gw-a")
    client = Client()
    client.force_login(alice.user)  # type: ignore[attr-defined]
    page = client.get(f"/sites/{site.pk}/").content.decode()
    assert "1 of 2 gateways" in page and "the site is full" not in page
    connect(token, "gw-b")
    page = client.get(f"/sites/{site.pk}/").content.decode()
    assert "2 of 2 gateways" in page and "the site is full" in page
    other = Client()
    other.force_login(charlie.user)  # type: ignore[attr-defined]
    assert other.get(f"/sites/{site.pk}/").status_code == 404


# --- retention ---------------------------------------------------------------------------------


def offline_since(gateway: Gateway, when: datetime) -> None:
    services.disconnect_gateway(gateway.pk, gateway.channel_name)
    Gateway.objects.filter(pk=gateway.pk).update(last_seen_at=when)


def test_retention_removes_long_offline_gateways_and_keeps_online_and_recent_ones(
    acme: Account,
    globex: Account,
    site: Site,
    token: str,
    globex_token: str,
    bob: Actor,
) -> None:
    now = timezone.now()
    old = now - timedelta(days=31)
    stale = connect(token, "stale")
    recent = connect(token, "recent")
    online = connect(token, "online")
    foreign_stale = connect(globex_token, "stale")
    offline_since(stale, old)
    offline_since(recent, now - timedelta(days=29))
    offline_since(foreign_stale, old)
    # Online with an old presence write (a long-lived socket): never removed by retention.
    Gateway.objects.filter(pk=online.pk).update(last_seen_at=old)
    _, _, policy = setup_access(acme, site, bob)
    flow = authorize(policy, bob, str(stale.pk))
    stale_address = stale.address_id

    assert services.remove_offline_gateways(now) == 2
    remaining = set(Gateway.objects.values_list("external_id", "account_id"))
    assert remaining == {("recent", acme.pk), ("online", acme.pk)}
    # Its tunnel address is free again, its open authorization revoked (kept for the audit log).
    assert not TunnelAddress.objects.filter(pk=stale_address).exists()
    flow.refresh_from_db()
    assert flow.gateway_id is None and flow.revoked_at is not None
    assert flow.revoke_reason == "gateway_removed"
    # Idempotent: a second run removes nothing.
    assert services.remove_offline_gateways(now) == 0


def test_retention_skips_a_gateway_that_reconnected(site: Site, token: str) -> None:
    now = timezone.now()
    gateway = connect(token, "back")
    offline_since(gateway, now - timedelta(days=40))
    cutoff = now - timedelta(days=30)
    connect(token, "back", channel="test.back-again")
    assert not services.remove_offline_gateway(gateway.account_id, gateway.pk, cutoff)
    assert Gateway.objects.filter(pk=gateway.pk).exists()


def test_retention_unassigns_static_devices_and_rerenders_their_config(
    acme: Account, site: Site, token: str, bob: Actor
) -> None:
    setup_access(acme, site, bob)
    gateway = connect(token, "only")
    device = services.register_static_device(bob, name="phone").device
    assert StaticDeviceAssignment.objects.get(device=device).gateway_id == gateway.pk
    offline_since(gateway, timezone.now() - timedelta(days=31))
    version = ClientDevice.objects.get(pk=device.pk).config_version
    assert tasks.remove_offline_gateways() == 1  # the beat task, settings' default retention
    assignment = StaticDeviceAssignment.objects.get(device=device)
    assert assignment.gateway_id is None
    assert ClientDevice.objects.get(pk=device.pk).config_version > version
    assert not Authorization.objects.filter(gateway_id=gateway.pk).exists()


def test_retention_runs_from_celery_beat(settings: Any) -> None:
    from firezone_site.settings import CELERY_BEAT_SCHEDULE

    entry = CELERY_BEAT_SCHEDULE["remove-offline-gateways"]
    assert entry["task"] == "gateways.remove_offline_gateways"
    assert settings.FZ_GATEWAY_RETENTION_DAYS == 30
