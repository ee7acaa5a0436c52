"""Regressions for defects a review found: every narrowing change reaches the gateway, before any
close, and nothing is left behind."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, Token
from gateways import services
from gateways.models import Authorization, StaticDeviceAssignment, TunnelAddress
from policies import services as policy_services
from policies.models import Site

from .conftest import Flow, Gateway, authorize, db, gateway_with_flow, open_gateway, setup_access

pytestmark = pytest.mark.django_db(transaction=True)


async def frames_until_quiet(gw: Gateway, quiet: float = 1.5) -> list[Any]:
    """Every frame (type) and close (("CLOSE", code)) until nothing arrives for ``quiet`` s."""
    seen: list[Any] = []
    while not await gw.ws.receive_nothing(timeout=quiet):
        out = await gw.ws.receive_output()
        if out["type"] == "websocket.close":
            seen.append(("CLOSE", out.get("code")))
            break
        frame = json.loads(out["text"])
        if frame["type"] != "heartbeat_reply":
            seen.append(frame)
    return seen


def types(seen: list[Any]) -> list[Any]:
    return [s["type"] if isinstance(s, dict) else s for s in seen]


async def settle(flow: Flow) -> tuple[list[Any], Authorization]:
    """The frames until quiet and the flow's authorization row after them; disconnects."""
    seen = await frames_until_quiet(flow.gateway)
    row = await db(Authorization.objects.get)(pk=flow.auth.pk)
    await flow.gateway.disconnect()
    return seen, row


def rejected(seen: list[Any], auth: Authorization) -> bool:
    return any(
        isinstance(s, dict)
        and s["type"] == "reject_access"
        and str(auth.pk) in s["authorization_ids"]
        for s in seen
    )


async def test_readdressing_a_resource_revokes_its_flows(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    # A rename leaves the flows alone.
    await db(policy_services.update_resource)(flow.resource, name="LAN 2")
    assert (await db(Authorization.objects.get)(pk=flow.auth.pk)).revoked_at is None
    await db(policy_services.update_resource)(flow.resource, address="10.9.0.0/24")
    seen, row = await settle(flow)
    assert row.revoked_at is not None and row.revoke_reason == "resource_readdressed"
    assert rejected(seen, flow.auth)


async def test_moving_a_resource_to_another_site_revokes_its_flows(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    other = await db(services.create_site)(acme, name="Paris")
    await db(policy_services.update_resource)(flow.resource, site=other)
    seen, row = await settle(flow)
    assert row.revoked_at is not None
    assert rejected(seen, flow.auth)


async def test_deleting_an_actor_revokes_flows_and_removes_static_peers(
    acme: Account, site: Site, alice: Actor, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    await db(services.register_static_device)(bob, name="phone")
    await flow.gateway.receive_type("add_static_peer", timeout=3)
    slots_before = await db(lambda: TunnelAddress.objects.for_account(acme).count())()
    await db(account_services.delete_actor)(bob)
    seen, row = await settle(flow)
    slots_after = await db(lambda: TunnelAddress.objects.for_account(acme).count())()
    assert row.revoked_at is not None
    assert rejected(seen, flow.auth)
    assert "remove_static_peer" in types(seen)
    # bob's static device and the dynamic device of his flow both gave their addresses back
    assert slots_after == slots_before - 2


async def test_leaving_everyone_by_type_change_revokes_access(
    acme: Account, site: Site, alice: Actor, bob: Actor, token: str
) -> None:
    def setup() -> Any:
        res = policy_services.create_resource(
            acme, name="LAN", kind="cidr", address="10.1.0.0/24", site=site
        )
        return policy_services.create_policy(
            acme, group=account_services.everyone_group(acme), resource=res
        )

    policy = await db(setup)()
    gw, init = await open_gateway(token)
    assert init is not None
    auth = await db(authorize)(policy, bob, init["gateway_id"])
    reg = await db(services.register_static_device)(bob, name="phone")
    await gw.receive_type("add_static_peer", timeout=3)
    await db(account_services.update_actor)(bob, type=Actor.Type.SERVICE_ACCOUNT)
    seen = await frames_until_quiet(gw)
    row = await db(Authorization.objects.get)(pk=auth.pk)
    left = await db(lambda: StaticDeviceAssignment.objects.filter(device=reg.device).count())()
    await gw.disconnect()
    assert row.revoked_at is not None and rejected(seen, auth)
    assert "remove_static_peer" in types(seen)
    assert left == 0


async def test_disabling_the_account_tells_gateways_before_closing(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    gw, auth = flow.gateway, flow.auth
    await db(services.register_static_device)(bob, name="phone")
    await gw.receive_type("add_static_peer", timeout=3)
    await db(account_services.disable_account)(acme)
    sequence = types(await frames_until_quiet(gw))
    assert "reject_access" in sequence and "remove_static_peer" in sequence
    close = sequence.index(("CLOSE", 4003))
    assert sequence.index("reject_access") < close
    assert sequence.index("remove_static_peer") < close
    row = await db(Authorization.objects.get)(pk=auth.pk)
    assert row.revoked_at is not None


async def test_disabling_a_provider_revokes_flows_that_required_it(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, _, policy = await db(setup_access)(acme, site, bob)
    provider = await db(account_services.create_auth_provider)(acme, name="Okta", kind="okta")
    other = await db(account_services.create_auth_provider)(acme, name="Google", kind="google")
    policy = await db(policy_services.update_policy)(
        policy,
        conditions=[{"property": "provider_id", "operator": "is_in", "values": [str(provider.pk)]}],
    )
    gw, init = await open_gateway(token)
    assert init is not None
    auth = await db(authorize)(policy, bob, init["gateway_id"])
    await db(account_services.disable_auth_provider)(other)
    assert (await db(Authorization.objects.get)(pk=auth.pk)).revoked_at is None
    await db(account_services.disable_auth_provider)(provider)
    seen = await frames_until_quiet(gw)
    row = await db(Authorization.objects.get)(pk=auth.pk)
    await gw.disconnect()
    assert row.revoked_at is not None and row.revoke_reason == "provider_disabled"
    assert rejected(seen, auth)


async def test_revoking_the_rotated_in_token_closes_the_gateway_using_it(
    acme: Account, site: Site, token: str
) -> None:
    gw, init = await open_gateway(token)
    assert init is not None
    await db(
        lambda: (
            Token.objects.for_account(acme)
            .filter(kind="gateway")
            .update(created_at=timezone.now() - timedelta(days=31))
        )
    )()
    assert await db(services.rotate_gateway_tokens)() == 1
    await gw.receive_type("token_rotated")
    successor = await db(
        lambda: Token.objects.for_account(acme).get(
            kind="gateway", replaced_by__isnull=True, grace_until__isnull=True
        )
    )()
    await db(account_services.revoke_token)(successor)
    assert ("CLOSE", 4001) in types(await frames_until_quiet(gw))


async def test_deleting_a_site_closes_its_gateways_at_once(
    acme: Account, site: Site, token: str
) -> None:
    gw, init = await open_gateway(token)
    assert init is not None
    await db(services.delete_site)(site)
    assert ("CLOSE", 4007) in types(await frames_until_quiet(gw))


async def test_a_deeply_nested_frame_is_an_error_not_a_crash(token: str) -> None:
    gw, init = await open_gateway(token)
    assert init is not None
    await gw.ws.send_to(text_data="[" * 100_000 + "]" * 100_000)
    reply = await gw.receive()
    assert reply["type"] == "error"
    await gw.send({"type": "heartbeat"})
    assert (await gw.receive_type("heartbeat_reply"))["type"] == "heartbeat_reply"
    await gw.disconnect()
