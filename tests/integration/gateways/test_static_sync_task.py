"""The account-wide static-device recomputation: queued after the commit, coalesced per account,
and what the Celery task does when it runs. Revocation does not wait for it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from accounts import services as account_services
from accounts.models import Account, Actor
from gateways import configs, services, tasks
from gateways.models import ClientDevice, StaticDeviceAssignment
from policies import services as policy_services
from policies.models import Resource, Site

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Record what is enqueued instead of running it (the default in tests: inline)."""
    calls: list[str] = []
    monkeypatch.setattr(tasks.sync_account_static_devices, "delay", calls.append)
    yield calls
    for account_id in set(calls):
        tasks._clear_pending(uuid.UUID(account_id))


@pytest.fixture
def online_gateway(token: str) -> None:
    from .conftest import new_key

    services.connect_gateway(
        secret=token,
        params=services.GatewayParams(
            external_id="gw", name="gw", public_key=new_key(), version="0.1.0", endpoint=""
        ),
        remote_ip="127.0.0.1",
        channel_name="test",
    )


def resources_of(device: ClientDevice) -> set[str]:
    return {
        rid for a in StaticDeviceAssignment.objects.filter(device=device) for rid in a.resource_ids
    }


def lan(account: Account, site: Site, name: str, address: str) -> Resource:
    return policy_services.create_resource(
        account, name=name, kind="cidr", address=address, site=site
    )


def test_a_burst_of_policy_edits_queues_one_run_that_brings_configs_up_to_date(
    acme: Account, site: Site, bob: Actor, online_gateway: None, queued: list[str]
) -> None:
    group = account_services.create_group(acme, name="Engineering")
    account_services.add_member(group, bob)
    first, second = lan(acme, site, "one", "10.1.0.0/24"), lan(acme, site, "two", "10.2.0.0/24")
    queued.clear()
    tasks._clear_pending(acme.pk)
    device = services.register_static_device(bob, name="laptop").device
    version = ClientDevice.objects.get(pk=device.pk).config_version

    policy_services.create_policy(acme, group=group, resource=first)
    policy_services.create_policy(acme, group=group, resource=second)
    assert queued == [str(acme.pk)], "two edits, one queued run"
    assert resources_of(device) == set(), "the request did not recompute the account"

    assert tasks.sync_account_static_devices(str(acme.pk)) == 1
    assert resources_of(device) == {str(first.pk), str(second.pk)}
    current = ClientDevice.objects.get(pk=device.pk)
    assert current.config_version > version
    text = configs.device_config(current).text
    assert "10.1.0.0/24" in text and "10.2.0.0/24" in text
    assert tasks.sync_account_static_devices(str(acme.pk)) == 0, "idempotent"

    # The run cleared the marker: the next edit queues again.
    policy_services.update_resource(second, address="10.3.0.0/24")
    assert queued == [str(acme.pk), str(acme.pk)]


def test_revocation_does_not_wait_for_the_queued_run(
    acme: Account, site: Site, bob: Actor, online_gateway: None, queued: list[str]
) -> None:
    group = account_services.create_group(acme, name="Engineering")
    account_services.add_member(group, bob)
    kept, revoked = lan(acme, site, "kept", "10.1.0.0/24"), lan(acme, site, "gone", "10.2.0.0/24")
    policy_services.create_policy(acme, group=group, resource=kept)
    doomed = policy_services.create_policy(acme, group=group, resource=revoked)
    device = services.register_static_device(bob, name="laptop").device
    assert resources_of(device) == {str(kept.pk), str(revoked.pk)}
    policy_services.delete_policy(doomed)
    assert resources_of(device) == {str(kept.pk)}, "taken away in the request, not by the task"
    assert "10.2.0.0/24" not in configs.device_config(ClientDevice.objects.get(pk=device.pk)).text
    account_services.remove_member(group, bob)
    assert resources_of(device) == set()


def test_the_run_touches_only_its_own_account(
    acme: Account,
    site: Site,
    bob: Actor,
    globex: Account,
    globex_site: Site,
    charlie: Actor,
    queued: list[str],
) -> None:
    for account, place, actor in ((acme, site, bob), (globex, globex_site, charlie)):
        group = account_services.create_group(account, name="Engineering")
        account_services.add_member(group, actor)
        resource = lan(account, place, "lan", "10.1.0.0/24")
        services.register_static_device(actor, name="laptop")
        policy_services.create_policy(account, group=group, resource=resource)
    acme_device = ClientDevice.objects.get(actor=bob)
    globex_device = ClientDevice.objects.get(actor=charlie)
    tasks.sync_account_static_devices(str(acme.pk))
    assert resources_of(acme_device)
    assert resources_of(globex_device) == set(), "globex waits for its own run"
    tasks.sync_account_static_devices(str(globex.pk))
    assert resources_of(globex_device)


def test_a_narrowing_takes_only_what_no_other_policy_still_grants(
    acme: Account,
    site: Site,
    bob: Actor,
    alice: Actor,
    online_gateway: None,
    globex: Account,
    globex_site: Site,
    charlie: Actor,
    queued: list[str],
) -> None:
    staff = account_services.create_group(acme, name="Staff")
    admins = account_services.create_group(acme, name="Admins")
    for actor in (bob, alice):
        account_services.add_member(staff, actor)
    account_services.add_member(admins, alice)
    shared = lan(acme, site, "shared", "10.1.0.0/24")
    via_staff = policy_services.create_policy(acme, group=staff, resource=shared)
    policy_services.create_policy(acme, group=admins, resource=shared)
    bobs = services.register_static_device(bob, name="b").device
    alices = services.register_static_device(alice, name="a").device
    # globex holds a resource too; acme's narrowing must not touch it
    g_group = account_services.create_group(globex, name="Staff")
    account_services.add_member(g_group, charlie)
    g_res = lan(globex, globex_site, "lan", "10.1.0.0/24")
    policy_services.create_policy(globex, group=g_group, resource=g_res)
    charlies = services.register_static_device(charlie, name="c").device

    nobody = account_services.create_group(acme, name="Nobody")
    policy_services.update_policy(via_staff, group=nobody)  # bob loses, alice keeps via admins
    assert resources_of(bobs) == set()
    assert resources_of(alices) == {str(shared.pk)}
    assert resources_of(charlies) == {str(g_res.pk)}
    assert services.revoke_static_access(acme.pk, {shared.pk}) == 0, "nothing left to take"


async def test_a_readdressed_resource_reaches_the_gateway_before_the_queued_run(
    acme: Account, site: Site, bob: Actor, token: str, queued: list[str]
) -> None:
    from .conftest import db, open_gateway

    gateway, init = await open_gateway(token)
    assert init is not None

    def setup() -> Resource:
        group = account_services.create_group(acme, name="Staff")
        account_services.add_member(group, bob)
        resource = lan(acme, site, "lan", "10.1.0.0/24")
        policy_services.create_policy(acme, group=group, resource=resource)
        services.register_static_device(bob, name="laptop")
        return resource

    resource = await db(setup)()
    first = await gateway.receive_type("add_static_peer")
    assert first["peer"]["resources"][0]["address"] == "10.1.0.0/24"
    queued.clear()
    tasks._clear_pending(acme.pk)  # as if the queued run had started
    await db(policy_services.update_resource)(resource, address="10.9.0.0/24")
    moved = await gateway.receive_type("add_static_peer")
    assert [r["address"] for r in moved["peer"]["resources"]] == ["10.9.0.0/24"]
    assert queued == [str(acme.pk)]
    await gateway.disconnect()
