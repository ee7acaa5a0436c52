"""Static devices: registration, configs, preshared keys, gateway assignment and failover."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from accounts import services as account_services
from accounts.models import Account, Actor
from firezone_site.errors import ValidationFailed
from gateways import configs, queries, services
from gateways.models import Authorization, ClientDevice, Gateway, StaticDeviceAssignment
from policies import services as policy_services
from policies.models import Site

from .conftest import db, gateway_with_flow, new_key, open_gateway, ws_path

pytestmark = pytest.mark.django_db(transaction=True)


def parse_config(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """wg-quick sections (repeated [Peer] sections) as dicts."""
    interface: dict[str, str] = {}
    peers: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == "[Interface]":
            current = interface
        elif line == "[Peer]":
            current = {}
            peers.append(current)
        else:
            assert current is not None, line
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return interface, peers


def grant(
    acme: Account,
    site: Site,
    actor: Actor,
    address: str = "10.1.0.0/24",
    kind: str = "cidr",
    name: str = "LAN",
) -> Any:
    group = account_services.create_group(acme, name=f"g-{name}")
    account_services.add_member(group, actor)
    resource = policy_services.create_resource(
        acme, name=name, kind=kind, address=address, site=site
    )
    policy_services.create_policy(acme, group=group, resource=resource)
    return resource


async def test_registration_with_a_generated_key_returns_the_private_key_once(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    await db(grant)(acme, site, bob, address="docs.example.com", kind="dns", name="Docs")
    gateway, init = await open_gateway(token, ws_path(endpoint="198.51.100.9:51820"))
    assert init is not None
    registered = await db(services.register_static_device)(bob, name="phone")
    assert registered.private_key is not None
    private = X25519PrivateKey.from_private_bytes(base64.b64decode(registered.private_key))
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert base64.b64encode(public).decode() == registered.device.public_key

    interface, peers = parse_config(registered.config.text)
    assert interface["PrivateKey"] == registered.private_key
    device = registered.device
    assert interface["Address"] == f"{device.ipv4}/32, {device.ipv6}/128"
    assert interface["MTU"] == "1280"
    assert len(peers) == 1
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert peers[0]["PublicKey"] == row.public_key
    assert peers[0]["Endpoint"] == "198.51.100.9:51820"
    assert peers[0]["AllowedIPs"] == "10.1.0.0/24"  # the dns resource cannot be expressed
    assert peers[0]["PersistentKeepalive"] == "25"
    assert f"# config version {registered.config.version}" in registered.config.text
    assert registered.config.filename.endswith(".conf")
    assert len(registered.config.filename) <= 15 + len(".conf")

    # The private key is never stored: later downloads carry a placeholder.
    later = await db(configs.device_config)(device)
    assert registered.private_key not in later.text
    assert parse_config(later.text)[0]["PrivateKey"] == configs.PRIVATE_KEY_PLACEHOLDER
    stored = await db(lambda: ClientDevice.objects.get(pk=device.pk))()
    assert registered.private_key not in str(stored.__dict__)
    await gateway.disconnect()


async def test_registration_with_a_public_key_returns_no_private_key(
    acme: Account, site: Site, bob: Actor
) -> None:
    key = new_key()
    registered = await db(services.register_static_device)(bob, name="laptop", public_key=key)
    assert registered.private_key is None
    assert registered.device.public_key == key
    assert configs.PRIVATE_KEY_PLACEHOLDER in registered.config.text
    assert registered.device.kind == ClientDevice.Kind.STATIC


@pytest.mark.parametrize(
    ("name", "key", "field"),
    [("", None, "name"), ("ok", "not-a-key", "public_key"), ("ok", "AAAA", "public_key")],
)
async def test_registration_validates_its_input(
    bob: Actor, name: str, key: str | None, field: str
) -> None:
    with pytest.raises(ValidationFailed) as info:
        await db(services.register_static_device)(bob, name=name, public_key=key)
    assert field in info.value.errors


async def test_a_key_or_name_cannot_be_registered_twice(bob: Actor, alice: Actor) -> None:
    key = new_key()
    await db(services.register_static_device)(bob, name="phone", public_key=key)
    with pytest.raises(ValidationFailed) as info:
        await db(services.register_static_device)(alice, name="other", public_key=key)
    assert "public_key" in info.value.errors
    with pytest.raises(ValidationFailed) as info:
        await db(services.register_static_device)(bob, name="phone")
    assert "name" in info.value.errors


async def test_preshared_keys_differ_per_pair_and_match_no_public_value(
    acme: Account, site: Site, bob: Actor, alice: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    first, _ = await open_gateway(token, ws_path(external_id="a"))
    second, _ = await open_gateway(token, ws_path(external_id="b"))
    one = await db(services.register_static_device)(bob, name="one")
    two = await db(services.register_static_device)(bob, name="two")
    gateways = await db(lambda: list(Gateway.objects.for_account(acme)))()
    secret = await db(queries.key_secret)(acme.pk)
    psks = {
        (d.pk, g.pk): queries.derive_preshared_key(secret, d.pk, g.pk)
        for d in (one.device, two.device)
        for g in gateways
    }
    assert len(set(psks.values())) == 4
    public = {one.device.public_key, two.device.public_key, *(g.public_key for g in gateways)}
    assert not public & set(psks.values())
    for psk in psks.values():
        assert len(base64.b64decode(psk)) == 32
    # Without the account secret the same inputs give other keys.
    other = queries.derive_preshared_key(b"\0" * 32, one.device.pk, gateways[0].pk)
    assert other not in psks.values()
    # The config's PSK is the one the gateway gets.
    _, peers = parse_config(one.config.text)
    assigned = await db(
        lambda: StaticDeviceAssignment.objects.for_account(acme).get(device=one.device)
    )()
    assert peers[0]["PresharedKey"] == psks[(one.device.pk, assigned.gateway_id)]
    await first.disconnect()
    await second.disconnect()


async def test_devices_spread_over_the_least_loaded_gateways(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    a, _ = await open_gateway(token, ws_path(external_id="a"))
    b, _ = await open_gateway(token, ws_path(external_id="b"))
    for i in range(4):
        await db(services.register_static_device)(bob, name=f"d{i}")
    loads = await db(
        lambda: sorted(
            StaticDeviceAssignment.objects.for_account(acme).values_list("gateway_id", flat=True)
        )
    )()
    assert len(set(loads)) == 2 and loads.count(loads[0]) == 2
    await a.disconnect()
    await b.disconnect()


async def test_a_gateway_going_offline_hands_its_devices_to_another(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    a, init_a = await open_gateway(token, ws_path(external_id="a"))
    assert init_a is not None
    registered = await db(services.register_static_device)(bob, name="phone")
    await a.receive_type("add_static_peer")
    b, init_b = await open_gateway(token, ws_path(external_id="b"))
    assert init_b is not None
    assert init_b["static_peers"] == []  # a still serves the device
    version = registered.config.version
    await a.disconnect()

    moved = await b.receive_type("add_static_peer")
    assert moved["peer"]["public_key"] == registered.device.public_key
    assignment = await db(
        lambda: StaticDeviceAssignment.objects.for_account(acme).get(device=registered.device)
    )()
    assert str(assignment.gateway_id) == init_b["gateway_id"]
    config = await db(configs.device_config)(registered.device)
    assert config.version == version + 1
    gw_b = await db(lambda: Gateway.objects.get(pk=init_b["gateway_id"]))()
    assert parse_config(config.text)[1][0]["PublicKey"] == gw_b.public_key
    # Back online, a gets nothing (b keeps the device) until b goes away.
    a2, init_a2 = await open_gateway(token, ws_path(external_id="a"))
    assert init_a2 is not None and init_a2["static_peers"] == []
    await b.disconnect()
    assert (await a2.receive_type("add_static_peer"))["peer"]["public_key"] == (
        registered.device.public_key
    )
    await a2.disconnect()


async def test_a_device_registered_before_any_gateway_is_adopted_by_the_first(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    registered = await db(services.register_static_device)(bob, name="phone")
    assert "no gateway yet" in registered.config.text
    assert parse_config(registered.config.text)[1] == []
    gateway, init = await open_gateway(token)
    assert init is not None
    assert [p["public_key"] for p in init["static_peers"]] == [registered.device.public_key]
    peer = init["static_peers"][0]
    assert peer["ipv4"] == registered.device.ipv4
    assert [r["address"] for r in peer["resources"]] == ["10.1.0.0/24"]
    config = await db(configs.device_config)(registered.device)
    assert config.version == registered.config.version + 1
    assert len(parse_config(config.text)[1]) == 1
    await gateway.disconnect()


async def test_disabling_and_deleting_a_device_remove_it_from_its_gateway(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    await db(grant)(acme, site, bob)
    gateway, _ = await open_gateway(token)
    registered = await db(services.register_static_device)(bob, name="phone")
    await gateway.receive_type("add_static_peer")
    await db(services.disable_device)(registered.device)
    removed = await gateway.receive_type("remove_static_peer")
    assert removed["public_key"] == registered.device.public_key
    await db(services.enable_device)(registered.device)
    await gateway.receive_type("add_static_peer")
    await db(services.delete_device)(registered.device)
    removed = await gateway.receive_type("remove_static_peer")
    assert removed["public_key"] == registered.device.public_key
    assert not await db(
        lambda: ClientDevice.objects.for_account(acme).filter(pk=registered.device.pk).exists()
    )()
    await gateway.disconnect()


async def test_disabling_or_deleting_a_device_revokes_only_that_devices_flows(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)  # bob's other (dynamic) device
    registered = await db(services.register_static_device)(bob, name="phone")
    await flow.gateway.receive_type("add_static_peer")

    def authorize_phone() -> Authorization:
        return Authorization.objects.create(
            account=acme,
            actor=bob,
            device=registered.device,
            resource=flow.resource,
            policy=flow.policy,
            gateway_id=flow.init["gateway_id"],
        )

    def reasons() -> dict[uuid.UUID, str]:
        rows = Authorization.objects.for_account(acme).filter(revoked_at__isnull=False)
        return dict(rows.values_list("pk", "revoke_reason"))

    disabled_flow = await db(authorize_phone)()
    await db(services.disable_device)(registered.device)
    await flow.gateway.receive_type("remove_static_peer")
    rejected = await flow.gateway.receive_type("reject_access")
    assert rejected["authorization_ids"] == [str(disabled_flow.pk)]
    assert await db(reasons)() == {disabled_flow.pk: "device_disabled"}

    await db(services.enable_device)(registered.device)
    await flow.gateway.receive_type("add_static_peer")
    deleted_flow = await db(authorize_phone)()
    await db(services.delete_device)(registered.device)
    await flow.gateway.receive_type("remove_static_peer")
    rejected = await flow.gateway.receive_type("reject_access")
    assert rejected["authorization_ids"] == [str(deleted_flow.pk)]
    assert await db(reasons)() == {
        disabled_flow.pk: "device_disabled",
        deleted_flow.pk: "device_deleted",
    }
    await flow.gateway.disconnect()


async def test_readdressing_a_resource_changes_the_config_version(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    resource = await db(grant)(acme, site, bob)
    gateway, _ = await open_gateway(token)
    registered = await db(services.register_static_device)(bob, name="phone")
    await gateway.receive_type("add_static_peer")
    before = await db(configs.device_config)(registered.device)
    await db(policy_services.update_resource)(resource, address="10.7.0.0/16")
    after = await db(configs.device_config)(registered.device)
    assert after.version == before.version + 1
    assert parse_config(after.text)[1][0]["AllowedIPs"] == "10.7.0.0/16"
    # The gateway gets the peer again with the new address.
    pushed = await gateway.receive_type("add_static_peer")
    assert [r["address"] for r in pushed["peer"]["resources"]] == ["10.7.0.0/16"]
    await gateway.disconnect()
    # An unrelated change keeps the version.
    await db(account_services.create_group)(acme, name="unrelated")
    assert (await db(configs.device_config)(registered.device)).version == after.version


def test_qr_svg_renders_an_svg() -> None:
    svg = configs.qr_svg("[Interface]\nPrivateKey = x\n")
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "<path" in svg


def test_filenames_are_valid_wg_quick_interface_names() -> None:
    device = ClientDevice(name="Bob's very long phone name!", id=uuid.uuid4())
    name = configs.filename_for(device)
    stem = name.removesuffix(".conf")
    assert 1 <= len(stem) <= 15
    assert all(c.isalnum() or c in "_=+.-" for c in stem)
