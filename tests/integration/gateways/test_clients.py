"""The client endpoint (/client/websocket, client protocol v1): connect, init, pushes, and
on-demand authorization end to end with a simulated gateway agent on the same portal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Account, Actor, Token
from gateways.models import Authorization, ClientDevice
from policies import services as policy_services
from policies.models import Site

from .clientlab import Client, client_path, client_token, gateway_online, open_client
from .conftest import Gateway, db, new_key, setup_access

pytestmark = pytest.mark.django_db(transaction=True)


async def authorized(
    client: Client, gateway: Gateway, resource_id: Any, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Ask, let the gateway install and ack; returns (create_authorization, client's answer)."""
    await client.request(resource_id, **extra)
    create = await gateway.receive_type("create_authorization")
    await gateway.send(
        {"type": "authorization_ack", "authorization_id": create["authorization"]["id"]}
    )
    return create, await client.receive()


# --- connect ------------------------------------------------------------------------------------


async def test_a_signed_in_client_gets_init_with_its_addresses_and_visible_resources(
    acme: Account, site: Site, bob: Actor
) -> None:
    _, resource, _ = await db(setup_access)(acme, site, bob)
    secret = await db(client_token)(bob)
    key = new_key()
    client, init, refused = await open_client(secret, client_path(public_key=key))
    assert refused is None and init is not None
    device = await db(ClientDevice.objects.get)(pk=init["client_id"])
    assert (device.kind, device.public_key, device.actor_id) == ("dynamic", key, bob.pk)
    assert (init["ipv4"], init["ipv6"]) == (device.ipv4, device.ipv6)
    assert device.channel_name and str(device.last_seen_remote_ip) == "203.0.113.50"
    assert [r["id"] for r in init["resources"]] == [str(resource.pk)]
    assert init["resources"][0]["site_id"] == str(site.pk)
    await client.disconnect()
    # Reconnect with the same external id: same device, same addresses, now offline -> online.
    device = await db(ClientDevice.objects.get)(pk=init["client_id"])
    assert device.channel_name == ""
    client, again, _ = await open_client(secret, client_path(public_key=key))
    assert again is not None
    assert (again["client_id"], again["ipv4"]) == (init["client_id"], init["ipv4"])
    await client.disconnect()


async def test_a_service_account_token_connects_an_api_client_token_does_not(
    acme: Account,
) -> None:
    sa = await db(account_services.issue_api_token)(acme, new_service_account="ci")
    client, init, _ = await open_client(sa.secret)
    assert init is not None and init["resources"] == []
    await client.disconnect()
    api_client = await db(account_services.create_actor)(
        acme, name="terraform", email="", type=Actor.Type.API_CLIENT
    )
    other = await db(account_services.issue_api_token)(acme, actor_id=api_client.pk)
    _, init, refused = await open_client(other.secret)
    assert init is None and refused is not None and refused[0] == 4001


@pytest.mark.parametrize("case", ["none", "garbage", "gateway", "revoked", "expired"])
async def test_bad_tokens_are_refused_with_4001(
    acme: Account, site: Site, bob: Actor, case: str
) -> None:
    from gateways import services as gateway_services

    secret: str | None
    if case == "none":
        secret = None
    elif case == "garbage":
        secret = "fzc_nope_nope"
    elif case == "gateway":
        secret = await db(lambda: gateway_services.issue_gateway_token(site).secret)()
    else:
        secret = await db(client_token)(bob)
        parsed = account_services.parse_secret(secret)
        assert parsed is not None
        if case == "revoked":
            await db(lambda: Token.objects.filter(pk=parsed[1]).update(revoked_at=timezone.now()))()
        else:
            await db(lambda: Token.objects.filter(pk=parsed[1]).update(expires_at=timezone.now()))()
    _, init, refused = await open_client(secret)
    assert init is None and refused is not None
    assert refused[0] == 4001
    assert await db(ClientDevice.objects.filter(kind="dynamic").count)() == 0


