"""Convergence through the real endpoint: the state digest in every ``heartbeat_reply`` and the
``init`` a ``resync_request`` gets (docs/protocol.md, "Convergence")."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from accounts.models import Account, Actor
from agents import protocol
from gateways.models import Authorization
from policies.models import Site

from .conftest import Gateway, authorize, db, gateway_with_flow, open_gateway, setup_access

pytestmark = pytest.mark.django_db(transaction=True)


def digest_of(init: dict[str, Any]) -> str:
    parsed = protocol.parse_message(protocol.dump(protocol.Init.from_json(init)))
    assert isinstance(parsed, protocol.Init)
    return protocol.state_digest(parsed.static_peers, parsed.authorizations)


async def heartbeat_digest(gateway: Gateway) -> str:
    await gateway.send({"type": "heartbeat"})
    reply = await gateway.receive_type("heartbeat_reply")
    digest = reply["state_digest"]
    assert isinstance(digest, str)
    return digest


async def resync(gateway: Gateway) -> dict[str, Any]:
    await gateway.send({"type": "resync_request"})
    return await gateway.receive_type("init")


async def test_the_digest_is_that_of_the_init_the_gateway_got(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(setup_access)(acme, site, bob)
    gateway, init = await open_gateway(token)
    assert init is not None
    assert await heartbeat_digest(gateway) == digest_of(init)
    await gateway.disconnect()


async def test_a_flow_the_gateway_never_heard_of_changes_the_digest_and_resync_sends_it(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    # gateway_with_flow writes the authorization after init and pushes nothing: a lost push.
    flow = await gateway_with_flow(acme, site, bob, token)
    digest = await heartbeat_digest(flow.gateway)
    assert digest != digest_of(flow.init)
    fresh = await resync(flow.gateway)
    assert [a["id"] for a in fresh["authorizations"]] == [str(flow.auth.pk)]
    assert digest_of(fresh) == digest
    await flow.gateway.disconnect()


async def test_a_revocation_whose_push_was_lost_is_dropped_by_the_resync(
    acme: Account, site: Site, bob: Actor, token: str, settings: Any
) -> None:
    settings.FZ_HEARTBEAT_INTERVAL_S = 1.0
    flow = await gateway_with_flow(acme, site, bob, token)
    held = digest_of(await resync(flow.gateway))
    kept = await db(authorize)(flow.policy, bob, flow.init["gateway_id"])
    # Revoked in the database without any push (what a lost reject_access leaves behind).
    await db(
        lambda: Authorization.objects.filter(pk=flow.auth.pk).update(revoked_at=timezone.now())
    )()
    digest = await heartbeat_digest(flow.gateway)
    assert digest != held
    await flow.gateway.ws.receive_nothing(0.6)  # past the resync rate limit (0.5 s below)
    fresh = await resync(flow.gateway)
    assert [a["id"] for a in fresh["authorizations"]] == [str(kept.pk)]
    assert digest_of(fresh) == digest
    await flow.gateway.disconnect()


async def test_another_accounts_changes_leave_the_digest_alone(
    acme: Account,
    site: Site,
    bob: Actor,
    token: str,
    globex: Account,
    globex_site: Site,
    charlie: Actor,
    globex_token: str,
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    before = await heartbeat_digest(flow.gateway)
    other = await gateway_with_flow(globex, globex_site, charlie, globex_token)
    await db(authorize)(other.policy, charlie, other.init["gateway_id"])
    assert await heartbeat_digest(flow.gateway) == before
    assert await heartbeat_digest(other.gateway) != digest_of(other.init)
    await flow.gateway.disconnect()
    await other.gateway.disconnect()


async def test_resync_requests_are_rate_limited_per_connection(
    acme: Account, site: Site, bob: Actor, token: str, settings: Any
) -> None:
    settings.FZ_HEARTBEAT_INTERVAL_S = 4.0  # at most one init per 2 s
    flow = await gateway_with_flow(acme, site, bob, token)
    assert (await resync(flow.gateway))["heartbeat_interval_s"] == 4.0
    await flow.gateway.send({"type": "resync_request"})
    assert await flow.gateway.nothing(0.5), "a second resync within 2 s is ignored"
    await flow.gateway.disconnect()


async def test_every_nth_heartbeat_carries_the_digest_as_configured(
    acme: Account, site: Site, bob: Actor, token: str, settings: Any
) -> None:
    settings.FZ_STATE_DIGEST_EVERY = 2
    gateway, init = await open_gateway(token)
    assert init is not None
    replies = []
    for _ in range(4):
        await gateway.send({"type": "heartbeat"})
        replies.append(await gateway.receive_type("heartbeat_reply"))
    assert ["state_digest" in r for r in replies] == [False, True, False, True]
    settings.FZ_STATE_DIGEST_EVERY = 0
    await gateway.send({"type": "heartbeat"})
    assert await gateway.receive_type("heartbeat_reply") == {"type": "heartbeat_reply"}
    await gateway.disconnect()


# --- the per-connection digest cache ----------------------------------------------------------


@pytest.mark.django_db
def test_the_cached_digest_follows_every_change_init_depends_on(
    acme: Account, site: Site, bob: Actor, token: str, globex: Account, charlie: Actor
) -> None:
    from datetime import timedelta

    from gateways import queries, services
    from gateways.models import AccountKeySecret, ClientDevice, StaticDeviceAssignment
    from policies import services as policy_services
    from policies.models import Resource

    from .conftest import new_key

    gateway = services.connect_gateway(
        secret=token,
        params=services.GatewayParams(
            external_id="gw", name="gw", public_key=new_key(), version="0.1.0", endpoint=""
        ),
        remote_ip="127.0.0.1",
        channel_name="test",
    )
    _, resource, policy = setup_access(acme, site, bob)
    static = services.register_static_device(bob, name="laptop").device
    assert StaticDeviceAssignment.objects.filter(device=static, gateway=gateway).exists()
    auth = authorize(policy, bob, str(gateway.pk))
    cache = queries.DigestCache()
    now = timezone.now()
    seen: list[str] = []

    def check(what: str, at: Any = None) -> None:
        when = at or now
        cached = queries.state_digest(acme.pk, gateway.pk, when, cache)
        fresh = queries.state_digest(acme.pk, gateway.pk, when)
        assert cached == fresh, f"stale cached digest after: {what}"
        assert fresh not in seen, f"digest did not change after: {what}"
        assert fresh is not None
        seen.append(fresh)

    check("start")
    computed = cache.computed
    assert queries.state_digest(acme.pk, gateway.pk, now, cache) == seen[-1]
    assert cache.computed == computed, "an unchanged state is served from the cache"
    # Another account's changes are not even a recomputation.
    authorize(
        setup_access(globex, services.create_site(globex, name="G"), charlie)[2], charlie, None
    )
    assert queries.state_digest(acme.pk, gateway.pk, now, cache) == seen[-1]
    assert cache.computed == computed

    Authorization.objects.filter(pk=auth.pk).update(revoked_at=timezone.now())
    check("flow revoked")
    second = authorize(policy, bob, str(gateway.pk))
    check("flow created")
    assert second.device_id is not None
    ClientDevice.objects.filter(pk=second.device_id).update(public_key=new_key())
    check("client key changed")
    Resource.objects.filter(pk=resource.pk).update(filters=[{"protocol": "udp", "ports": []}])
    check("filters changed")
    Resource.objects.filter(pk=resource.pk).update(address="10.7.0.0/24")
    check("address changed")
    StaticDeviceAssignment.objects.filter(device=static).update(resource_ids=[])
    check("static peer lost its resources")
    AccountKeySecret.objects.filter(account=acme).update(secret="ab" * 32)
    check("key secret rotated")
    Authorization.objects.filter(pk=second.pk).update(expires_at=now + timedelta(seconds=5))
    check("expiry set")
    check("expiry passed", now + timedelta(seconds=6))
    policy_services.delete_policy(policy)
    ClientDevice.objects.filter(pk=static.pk).update(disabled_at=timezone.now())
    check("static device disabled", now + timedelta(seconds=6))
    gateway.delete()
    assert queries.state_digest(acme.pk, gateway.pk, now, cache) is None
