"""The SCIM 2.0 server: scim2-tester's compliance checks, tokens per directory, deprovisioning."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_models import ScimProvider
from scim2_tester import check_server
from scim2_tester.utils import Status

from accounts import services
from accounts.directories import services as directory_services
from accounts.models import Account, Actor, Directory, Group, Token

pytestmark = pytest.mark.django_db

SCIM = "application/scim+json"


@pytest.fixture
def scim_dir(acme: Account) -> Directory:
    return services.create_directory(acme, name="JumpCloud", kind=Directory.Kind.SCIM)


@pytest.fixture
def secret(scim_dir: Directory) -> str:
    return directory_services.issue_scim_token(scim_dir).secret


def call(
    client: Client, method: str, url: str, secret: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    data = json.dumps(body) if body is not None else ""
    response = getattr(client, method.lower())(url, data=data, content_type=SCIM, **headers)
    payload = json.loads(response.content) if response.content else None
    return response.status_code, payload


@pytest.fixture
def wsgi_app() -> Iterator[Any]:
    """Django's WSGI handler, with the connection kept across requests as the test client does
    (the test's transaction holds the connection)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_scim2_tester_check_server_passes(scim_dir: Directory, secret: str, wsgi_app: Any) -> None:
    client = WSGISCIMClient(
        wsgi_app,
        base_url=f"http://testserver/scim/v2/{scim_dir.pk}",
        headers={"Authorization": f"Bearer {secret}"},
        provider=ScimProvider(),
    )
    results = check_server(client, raise_exceptions=False)
    counts = Counter(r.status.name for r in results)
    print("scim2-tester:", dict(counts))
    bad = [
        (r.title, r.status.name, r.reason)
        for r in results
        if r.status not in (Status.SUCCESS, Status.SKIPPED)
    ]
    assert not bad, bad
    assert counts["SUCCESS"] > 50


def test_users_and_groups_become_actors_and_memberships(
    client: Client, scim_dir: Directory, secret: str
) -> None:
    base = f"/scim/v2/{scim_dir.pk}"
    status, user = call(
        client,
        "POST",
        f"{base}/Users",
        secret,
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "dana@acme.test",
            "displayName": "Dana",
        },
    )
    assert status == 201, user
    actor = Actor.objects.get(directory=scim_dir)
    assert (actor.email, actor.name, actor.disabled_at) == ("dana@acme.test", "Dana", None)
    status, group = call(
        client,
        "POST",
        f"{base}/Groups",
        secret,
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Ops",
            "members": [{"value": user["id"]}],
        },
    )
    assert status == 201, group
    synced = Group.objects.get(directory=scim_dir)
    assert synced.name == "Ops" and list(synced.members.all()) == [actor]
    status, found = call(client, "GET", f'{base}/Users?filter=userName eq "dana@acme.test"', secret)
    assert status == 200 and found["totalResults"] == 1
    status, found = call(client, "GET", f'{base}/Users?filter=userName sw "nobody"', secret)
    assert status == 200 and found["totalResults"] == 0
    # PATCH active=false deprovisions: the actor is disabled.
    status, _ = call(
        client,
        "PATCH",
        f"{base}/Users/{user['id']}",
        secret,
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    )
    assert status in (200, 204)
    actor.refresh_from_db()
    assert actor.disabled_at is not None
    # DELETE removes the actor.
    status, _ = call(client, "DELETE", f"{base}/Users/{user['id']}", secret)
    assert status == 204
    assert not Actor.objects.filter(pk=actor.pk).exists()
    assert not synced.members.exists()


def test_scim_errors_carry_status_and_scim_type(
    client: Client, scim_dir: Directory, secret: str
) -> None:
    base = f"/scim/v2/{scim_dir.pk}"
    body = {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x@acme.test"}
    assert call(client, "POST", f"{base}/Users", secret, body)[0] == 201
    status, error = call(client, "POST", f"{base}/Users", secret, body)
    assert status == 409 and error["scimType"] == "uniqueness"
    status, error = call(client, "GET", f"{base}/Users?filter=userName xx 1", secret)
    assert status == 400 and error["scimType"] == "invalidFilter"
    status, error = call(client, "GET", f"{base}/Users/nope", secret)
    assert status == 404


def test_other_directories_and_accounts_tokens_are_refused(
    client: Client, scim_dir: Directory, secret: str, acme: Account, globex: Account
) -> None:
    other = services.create_directory(acme, name="Other", kind=Directory.Kind.SCIM)
    other_secret = directory_services.issue_scim_token(other).secret
    foreign = services.create_directory(globex, name="JumpCloud", kind=Directory.Kind.SCIM)
    foreign_secret = directory_services.issue_scim_token(foreign).secret
    api_secret = services.issue_api_token(acme, new_service_account="bot").secret
    url = f"/scim/v2/{scim_dir.pk}/Users"
    assert call(client, "GET", url, secret)[0] == 200
    for wrong in (other_secret, foreign_secret, api_secret, None, secret + "x"):
        status, error = call(client, "GET", url, wrong)
        assert status == 401, wrong
        assert error["status"] == "401" and "Resources" not in error
    assert call(client, "GET", f"/scim/v2/{foreign.pk}/Users", secret)[0] == 401


def test_rotating_the_token_stops_the_old_one(
    client: Client, scim_dir: Directory, secret: str
) -> None:
    new = directory_services.issue_scim_token(scim_dir).secret
    url = f"/scim/v2/{scim_dir.pk}/Users"
    assert call(client, "GET", url, secret)[0] == 401
    assert call(client, "GET", url, new)[0] == 200
    assert Token.objects.filter(kind=Token.Kind.SCIM, revoked_at__isnull=True).count() == 1
