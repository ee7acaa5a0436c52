"""Fixtures for the web UI tests: a populated acme (alice admin, bob member), globex (charlie)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone


def signed_in(actor: Any) -> Client:
    client = Client()
    client.force_login(actor.user)
    return client


@pytest.fixture
def alice_client(alice: Any) -> Client:
    return signed_in(alice)


@pytest.fixture
def bob_client(bob: Any) -> Client:
    return signed_in(bob)


@pytest.fixture
def charlie_client(charlie: Any) -> Client:
    return signed_in(charlie)


def make_authorization(
    actor: Any, resource: Any, policy: Any, device: Any = None, **extra: Any
) -> Any:
    """An audit row as the authorization flow writes it (no service creates one outside the
    websocket flow, so tests insert it directly)."""
    from gateways.models import Authorization

    return Authorization.objects.create(
        account_id=actor.account_id,
        actor=actor,
        device=device,
        resource=resource,
        policy=policy,
        actor_email=actor.email,
        resource_name=resource.name,
        resource_address=resource.address,
        client_remote_ip="198.51.100.7",
        expires_at=timezone.now() + timedelta(hours=1),
        **extra,
    )


@pytest.fixture
def world(acme: Any, alice: Any, bob: Any) -> dict[str, Any]:
    """acme's objects: a site, a resource, a group with bob, a policy, bob's static device,
    a service-account API token and an authorization."""
    from accounts import services as accounts
    from accounts.models import Actor, Token
    from gateways import services as gateways
    from policies import services as policies

    site = gateways.create_site(acme, name="HQ")
    gateway_token = gateways.issue_gateway_token(site)
    resource = policies.create_resource(
        acme,
        name="Wiki",
        kind="cidr",
        address="10.1.0.0/24",
        site=site,
        filters=[{"protocol": "tcp", "ports": ["443"]}],
    )
    group = accounts.create_group(acme, name="Engineering")
    accounts.add_member(group, bob)
    policy = policies.create_policy(acme, group=group, resource=resource)
    device = gateways.register_static_device(bob, name="Bob laptop").device
    alice_device = gateways.register_static_device(alice, name="Alice laptop").device
    robot = accounts.create_actor(acme, email="", name="CI robot", type=Actor.Type.SERVICE_ACCOUNT)
    api_token = accounts.create_token(acme, kind=Token.Kind.API, actor=robot, name="ci")
    authorization = make_authorization(bob, resource, policy, device)
    return {
        "site": site,
        "gateway_token": gateway_token.token,
        "resource": resource,
        "group": group,
        "policy": policy,
        "device": device,
        "alice_device": alice_device,
        "robot": robot,
        "api_token": api_token.token,
        "authorization": authorization,
        "everyone": accounts.everyone_group(acme),
    }