async def test_bad_parameters_and_protocol_are_refused(bob: Actor) -> None:
    secret = await db(client_token)(bob)
    _, _, refused = await open_client(secret, client_path(public_key="short"))
    assert refused == (4002, "public_key: expected base64 of 32 bytes")
    _, _, refused = await open_client(secret, client_path(protocol="9"))
    assert refused is not None and refused[0] == 4005


async def test_the_newest_connection_of_a_device_wins(bob: Actor) -> None:
    secret = await db(client_token)(bob)
    key = new_key()
    first, init, _ = await open_client(secret, client_path(public_key=key))
    assert init is not None
    second, init2, _ = await open_client(secret, client_path(public_key=key))
    assert init2 is not None and init2["client_id"] == init["client_id"]
    code, _ = await first.close_code()
    assert code == 4004
    device = await db(ClientDevice.objects.get)(pk=init["client_id"])
    assert device.channel_name  # still held by the second socket
    await second.disconnect()


async def test_revoking_the_token_closes_the_client(bob: Actor) -> None:
    secret = await db(client_token)(bob)
    client, init, _ = await open_client(secret)
    assert init is not None
    parsed = account_services.parse_secret(secret)
    assert parsed is not None
    token = await db(Token.objects.get)(pk=parsed[1])
    await db(account_services.revoke_token)(token)
    code, _ = await client.close_code()
    assert code == 4001


# --- request_authorization ---------------------------------------------------------------------


