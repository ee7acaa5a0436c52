"""Regressions for defects a review found in the web UI."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts import services as account_services
from accounts.models import Account, Actor

pytestmark = pytest.mark.django_db


def test_an_account_admin_cannot_take_over_a_staff_actor(
    acme: Account, alice: Actor, charlie: Actor
) -> None:
    root = account_services.create_actor(
        acme,
        email="root@acme.test",
        name="Root",
        type=Actor.Type.ADMIN,
        password="r" * 20,
        staff=True,
    )
    client = Client()
    client.force_login(alice.user)
    response = client.post(
        f"/actors/{root.pk}/edit/",
        {"name": "Root", "email": "root@acme.test", "type": "admin", "password": "attacker-pw-123"},
    )
    assert response.status_code == 403
    for action in ("disable", "delete"):
        assert client.post(f"/actors/{root.pk}/{action}/").status_code == 403
    root.refresh_from_db()
    assert root.disabled_at is None
    assert not Client().login(username="acme/root@acme.test", password="attacker-pw-123")
    # The staff actor may still edit themselves.
    own = Client()
    own.force_login(root.user)
    response = own.post(
        f"/actors/{root.pk}/edit/",
        {"name": "Root 2", "email": "root@acme.test", "type": "admin", "password": ""},
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    "page", ["groups", "actors", "resources", "sites", "policies", "devices", "audit"]
)
def test_a_nul_character_in_search_is_not_a_server_error(
    acme: Account, alice: Actor, page: str
) -> None:
    client = Client()
    client.force_login(alice.user)
    assert client.get(f"/{page}/?q=a%00b").status_code == 200


def test_clearing_the_email_of_actors_with_passwords_is_an_inline_error(
    acme: Account, alice: Actor
) -> None:
    client = Client()
    client.force_login(alice.user)
    actors = [
        account_services.create_actor(
            acme,
            email=f"s{i}@acme.test",
            name=f"S{i}",
            type="service_account",
            password="p" * 12,
        )
        for i in (1, 2)
    ]
    for actor in actors:
        response = client.post(
            f"/actors/{actor.pk}/edit/",
            {"name": actor.name, "email": "", "type": "service_account", "password": ""},
        )
        assert response.status_code in (200, 422)
        assert b"needs an email" in response.content
        actor.refresh_from_db()
        assert actor.email.startswith("s")
