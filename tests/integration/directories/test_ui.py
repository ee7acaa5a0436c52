"""Directory pages: add per kind, sync now, last run, SCIM token issue/rotate; admins only,
other accounts' directories not found."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts import services
from accounts.directories.engine import run_sync
from accounts.models import Account, Actor, Directory

from .memory import MemoryDirectory

pytestmark = pytest.mark.django_db


def signed_in(actor: Actor) -> Client:
    client = Client()
    assert actor.user is not None
    client.force_login(actor.user)
    return client


@pytest.fixture
def alice_client(alice: Actor) -> Client:
    return signed_in(alice)


def test_an_admin_adds_an_entra_directory_and_its_secret_is_never_shown(
    alice_client: Client, acme: Account
) -> None:
    page = alice_client.get("/directories/")
    assert page.status_code == 200
    for kind in ("google", "okta", "entra", "scim"):
        assert f'data-testid="new-{kind}"' in page.content.decode()
    response = alice_client.post(
        "/directories/new/?kind=entra",
        {
            "name": "Corp Entra",
            "sync_interval_minutes": "60",
            "tenant_id": "t-1",
            "client_id": "c-1",
            "client_secret": "s3cr3t-value",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    directory = Directory.objects.get(account=acme, name="Corp Entra")
    assert directory.kind == "entra" and directory.sync_interval.total_seconds() == 3600
    detail = alice_client.get(response["Location"]).content.decode()
    assert "s3cr3t-value" not in detail
    edit = alice_client.get(f"/directories/{directory.pk}/edit/").content.decode()
    assert "s3cr3t-value" not in edit and "t-1" in edit
    # Saving the form with the secret left empty keeps the stored one.
    alice_client.post(
        f"/directories/{directory.pk}/edit/",
        {
            "name": "Corp Entra",
            "sync_interval_minutes": "60",
            "tenant_id": "t-2",
            "client_id": "c-1",
        },
    )
    directory.refresh_from_db()
    assert directory.config["tenant_id"] == "t-2" and "client_secret" in directory.config["secrets"]


def test_the_page_shows_the_last_run_and_sync_now_queues_one(
    alice_client: Client,
    acme: Account,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    directory = services.create_directory(acme, name="Okta", kind="okta")
    idp = MemoryDirectory()
    idp.user("u1", "ann@acme.test", "Ann")
    idp.group("g1", "Eng", "u1")
    run_sync(directory, idp)
    page = alice_client.get(f"/directories/{directory.pk}/").content.decode()
    assert "Succeeded" in page and 'data-testid="runs"' in page
    row = re.search(r"<td>Succeeded</td>(.*?)</tr>", page, re.S)
    assert row is not None
    assert re.findall(r'class="num">(\d+)<', row.group(1))[:3] == ["3", "0", "0"]

    queued: list[tuple[Any, ...]] = []
    from accounts import tasks

    monkeypatch.setattr(tasks.sync_directory, "delay", lambda *a, **k: queued.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/directories/{directory.pk}/sync/")
    assert response.status_code == 302
    assert queued == [(str(directory.pk),)]


def test_scim_token_is_shown_once_and_rotation_replaces_it(
    alice_client: Client, acme: Account
) -> None:
    directory = services.create_directory(acme, name="JumpCloud", kind="scim")
    response = alice_client.post(f"/directories/{directory.pk}/scim-token/")
    assert response.status_code == 302
    page = alice_client.get(f"/directories/{directory.pk}/").content.decode()
    secret = re.search(r"<code>(fzd_[^<]+)</code>", page)
    assert secret is not None
    assert f"/scim/v2/{directory.pk}" in page
    again = alice_client.get(f"/directories/{directory.pk}/").content.decode()
    assert secret.group(1) not in again  # shown once
    users = f"/scim/v2/{directory.pk}/Users"
    assert Client().get(users, HTTP_AUTHORIZATION=f"Bearer {secret.group(1)}").status_code == 200
    alice_client.post(f"/directories/{directory.pk}/scim-token/")
    assert Client().get(users, HTTP_AUTHORIZATION=f"Bearer {secret.group(1)}").status_code == 401


def test_disable_and_enable(alice_client: Client, acme: Account) -> None:
    directory = services.create_directory(acme, name="G", kind="google")
    alice_client.post(f"/directories/{directory.pk}/disable/")
    directory.refresh_from_db()
    assert directory.disabled_at is not None
    alice_client.post(f"/directories/{directory.pk}/enable/")
    directory.refresh_from_db()
    assert directory.disabled_at is None


def test_members_and_other_accounts_cannot_reach_directories(
    acme: Account, bob: Actor, charlie: Actor
) -> None:
    directory = services.create_directory(acme, name="Acme Workspace", kind="google")
    assert signed_in(bob).get("/directories/").status_code == 403
    assert signed_in(bob).post(f"/directories/{directory.pk}/disable/").status_code == 403
    other = signed_in(charlie)
    assert other.get(f"/directories/{directory.pk}/").status_code == 404
    assert other.post(f"/directories/{directory.pk}/disable/").status_code == 404
    directory.refresh_from_db()
    assert directory.disabled_at is None
    assert "Acme Workspace" not in other.get("/directories/").content.decode()


def test_a_synced_group_page_offers_no_edits(alice_client: Client, acme: Account) -> None:
    directory = services.create_directory(acme, name="Okta", kind="okta")
    idp = MemoryDirectory()
    idp.user("u1", "ann@acme.test", "Ann")
    idp.group("g1", "Eng", "u1")
    run_sync(directory, idp)
    from accounts.models import Group

    group = Group.objects.get(directory=directory)
    page = alice_client.get(f"/groups/{group.pk}/").content.decode()
    assert "ann@acme.test" in page and "synced" in page
    assert 'data-testid="add-member"' not in page and "/delete/" not in page
    assert "Sales" not in page
    static = services.create_group(acme, name="Static one")
    assert 'data-testid="add-member"' in alice_client.get(f"/groups/{static.pk}/").content.decode()
