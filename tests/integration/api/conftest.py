"""API fixtures: alice's world in acme (an API client's token, a service account's token as the
"member", one object of every kind), charlie's API client token in globex."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Account, Actor, AuthProvider, Directory, Group, Membership, Token
from gateways import services as gateway_services
from gateways.models import Authorization, ClientDevice, Gateway
from policies import services as policy_services
from policies.models import Policy, Resource, Site


def api_token(account: Account, actor_type: str, name: str, **kw: Any) -> str:
    actor = account_services.create_actor(account, email="", name=name, type=actor_type)
    expires_at = kw.pop("expires_at", timezone.now() + timedelta(days=30))
    return account_services.create_token(
        account, kind=Token.Kind.API, actor=actor, name=name, expires_at=expires_at, **kw
    ).secret


def client_for(secret: str | None) -> APIClient:
    client = APIClient()
    if secret is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


def make_gateway(site: Site) -> Gateway:
    addresses = gateway_services.allocate_tunnel_address(site.account_id)
    return Gateway.objects.create(
        account_id=site.account_id, site=site, external_id=str(uuid.uuid4()), name="gw-1",
        public_key=gateway_services.generate_key_pair()[1], address=addresses.slot,
        ipv4=addresses.ipv4, ipv6=addresses.ipv6,
    )  # fmt: skip


def make_dynamic_device(actor: Actor) -> ClientDevice:
    addresses = gateway_services.allocate_tunnel_address(actor.account_id)
    return ClientDevice.objects.create(
        account_id=actor.account_id, actor=actor, external_id=str(uuid.uuid4()), name="laptop",
        public_key=gateway_services.generate_key_pair()[1], address=addresses.slot,
        ipv4=addresses.ipv4, ipv6=addresses.ipv6,
    )  # fmt: skip


@dataclass
class World:
    """One object of every kind the API serves, in one account."""

    account: Account
    secret: str  # an API client's token
    member_secret: str  # a service account's token
    actor: Actor
    site: Site
    resource: Resource
    group: Group
    membership: Membership
    policy: Policy
    gateway: Gateway
    gateway_token: Token
    device: ClientDevice
    static_device: ClientDevice
    authorization: Authorization
    api_token: Token
    provider: AuthProvider
    directory: Directory

    def ids(self) -> dict[str, str]:
        return {k: str(v.pk) for k, v in vars(self).items() if hasattr(v, "pk")}


def build_world(account: Account, person: Actor) -> World:
    secret = api_token(account, Actor.Type.API_CLIENT, "Terraform")
    member_secret = api_token(account, Actor.Type.SERVICE_ACCOUNT, "Headless")
    token = account_services.use_token(secret, kind=Token.Kind.API)
    assert token is not None
    site = gateway_services.create_site(account, name="HQ")
    resource = policy_services.create_resource(
        account, name="Wiki", kind="dns", address="wiki.internal", site=site,
        filters=[{"protocol": "tcp", "ports": ["443"]}],
    )  # fmt: skip
    group = account_services.create_group(account, name="Engineering")
    membership = account_services.add_member(group, person)
    policy = policy_services.create_policy(account, group=group, resource=resource)
    gateway = make_gateway(site)
    gateway_token = gateway_services.issue_gateway_token(site).token
    device = make_dynamic_device(person)
    static = gateway_services.register_static_device(person, name="router").device
    authorization = Authorization.objects.create(
        account_id=account.pk, actor=person, device=device, resource=resource, policy=policy,
        gateway=gateway, actor_email=person.email, resource_name=resource.name,
        resource_address=resource.address, expires_at=timezone.now() + timedelta(hours=1),
    )  # fmt: skip
    provider = account_services.create_auth_provider(account, name="Email", kind="email")
    directory = account_services.create_directory(account, name="SCIM", kind="scim")
    return World(
        account, secret, member_secret, person, site, resource, group, membership, policy,
        gateway, gateway_token, device, static, authorization, token, provider, directory,
    )  # fmt: skip


@pytest.fixture
def alice_world(acme: Account, alice: Actor, bob: Actor) -> World:
    return build_world(acme, bob)


@pytest.fixture
def charlie_world(globex: Account, charlie: Actor) -> World:
    return build_world(globex, charlie)