async def test_request_authorization_reaches_the_gateway_and_answers_the_client(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, policy = await db(setup_access)(acme, site, bob)
    gateway, ginit = await gateway_online(token)
    client, init, _ = await open_client(await db(client_token)(bob))
    assert init is not None
    create, created = await authorized(client, gateway, resource.pk)
    wire = create["authorization"]
    assert created["type"] == "authorization_created", created
    assert created["authorization_id"] == wire["id"]
    assert created["resource_id"] == str(resource.pk)
    assert created["gateway_id"] == ginit["gateway_id"]
    assert created["preshared_key"] == wire["preshared_key"]  # both ends derive the same PSK
    assert created["gateway_endpoints"] == ["203.0.113.7:51820"]
    assert (created["gateway_ipv4"], created["client_ipv4"]) == (ginit["ipv4"], init["ipv4"])
    assert wire["client_ipv4"] == init["ipv4"] and wire["resource"]["id"] == str(resource.pk)
    auth = await db(Authorization.objects.get)(pk=wire["id"])
    assert auth.policy_id == policy.pk and auth.actor_id == bob.pk
    assert str(auth.device_id) == init["client_id"] and str(auth.gateway_id) == ginit["gateway_id"]
    assert str(auth.client_remote_ip) == "203.0.113.50" and auth.token_id is not None
    assert auth.expires_at is not None and auth.revoked_at is None
    # The token expires in 8 h: the flow does not outlive it.
    assert auth.expires_at <= (await db(Token.objects.get)(pk=auth.token_id)).expires_at
    await client.disconnect()
    await gateway.disconnect()


async def test_unknown_unauthorized_and_other_accounts_resources_are_not_found(
    acme: Account,
    site: Site,
    bob: Actor,
    token: str,
    globex: Account,
    globex_site: Site,
    charlie: Actor,
) -> None:
    import uuid

    _, resource, _ = await db(setup_access)(acme, site, bob)
    _, theirs, _ = await db(setup_access)(globex, globex_site, charlie, "10.9.0.0/24")
    no_policy = await db(policy_services.create_resource)(
        acme, name="Secret", kind="ip", address="10.2.0.1", site=site
    )
    gateway, _ = await gateway_online(token)
    client, _, _ = await open_client(await db(client_token)(bob))
    for rid in (uuid.uuid4(), no_policy.pk, theirs.pk):
        await client.request(rid)
        answer = await client.receive()
        assert answer == {
            "type": "authorization_creation_failed",
            "resource_id": str(rid),
            "reason": "not_found",
            "violated": [],
        }
    assert await gateway.nothing()  # the gateway is never asked
    assert await db(Authorization.objects.count)() == 0
    # And charlie's client does not see acme's resource either.
    other, init, _ = await open_client(await db(client_token)(charlie))
    assert init is not None and [r["id"] for r in init["resources"]] == [str(theirs.pk)]
    await other.request(resource.pk)
    assert (await other.receive())["reason"] == "not_found"
    await other.disconnect()
    await client.disconnect()
    await gateway.disconnect()


async def test_remote_ip_condition_is_decided_with_the_websocket_peer(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, policy = await db(setup_access)(acme, site, bob)
    await db(policy_services.update_policy)(
        policy,
        conditions=[
            {"property": "remote_ip", "operator": "is_in_cidr", "values": ["198.51.100.0/24"]}
        ],
    )
    gateway, _ = await gateway_online(token)
    secret = await db(client_token)(bob)
    outside, _, _ = await open_client(secret, peer="203.0.113.50")
    await outside.request(resource.pk)
    assert await outside.receive() == {
        "type": "authorization_creation_failed",
        "resource_id": str(resource.pk),
        "reason": "forbidden",
        "violated": ["remote_ip"],
    }
    assert await gateway.nothing()
    await outside.disconnect()
    inside, _, _ = await open_client(secret, peer="198.51.100.20")
    _, created = await authorized(inside, gateway, resource.pk)
    assert created["type"] == "authorization_created"
    await inside.disconnect()
    await gateway.disconnect()


async def test_country_condition_uses_the_offline_geoip_database(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, policy = await db(setup_access)(acme, site, bob)
    await db(policy_services.update_policy)(
        policy,
        conditions=[
            {"property": "remote_ip_location_region", "operator": "is_in", "values": ["DE"]}
        ],
    )
    gateway, _ = await gateway_online(token)
    secret = await db(client_token)(bob)
    # 81.2.69.160 is in Great Britain, 85.214.132.117 in Germany (iptocc's shipped database).
    uk, _, _ = await open_client(secret, peer="81.2.69.160")
    await uk.request(resource.pk)
    answer = await uk.receive()
    assert (answer["reason"], answer["violated"]) == ("forbidden", ["remote_ip_location_region"])
    await uk.disconnect()
    de, _, _ = await open_client(secret, peer="85.214.132.117")
    _, created = await authorized(de, gateway, resource.pk)
    assert created["type"] == "authorization_created"
    await de.disconnect()
    await gateway.disconnect()


async def test_behind_a_trusted_proxy_the_first_untrusted_forwarded_hop_counts(
    acme: Account, site: Site, bob: Actor, token: str, settings: Any
) -> None:
    settings.FZ_TRUSTED_PROXIES = ["127.0.0.0/8"]
    _, resource, policy = await db(setup_access)(acme, site, bob)
    await db(policy_services.update_policy)(
        policy,
        conditions=[
            {"property": "remote_ip", "operator": "is_in_cidr", "values": ["198.51.100.0/24"]}
        ],
    )
    gateway, _ = await gateway_online(token)
    secret = await db(client_token)(bob)
    # The client claims to be inside; the proxy appended its real address.
    headers = [(b"x-forwarded-for", b"198.51.100.20, 203.0.113.99")]
    spoofed, init, _ = await open_client(secret, peer="127.0.0.1", headers=headers)
    assert init is not None
    await spoofed.request(resource.pk)
    assert (await spoofed.receive())["violated"] == ["remote_ip"]
    await spoofed.disconnect()
    device = await db(ClientDevice.objects.get)(pk=init["client_id"])
    assert str(device.last_seen_remote_ip) == "203.0.113.99"
    honest = [(b"x-forwarded-for", b"198.51.100.20")]
    ok, _, _ = await open_client(secret, peer="127.0.0.1", headers=honest)
    _, created = await authorized(ok, gateway, resource.pk)
    assert created["type"] == "authorization_created"
    await ok.disconnect()
    await gateway.disconnect()


async def test_no_online_gateway_is_offline_and_an_incompatible_one_is_version_mismatch(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, _ = await db(setup_access)(acme, site, bob)
    client, _, _ = await open_client(await db(client_token)(bob))
    await client.request(resource.pk)
    assert (await client.receive())["reason"] == "offline"
    gateway, _ = await gateway_online(token, version="0.7.0")
    await client.request(resource.pk)
    assert (await client.receive())["reason"] == "version_mismatch"
    assert await gateway.nothing()
    assert await db(Authorization.objects.count)() == 0
    await client.disconnect()
    await gateway.disconnect()


async def test_no_ack_in_time_fails_closed(
    acme: Account, site: Site, bob: Actor, token: str, settings: Any
) -> None:
    settings.FZ_AUTHORIZATION_ACK_TIMEOUT_S = 0.5
    _, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    client, _, _ = await open_client(await db(client_token)(bob))
    await client.request(resource.pk)
    create = await gateway.receive_type("create_authorization")
    auth_id = create["authorization"]["id"]
    # No ack: the client hears "offline", the gateway is told to drop the half-made flow.
    answer = await client.receive_type("authorization_creation_failed", timeout=5)
    assert answer["reason"] == "offline"
    reject = await gateway.receive_type("reject_access", timeout=5)
    assert reject["authorization_ids"] == [auth_id]
    row = await db(Authorization.objects.get)(pk=auth_id)
    assert row.revoked_at is not None and row.revoke_reason == "gateway_ack_timeout"
    # A late ack changes nothing: no authorization_created reaches the client.
    await gateway.send({"type": "authorization_ack", "authorization_id": auth_id})
    frames = []
    while not await client.nothing(0.5):
        frames.append((await client.receive())["type"])
    assert "authorization_created" not in frames
    await client.disconnect()
    await gateway.disconnect()


async def test_a_gateway_error_for_the_flow_is_offline_to_the_client(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    client, _, _ = await open_client(await db(client_token)(bob))
    await client.request(resource.pk)
    create = await gateway.receive_type("create_authorization")
    auth_id = create["authorization"]["id"]
    await gateway.send(
        {
            "type": "error",
            "code": "authorization_failed",
            "reason": "x",
            "authorization_id": auth_id,
        }
    )
    answer = await client.receive_type("authorization_creation_failed")
    assert answer["reason"] == "offline"
    row = await db(Authorization.objects.get)(pk=auth_id)
    assert row.revoked_at is not None and row.revoke_reason == "gateway_refused"
    # Fail closed: whatever the gateway half-installed is rejected too (unknown ids are ignored).
    reject = await gateway.receive_type("reject_access")
    assert reject["authorization_ids"] == [auth_id]
    await client.disconnect()
    await gateway.disconnect()


async def test_gateway_choice_prefers_connected_avoids_failed_and_fails_over(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, _ = await db(setup_access)(acme, site, bob)
    gw1, i1 = await gateway_online(token, external_id="gw-1")
    gw2, i2 = await gateway_online(token, external_id="gw-2")
    by_id = {i1["gateway_id"]: gw1, i2["gateway_id"]: gw2}
    client, _, _ = await open_client(await db(client_token)(bob))

    async def ask(**extra: Any) -> str:
        await client.request(resource.pk, **extra)
        while True:  # whichever gateway was chosen gets create_authorization
            for gw in by_id.values():
                if not await gw.nothing(0.2):
                    create = await gw.receive_type("create_authorization")
                    auth_id = create["authorization"]["id"]
                    await gw.send({"type": "authorization_ack", "authorization_id": auth_id})
                    created = await client.receive_type("authorization_created")
                    return str(created["gateway_id"])

    for preferred in (i1["gateway_id"], i2["gateway_id"]):
        assert await ask(connected_gateway_ids=[preferred]) == preferred
    assert await ask(failed_gateway_ids=[i1["gateway_id"]]) == i2["gateway_id"]
    # The serving gateway dies: the next request goes to the other one.
    await gw2.disconnect()
    del by_id[i2["gateway_id"]]
    assert await ask(connected_gateway_ids=[i2["gateway_id"]]) == i1["gateway_id"]
    await client.disconnect()
    await gw1.disconnect()


# --- pushes and revocation ---------------------------------------------------------------------


async def test_policy_changes_push_resources_and_revoke_flows(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    group, resource, policy = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    client, init, _ = await open_client(await db(client_token)(bob))
    assert init is not None
    other = await db(policy_services.create_resource)(
        acme, name="Wiki", kind="ip", address="10.3.0.7", site=site
    )
    await db(policy_services.create_policy)(acme, group=group, resource=other)
    pushed = await client.receive_type("resource_created_or_updated")
    assert pushed["resource"]["id"] == str(other.pk)
    assert pushed["resource"]["address"] == "10.3.0.7"
    create, _ = await authorized(client, gateway, resource.pk)
    await db(policy_services.delete_policy)(policy)
    reject = await gateway.receive_type("reject_access")
    assert reject["authorization_ids"] == [create["authorization"]["id"]]
    revoked = await client.receive_type("authorization_revoked")
    assert revoked["authorization_ids"] == [create["authorization"]["id"]]
    deleted = await client.receive_type("resource_deleted")
    assert deleted["resource_id"] == str(resource.pk)
    await client.disconnect()
    await gateway.disconnect()


NARROWING = [
    "policy_disabled",
    "condition_changed",
    "membership_removed",
    "resource_readdressed",
    "actor_disabled",
    "token_revoked",
    "resource_deleted",
]


@pytest.mark.parametrize("change", NARROWING)
async def test_every_narrowing_change_revokes_the_dynamic_flow(
    acme: Account, site: Site, bob: Actor, token: str, change: str
) -> None:
    group, resource, policy = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    secret = await db(client_token)(bob)
    client, _, _ = await open_client(secret)
    create, created = await authorized(client, gateway, resource.pk)
    assert created["type"] == "authorization_created"
    auth_id = create["authorization"]["id"]

    def narrow() -> None:
        if change == "policy_disabled":
            policy_services.disable_policy(policy)
        elif change == "condition_changed":
            policy_services.update_policy(
                policy,
                conditions=[
                    {"property": "remote_ip", "operator": "is_in_cidr", "values": ["10.0.0.0/8"]}
                ],
            )
        elif change == "membership_removed":
            account_services.remove_member(group, bob)
        elif change == "resource_readdressed":
            policy_services.update_resource(resource, address="10.7.0.0/24")
        elif change == "actor_disabled":
            account_services.disable_actor(bob)
        elif change == "token_revoked":
            parsed = account_services.parse_secret(secret)
            assert parsed is not None
            account_services.revoke_token(Token.objects.get(pk=parsed[1]))
        elif change == "resource_deleted":
            policy_services.delete_resource(resource)

    await db(narrow)()
    reject = await gateway.receive_type("reject_access")
    assert auth_id in reject["authorization_ids"]
    row = await db(Authorization.objects.get)(pk=auth_id)
    assert row.revoked_at is not None
    await client.disconnect()
    await gateway.disconnect()


async def test_a_widening_change_revokes_nothing(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    group, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    client, _, _ = await open_client(await db(client_token)(bob))
    create, _ = await authorized(client, gateway, resource.pk)
    other = await db(policy_services.create_resource)(
        acme, name="Wiki", kind="ip", address="10.3.0.7", site=site
    )
    await db(policy_services.create_policy)(acme, group=group, resource=other)
    await client.receive_type("resource_created_or_updated")
    assert await gateway.nothing()
    row = await db(Authorization.objects.get)(pk=create["authorization"]["id"])
    assert row.revoked_at is None
    await client.disconnect()
    await gateway.disconnect()


async def test_reconnecting_from_outside_the_allowed_range_revokes_the_flow(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, policy = await db(setup_access)(acme, site, bob)
    await db(policy_services.update_policy)(
        policy,
        conditions=[
            {"property": "remote_ip", "operator": "is_in_cidr", "values": ["198.51.100.0/24"]}
        ],
    )
    gateway, _ = await gateway_online(token)
    secret = await db(client_token)(bob)
    key = new_key()
    client, _, _ = await open_client(secret, client_path(public_key=key), peer="198.51.100.20")
    create, _ = await authorized(client, gateway, resource.pk)
    auth_id = create["authorization"]["id"]
    await client.disconnect()
    # Same device, same key, another address: still inside keeps it ...
    client, _, _ = await open_client(secret, client_path(public_key=key), peer="198.51.100.21")
    assert await gateway.nothing()
    await client.disconnect()
    # ... outside loses it at once.
    client, _, _ = await open_client(secret, client_path(public_key=key), peer="203.0.113.50")
    reject = await gateway.receive_type("reject_access")
    assert reject["authorization_ids"] == [auth_id]
    row = await db(Authorization.objects.get)(pk=auth_id)
    assert row.revoke_reason == "client_context_changed"
    await client.disconnect()
    await gateway.disconnect()


async def test_a_disconnecting_client_abandons_flows_still_waiting_for_their_ack(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    _, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    client, _, _ = await open_client(await db(client_token)(bob))
    await client.request(resource.pk)
    create = await gateway.receive_type("create_authorization")
    await client.disconnect()
    reject = await gateway.receive_type("reject_access")
    assert reject["authorization_ids"] == [create["authorization"]["id"]]
    await gateway.disconnect()


async def test_heartbeats_are_answered_and_bad_frames_get_an_error(bob: Actor) -> None:
    client, _, _ = await open_client(await db(client_token)(bob))
    await client.send({"type": "heartbeat"})
    assert (await client.receive())["type"] == "heartbeat_reply"
    await client.send({"type": "request_authorization", "resource_id": "nope"})
    error = await client.receive()
    assert error["type"] == "error" and error["code"] == "invalid_message"
    await client.send({"type": "authorization_ack", "authorization_id": str(bob.pk)})
    error = await client.receive()
    assert error["code"] == "invalid_message" and "from the client" in error["reason"]
    await asyncio.sleep(0)
    await client.disconnect()


async def test_the_session_providers_condition_grants_and_disabling_it_revokes(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    from datetime import timedelta

    _, resource, policy = await db(setup_access)(acme, site, bob)
    provider = await db(account_services.create_auth_provider)(acme, name="Email", kind="email")
    await db(policy_services.update_policy)(
        policy,
        conditions=[{"property": "provider_id", "operator": "is_in", "values": [str(provider.pk)]}],
    )
    gateway, _ = await gateway_online(token)

    def signed_in_token() -> str:
        issued = account_services.create_token(
            acme, kind=Token.Kind.CLIENT, actor=bob, expires_at=timezone.now() + timedelta(hours=1)
        )
        Token.objects.filter(pk=issued.token.pk).update(provider=provider)
        return issued.secret

    # A token not signed in through the provider fails the condition.
    plain, _, _ = await open_client(await db(client_token)(bob), client_path(external_id="a"))
    await plain.request(resource.pk)
    answer = await plain.receive()
    assert (answer["reason"], answer["violated"]) == ("forbidden", ["provider_id"])
    await plain.disconnect()
    client, _, _ = await open_client(await db(signed_in_token)(), client_path(external_id="b"))
    create, created = await authorized(client, gateway, resource.pk)
    assert created["type"] == "authorization_created"
    await db(account_services.disable_auth_provider)(provider)
    reject = await gateway.receive_type("reject_access")
    assert create["authorization"]["id"] in reject["authorization_ids"]
    code, _ = await client.close_code()
    assert code == 4001  # its token was revoked with the provider
    await gateway.disconnect()


async def test_a_moved_resource_and_an_expired_flow_are_revoked(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    from datetime import timedelta

    from gateways import services as gateway_services

    _, resource, _ = await db(setup_access)(acme, site, bob)
    gateway, _ = await gateway_online(token)
    client, _, _ = await open_client(await db(client_token)(bob))
    first, _ = await authorized(client, gateway, resource.pk)
    second, _ = await authorized(client, gateway, resource.pk)
    # The time window ended (or the session): the beat job expires it.
    await db(
        lambda: Authorization.objects.filter(pk=first["authorization"]["id"]).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    )()
    assert await db(gateway_services.expire_authorizations)() == 1
    reject = await gateway.receive_type("reject_access")
    assert reject["authorization_ids"] == [first["authorization"]["id"]]
    other_site = await db(gateway_services.create_site)(acme, name="Paris")
    await db(policy_services.update_resource)(resource, site=other_site)
    reject = await gateway.receive_type("reject_access")
    assert reject["authorization_ids"] == [second["authorization"]["id"]]
    await client.disconnect()
    await gateway.disconnect()
