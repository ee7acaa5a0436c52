"""CSRF on every form, and list pages whose query count does not grow with the rows shown."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.integration.ui.conftest import make_authorization
from tests.integration.ui.test_access import OBJECT_PAGES, _snapshot

pytestmark = pytest.mark.django_db

FORM_PAGES = [
    "site_new",
    "resource_new",
    "policy_new",
    "group_new",
    "actor_new",
    "settings",
    "device_new",
]


def _csrf_client(actor: Any) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(actor.user)
    return client


@pytest.mark.parametrize("name", FORM_PAGES)
def test_forms_carry_a_csrf_token_and_refuse_posts_without_it(
    alice: Any, world: Any, acme: Any, name: str
) -> None:
    client = _csrf_client(alice)
    page = client.get(reverse(name)).content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    before = _snapshot(acme)
    response = client.post(
        reverse(name), {"name": "Sneaky", "form": "account", "email": "s@acme.test", "type": "user"}
    )
    assert response.status_code == 403
    assert _snapshot(acme) == before


@pytest.mark.parametrize(("name", "keys", "method"), [p for p in OBJECT_PAGES if p[2] == "post"])
def test_object_actions_refuse_posts_without_csrf(
    alice: Any, bob: Any, world: Any, acme: Any, name: str, keys: tuple[str, ...], method: str
) -> None:
    client = _csrf_client(alice)
    objs = {**world, "bob": bob}
    before = _snapshot(acme)
    response = client.post(reverse(name, args=[objs[k].pk for k in keys]), {"name": "x"})
    assert response.status_code == 403
    assert _snapshot(acme) == before


def test_sign_in_refuses_posts_without_csrf(alice: Any) -> None:
    from tests.conftest import PASSWORD

    client = Client(enforce_csrf_checks=True)
    response = client.post(
        reverse("sign_in"), {"username": "alice@acme.test", "password": PASSWORD}
    )
    assert response.status_code == 403


def test_htmx_requests_send_the_csrf_header(alice_client: Client) -> None:
    html = alice_client.get(reverse("overview")).content.decode()
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


# --- query counts ------------------------------------------------------------------------------


def _grow(acme: Any, alice: Any, bob: Any, world: Any, start: int, stop: int) -> None:
    """Add rows numbered start..stop-1 to every list."""
    from accounts import services as accounts
    from accounts.models import Actor, Token
    from gateways import services as gateways
    from policies import services as policies

    site = world["site"]
    for i in range(start, stop):
        group = accounts.create_group(acme, name=f"g{i:03d}")
        actor = accounts.create_actor(acme, email=f"u{i:03d}@acme.test", name=f"u{i:03d}")
        accounts.add_member(group, actor)
        resource = policies.create_resource(
            acme, name=f"r{i:03d}", kind="ip", address=f"10.2.{i // 200}.{i % 200 + 1}", site=site
        )
        policy = policies.create_policy(
            acme,
            group=group,
            resource=resource,
            conditions=[{"property": "client_verified", "operator": "is", "values": ["true"]}],
        )
        gateways.create_site(acme, name=f"s{i:03d}")
        gateways.register_static_device(actor, name=f"d{i:03d}", public_key=None)
        make_authorization(actor, resource, policy)
        robot = accounts.create_actor(
            acme, email="", name=f"robot{i:03d}", type=Actor.Type.SERVICE_ACCOUNT
        )
        accounts.create_token(acme, kind=Token.Kind.API, actor=robot, name=f"t{i:03d}")
    del alice, bob


LIST_PAGES = [
    "resource_list",
    "policy_list",
    "group_list",
    "actor_list",
    "site_list",
    "device_list",
    "authorization_list",
    "settings",
    "overview",
]


def _count(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_list_pages_use_the_same_queries_for_5_and_50_rows(
    alice_client: Client, alice: Any, bob: Any, world: Any, acme: Any
) -> None:
    _grow(acme, alice, bob, world, 0, 4)
    few = {name: _count(alice_client, reverse(name)) for name in LIST_PAGES}
    _grow(acme, alice, bob, world, 4, 50)
    many = {name: _count(alice_client, reverse(name)) for name in LIST_PAGES}
    assert many == few
    # Every list does a handful of queries: session, user, actor, account, count, rows (+ extras).
    assert max(many.values()) <= 12, many
    rows = alice_client.get(reverse("resource_list")).content.decode()
    assert rows.count("/resources/") >= 50


def test_member_device_list_is_constant_too(bob_client: Client, bob: Any, world: Any) -> None:
    from gateways import services as gateways

    before = _count(bob_client, reverse("device_list"))
    for i in range(10):
        gateways.register_static_device(bob, name=f"bob-{i}")
    assert _count(bob_client, reverse("device_list")) == before
