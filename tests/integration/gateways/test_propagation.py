"""What connected gateways are told after committed changes, and nothing before or without one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor
from gateways import services
from gateways.models import Authorization, ClientDevice, Gateway
from policies import services as policy_services
from policies.models import Resource, Site

from .conftest import (
    authorize,
    db,
    dynamic_device,
    gateway_with_flow,
    is_revoked,
    new_key,
    open_gateway,
    setup_access,
    ws_path,
)

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


async def test_init_lists_the_active_authorizations_of_the_gateway(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, policy = await db(setup_access)(acme, site, bob)
    gateway, init = await open_gateway(token)
    assert init is not None
    auth = await db(authorize)(policy, bob, init["gateway_id"])
    await gateway.disconnect()
    # An expired and a revoked one are not sent.
    expired = await db(authorize)(policy, bob, init["gateway_id"])
    await db(
        lambda: Authorization.objects.filter(pk=expired.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    )()
    revoked = await db(authorize)(policy, bob, init["gateway_id"])
    await db(
        lambda: Authorization.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    )()
    gateway, init = await open_gateway(token, ws_path(public_key=new_key()))
    assert init is not None
    assert [a["id"] for a in init["authorizations"]] == [str(auth.pk)]
    sent = init["authorizations"][0]
    assert sent["resource"] == {
        "id": str(resource.pk),
        "type": "cidr",
        "address": "10.1.0.0/24",
        "filters": [{"protocol": "tcp", "ports": ["22"]}],
    }
    assert sent["client_public_key"] == auth.device.public_key
    assert sent["client_ipv4"] == auth.device.ipv4
    await gateway.disconnect()


async def test_deleting_a_policy_pushes_reject_access_after_commit_only(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)

    def delete_and_roll_back() -> None:
        with transaction.atomic():
            policy_services.delete_policy(flow.policy)
            raise Rollback

    with pytest.raises(Rollback):
        await db(delete_and_roll_back)()
    assert await flow.gateway.nothing(0.5), "nothing may be pushed for a rolled-back change"
    assert not await is_revoked(flow.auth)

    await db(policy_services.delete_policy)(flow.policy)
    message = await flow.gateway.receive_type("reject_access")
    assert message["authorization_ids"] == [str(flow.auth.pk)]
    assert await is_revoked(flow.auth)
    await flow.gateway.disconnect()


async def test_only_the_gateway_holding_the_authorization_is_told(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, _, policy = await db(setup_access)(acme, site, bob)
    holder, init = await open_gateway(token, ws_path(external_id="a"))
    other, _ = await open_gateway(token, ws_path(external_id="b"))
    assert init is not None
    await db(authorize)(policy, bob, init["gateway_id"])
    await db(policy_services.disable_policy)(policy)
    assert (await holder.receive_type("reject_access"))["authorization_ids"]
    assert await other.nothing()
    await holder.disconnect()
    await other.disconnect()


async def test_a_filter_change_pushes_resource_updated(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await open_gateway(token)
    await db(policy_services.update_resource)(
        resource, filters=[{"protocol": "udp", "ports": ["53"]}]
    )
    message = await gateway.receive_type("resource_updated")
    assert message["resource"]["id"] == str(resource.pk)
    assert message["resource"]["filters"] == [{"protocol": "udp", "ports": ["53"]}]
    # A filter change revokes nothing.
    assert await gateway.nothing()
    await gateway.disconnect()


async def test_removing_a_member_revokes_its_flows_only(
    acme: Account, site: Site, alice: Actor, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    await db(account_services.add_member)(flow.group, alice)
    kept = await db(authorize)(flow.policy, alice, flow.init["gateway_id"])
    await db(account_services.remove_member)(flow.group, bob)
    message = await flow.gateway.receive_type("reject_access")
    assert message["authorization_ids"] == [str(flow.auth.pk)]
    assert await is_revoked(flow.auth)
    # The member who stays keeps her flow.
    assert not await is_revoked(kept)
    assert await flow.gateway.nothing()
    await flow.gateway.disconnect()


async def test_static_peers_follow_membership_changes(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    group, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, init = await open_gateway(token)
    assert init is not None
    registered = await db(services.register_static_device)(bob, name="phone")
    added = await gateway.receive_type("add_static_peer")
    assert added["peer"]["public_key"] == registered.device.public_key
    assert [r["id"] for r in added["peer"]["resources"]] == [str(resource.pk)]
    version = registered.config.version

    await db(account_services.remove_member)(group, bob)
    removed = await gateway.receive_type("remove_static_peer")
    assert removed["public_key"] == registered.device.public_key
    device = await db(lambda: ClientDevice.objects.get(pk=registered.device.pk))()
    assert device.config_version > version

    await db(account_services.add_member)(group, bob)
    again = await gateway.receive_type("add_static_peer")
    assert again["peer"]["public_key"] == registered.device.public_key
    await gateway.disconnect()


async def test_a_second_resource_widens_the_static_peer(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    group, first, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await open_gateway(token)
    await db(services.register_static_device)(bob, name="phone")
    await gateway.receive_type("add_static_peer")

    def widen() -> Resource:
        second = policy_services.create_resource(
            acme, name="DB", kind="ip", address="10.2.0.9", site=site
        )
        policy_services.create_policy(acme, group=group, resource=second)
        return second

    second = await db(widen)()
    widened = await gateway.receive_type("add_static_peer")
    assert {r["id"] for r in widened["peer"]["resources"]} == {str(first.pk), str(second.pk)}
    await gateway.disconnect()


async def test_acme_gateways_hear_nothing_about_globex_changes(
    acme: Account,
    globex: Account,
    site: Site,
    bob: Actor,
    charlie: Actor,
    token: str,
    globex_token: str,
) -> None:
    await db(setup_access)(acme, site, bob)
    ours, _ = await open_gateway(token)
    theirs, their_init = await open_gateway(globex_token)
    assert their_init is not None
    globex_site = await db(lambda: Site.objects.for_account(globex).get())()

    def globex_changes() -> None:
        group = account_services.create_group(globex, name="Ops")
        account_services.add_member(group, charlie)
        resource = policy_services.create_resource(
            globex, name="Prod", kind="cidr", address="10.9.0.0/16", site=globex_site
        )
        policy = policy_services.create_policy(globex, group=group, resource=resource)
        services.register_static_device(charlie, name="charlie-phone")
        Authorization.objects.create(
            account=globex,
            actor=charlie,
            device=dynamic_device(charlie),
            resource=resource,
            policy=policy,
            gateway_id=their_init["gateway_id"],
        )
        policy_services.update_resource(resource, filters=[{"protocol": "icmp"}])
        policy_services.delete_policy(policy)

    await db(globex_changes)()
    assert await ours.nothing(1.0)
    seen = set()
    for _ in range(3):
        seen.add((await theirs.receive())["type"])
    assert {"add_static_peer", "resource_updated", "reject_access"} <= seen
    await ours.disconnect()
    await theirs.disconnect()


async def test_expiring_authorizations_pushes_reject_access(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    # Not yet due: nothing is revoked or pushed.
    assert await db(services.expire_authorizations)() == 0
    assert await flow.gateway.nothing()
    later = timezone.now() + timedelta(hours=2)
    assert await db(services.expire_authorizations)(later) == 1
    message = await flow.gateway.receive_type("reject_access")
    assert message["authorization_ids"] == [str(flow.auth.pk)]
    row = await db(lambda: Authorization.objects.get(pk=flow.auth.pk))()
    assert row.revoke_reason == "expired"
    assert await db(services.expire_authorizations)(later) == 0
    await flow.gateway.disconnect()


async def test_rotation_pushes_the_new_token_to_its_holders(
    acme: Account, site: Site, token: str, settings: Any
) -> None:
    from accounts.models import Token

    gateway, _ = await open_gateway(token)
    assert await db(services.rotate_gateway_tokens)() == 0  # too young
    later = timezone.now() + timedelta(days=31)
    assert await db(services.rotate_gateway_tokens)(later) == 1
    message = await gateway.receive_type("token_rotated")
    assert message["token"].startswith("fzg_") and message["token"] != token
    await gateway.disconnect()
    # The new token works; its first use ends the old one's grace period.
    again, init = await open_gateway(message["token"])
    assert init is not None
    await again.disconnect()
    rotated = Token.objects.for_account(acme).filter(replaced_by__isnull=False)
    old = await db(rotated.get)()
    assert old.revoked_at is not None
    assert await db(lambda: Gateway.objects.for_account(acme).count())() == 1
