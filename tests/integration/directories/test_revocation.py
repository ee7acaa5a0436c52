"""Removals found by a sync reach the flows through the existing access events."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.directories.engine import run_sync
from accounts.models import Account, Actor, Directory, Group
from gateways import services as gateway_services
from gateways.models import Authorization, ClientDevice
from policies import services as policy_services
from policies.models import Policy

from .memory import MemoryDirectory

pytestmark = pytest.mark.django_db(transaction=True)


def flow(policy: Policy, actor: Actor) -> Authorization:
    addresses = gateway_services.allocate_tunnel_address(actor.account_id)
    device = ClientDevice.objects.create(
        account_id=actor.account_id,
        actor=actor,
        external_id=str(actor.pk),
        name="laptop",
        public_key=gateway_services.generate_key_pair()[1],
        address=addresses.slot,
        ipv4=addresses.ipv4,
        ipv6=addresses.ipv6,
    )
    return Authorization.objects.create(
        account_id=actor.account_id,
        actor=actor,
        device=device,
        resource=policy.resource,
        policy=policy,
        actor_email=actor.email,
        resource_name=policy.resource.name,
        resource_address=policy.resource.address,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def test_a_membership_removal_revokes_the_live_flow_and_only_that(
    okta_dir: Directory, remote: MemoryDirectory, acme: Account
) -> None:
    run_sync(okta_dir, remote)
    group = Group.objects.get(directory=okta_dir, provider_id="g1")
    site = gateway_services.create_site(acme, name="HQ")
    resource = policy_services.create_resource(
        acme, name="LAN", kind="cidr", address="10.1.0.0/24", site=site
    )
    policy = policy_services.create_policy(acme, group=group, resource=resource)
    actors = {a.provider_id: a for a in Actor.objects.filter(directory=okta_dir)}
    ann, ben = flow(policy, actors["u1"]), flow(policy, actors["u2"])

    remote.members["g1"].remove("u2")
    assert run_sync(okta_dir, remote).status == "succeeded"

    ann.refresh_from_db()
    ben.refresh_from_db()
    assert ben.revoked_at is not None
    assert ann.revoked_at is None  # still a member: her flow stays


def test_a_user_deleted_from_the_directory_loses_actor_and_flows(
    okta_dir: Directory, remote: MemoryDirectory, acme: Account
) -> None:
    run_sync(okta_dir, remote)
    group = Group.objects.get(directory=okta_dir, provider_id="g2")
    site = gateway_services.create_site(acme, name="HQ")
    resource = policy_services.create_resource(
        acme, name="LAN", kind="cidr", address="10.1.0.0/24", site=site
    )
    policy = policy_services.create_policy(acme, group=group, resource=resource)
    cat = Actor.objects.get(directory=okta_dir, provider_id="u3")
    auth = flow(policy, cat)
    del remote.users["u3"]
    remote.members["g1"].remove("u3")
    remote.members["g2"].clear()
    assert run_sync(okta_dir, remote).status == "succeeded"
    assert not Actor.objects.filter(pk=cat.pk).exists()
    auth.refresh_from_db()
    assert auth.revoked_at is not None


@pytest.mark.parametrize("how", ["active_false", "delete", "leave_group"])
def test_scim_deprovisioning_revokes_the_live_flow(acme: Account, how: str) -> None:
    import json

    from django.test import Client

    from accounts import services
    from accounts.directories import services as directory_services

    directory = services.create_directory(acme, name="SCIM", kind=Directory.Kind.SCIM)
    secret = directory_services.issue_scim_token(directory).secret
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    base = f"/scim/v2/{directory.pk}"

    def send(method: str, path: str, body: object = None) -> dict[str, object]:
        response = getattr(client, method)(
            base + path, data=json.dumps(body) if body else "", content_type="application/scim+json"
        )
        assert response.status_code < 300, response.content
        return json.loads(response.content) if response.content else {}

    user_schema = "urn:ietf:params:scim:schemas:core:2.0:User"
    ids = [
        send("post", "/Users", {"schemas": [user_schema], "userName": f"{n}@acme.test"})["id"]
        for n in ("eve", "fay")
    ]
    group = send(
        "post",
        "/Groups",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Ops",
            "members": [{"value": i} for i in ids],
        },
    )
    site = gateway_services.create_site(acme, name="HQ")
    resource = policy_services.create_resource(
        acme, name="LAN", kind="cidr", address="10.1.0.0/24", site=site
    )
    policy = policy_services.create_policy(
        acme, group=Group.objects.get(directory=directory), resource=resource
    )
    eve = Actor.objects.get(email="eve@acme.test")
    fay = Actor.objects.get(email="fay@acme.test")
    eves, fays = flow(policy, eve), flow(policy, fay)

    patch = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
    if how == "active_false":
        send(
            "patch",
            f"/Users/{ids[0]}",
            {
                "schemas": [patch],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
        )
    elif how == "delete":
        send("delete", f"/Users/{ids[0]}")
    else:
        send(
            "patch",
            f"/Groups/{group['id']}",
            {
                "schemas": [patch],
                "Operations": [{"op": "remove", "path": f'members[value eq "{ids[0]}"]'}],
            },
        )
    eves.refresh_from_db()
    fays.refresh_from_db()
    assert eves.revoked_at is not None
    assert fays.revoked_at is None
