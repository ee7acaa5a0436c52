"""Every form: bad input gives an inline error (422) and saves nothing; good input saves."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.integration.ui.test_access import _snapshot

pytestmark = pytest.mark.django_db


def _error(response: Any, field: str) -> str:
    """The inline error text shown for ``field`` (or raise)."""
    html: str = response.content.decode()
    marker = f'data-field="{field}">'
    assert response.status_code == 422, html[:300]
    assert marker in html, f"no inline error for {field}"
    return html.split(marker, 1)[1].split("</p>", 1)[0]


BAD_POSTS: list[tuple[str, tuple[str, ...], dict[str, Any], str, str]] = [
    # (url name, world keys, data, field with the error, expected text)
    ("site_new", (), {"name": "  "}, "name", "required"),
    ("site_new", (), {"name": "HQ"}, "name", "already exists"),
    ("site_edit", ("site",), {"name": ""}, "name", "required"),
    (
        "resource_new",
        (),
        {
            "name": "Bad",
            "kind": "cidr",
            "address": "0.0.0.0/0",
            "site": "{site}",
            "ip_stack": "dual",
        },
        "address",
        "",
    ),
    (
        "resource_new",
        (),
        {
            "name": "Bad",
            "kind": "ip",
            "address": "10.0.0.1:22",
            "site": "{site}",
            "ip_stack": "dual",
        },
        "address",
        "port",
    ),
    (
        "resource_new",
        (),
        {"name": "Bad", "kind": "dns", "address": "*.com", "site": "{site}", "ip_stack": "dual"},
        "address",
        "",
    ),
    (
        "resource_new",
        (),
        {
            "name": "Bad",
            "kind": "dns",
            "address": "app.example.com",
            "site": "{site}",
            "ip_stack": "dual",
            "filter_tcp": "on",
            "ports_tcp": "70000",
        },
        "ports_tcp",
        "",
    ),
    (
        "resource_new",
        (),
        {
            "name": "Bad",
            "kind": "dns",
            "address": "app.example.com",
            "site": "",
            "ip_stack": "dual",
        },
        "site",
        "",
    ),
    (
        "resource_new",
        (),
        {"name": "Wiki", "kind": "ip", "address": "10.9.9.9", "site": "{site}", "ip_stack": "dual"},
        "name",
        "already exists",
    ),
    (
        "resource_edit",
        ("resource",),
        {
            "name": "Wiki",
            "kind": "cidr",
            "address": "127.0.0.0/8",
            "site": "{site}",
            "ip_stack": "dual",
        },
        "address",
        "",
    ),
    ("group_new", (), {"name": "Engineering"}, "name", "already exists"),
    ("group_new", (), {"name": ""}, "name", "required"),
    ("group_edit", ("group",), {"name": "Everyone"}, "name", "already exists"),
    ("group_member_add", ("group",), {"email": "nobody@acme.test"}, "email", "No actor"),
    (
        "group_members_set",
        ("group",),
        {"emails": "bob@acme.test\nghost@acme.test"},
        "emails",
        "ghost@acme.test",
    ),
    ("actor_new", (), {"name": "X", "email": "not-an-email", "type": "user"}, "email", "valid"),
    (
        "actor_new",
        (),
        {"name": "X", "email": "bob@acme.test", "type": "user"},
        "email",
        "already exists",
    ),
    (
        "actor_new",
        (),
        {"name": "X", "email": "x@acme.test", "type": "user", "password": "short"},
        "password",
        "12",
    ),
    ("actor_new", (), {"name": "", "email": "y@acme.test", "type": "user"}, "name", "required"),
    (
        "actor_edit",
        ("bob",),
        {"name": "Bob", "email": "alice@acme.test", "type": "user"},
        "email",
        "already exists",
    ),
    ("policy_new", (), {"group": "Nope", "resource": "Wiki"}, "group", "No group"),
    (
        "policy_edit",
        ("policy",),
        {"group": "Engineering", "resource": "Nope"},
        "resource",
        "No resource",
    ),
    ("policy_new", (), {"group": "Engineering", "resource": "Wiki"}, "group", "exists"),
    (
        "policy_new",
        (),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "ip_operator": "is_in_cidr",
            "ip_values": "10.0.0.0/33",
        },
        "ip_values",
        "not an IP",
    ),
    (
        "policy_new",
        (),
        {"group": "Everyone", "resource": "Wiki", "ip_operator": "is_in_cidr", "ip_values": ""},
        "ip_values",
        "at least one",
    ),
    (
        "policy_new",
        (),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "country_operator": "is_in",
            "country_values": "Germany",
        },
        "country_values",
        "two-letter",
    ),
    (
        "policy_new",
        (),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "time_enabled": "on",
            "time_zone": "Mars/Olympus",
            "time_M": "09:00-17:00",
        },
        "time_zone",
        "Unknown time zone",
    ),
    (
        "policy_new",
        (),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "time_enabled": "on",
            "time_zone": "Europe/Berlin",
            "time_T": "17:00-09:00",
        },
        "time_T",
        "end after",
    ),
    (
        "policy_new",
        (),
        {"group": "Everyone", "resource": "Wiki", "time_enabled": "on", "time_zone": "UTC"},
        "time_enabled",
        "at least one day",
    ),
    (
        "policy_edit",
        ("policy",),
        {
            "group": "Engineering",
            "resource": "Wiki",
            "ip_operator": "is_not_in_cidr",
            "ip_values": "nope",
        },
        "ip_values",
        "not an IP",
    ),
    (
        "device_new",
        (),
        {"actor": "bob@acme.test", "name": "K", "public_key": "abc"},
        "public_key",
        "public key",
    ),
    ("device_new", (), {"actor": "bob@acme.test", "name": "Bob laptop"}, "name", "already have"),
    ("device_new", (), {"actor": "ghost@acme.test", "name": "Z"}, "actor", "No user"),
]


@pytest.mark.parametrize(("name", "keys", "data", "field", "text"), BAD_POSTS)
def test_bad_input_shows_an_inline_error_and_saves_nothing(
    alice_client: Client,
    world: Any,
    bob: Any,
    acme: Any,
    name: str,
    keys: tuple[str, ...],
    data: dict[str, Any],
    field: str,
    text: str,
) -> None:
    objs = {**world, "bob": bob}
    url = reverse(name, args=[objs[k].pk for k in keys])
    data = {
        k: (v.format(site=world["site"].pk) if isinstance(v, str) else v) for k, v in data.items()
    }
    before = _snapshot(acme)
    response = alice_client.post(url, data)
    message = _error(response, field)
    assert text in message
    assert _snapshot(acme) == before


def test_settings_forms_show_inline_errors(alice_client: Client, world: Any, acme: Any) -> None:
    before = _snapshot(acme)
    response = alice_client.post(reverse("settings"), {"form": "account", "name": " "})
    assert "required" in _error(response, "name")
    response = alice_client.post(reverse("settings"), {"form": "token", "name": "x"})
    assert "Choose a service account" in _error(response, "actor")
    response = alice_client.post(
        reverse("settings"),
        {"form": "token", "actor": str(world["robot"].pk), "expires_in_days": "0"},
    )
    assert _error(response, "expires_in_days")
    assert _snapshot(acme) == before
    acme.refresh_from_db()
    assert acme.name == "Acme"


def test_member_device_form_rejects_a_bad_key(bob_client: Client, world: Any, acme: Any) -> None:
    before = _snapshot(acme)
    response = bob_client.post(reverse("device_new"), {"name": "Phone", "public_key": "x" * 44})
    assert "public key" in _error(response, "public_key")
    assert _snapshot(acme) == before


def test_managed_everyone_group_cannot_be_edited(
    alice_client: Client, world: Any, acme: Any, bob: Any
) -> None:
    everyone = world["everyone"]
    before = _snapshot(acme)
    assert (
        alice_client.post(reverse("group_edit", args=[everyone.pk]), {"name": "All"}).status_code
        == 403
    )
    assert alice_client.post(reverse("group_delete", args=[everyone.pk])).status_code == 403
    response = alice_client.post(reverse("group_member_remove", args=[everyone.pk, bob.pk]))
    assert response.status_code == 302
    response = alice_client.post(
        reverse("group_member_add", args=[everyone.pk]), {"email": "bob@acme.test"}
    )
    assert response.status_code == 422
    assert _snapshot(acme) == before
    page = alice_client.get(reverse("group_detail", args=[everyone.pk])).content.decode()
    assert "managed" in page
    assert reverse("group_edit", args=[everyone.pk]) not in page


def test_the_last_admin_cannot_be_disabled(
    alice_client: Client, world: Any, alice: Any, acme: Any
) -> None:
    before = _snapshot(acme)
    response = alice_client.post(reverse("actor_disable", args=[alice.pk]))
    assert response.status_code == 422
    assert b"at least one active admin" in response.content
    assert _snapshot(acme) == before


def test_site_with_resources_cannot_be_deleted(alice_client: Client, world: Any, acme: Any) -> None:
    before = _snapshot(acme)
    response = alice_client.post(reverse("site_delete", args=[world["site"].pk]))
    assert response.status_code == 422
    assert b"resources first" in response.content
    assert _snapshot(acme) == before
