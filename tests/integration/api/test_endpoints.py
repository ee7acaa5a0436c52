"""Declarative per-endpoint tests (NetBox style): every endpoint is one ``Endpoint`` row, and
every test below runs for every row that has the method.

alice's world is in acme (an API client's token manages it; a service account's token is the
"member" and gets 403); charlie's API client token is in globex and must see none of acme: 404
for every acme id, and no object of his may point at one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Model
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Actor, Token
from gateways import services as gateway_services
from policies import services as policy_services

from .conftest import World, api_token, client_for

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
Body = Callable[[World], dict[str, Any]]


def _future() -> str:
    return (timezone.now() + timedelta(days=7)).isoformat()


@dataclass(frozen=True)
class Endpoint:
    path: str
    attr: str  # the World attribute this endpoint serves
    create: Body | None = None
    # A create body that names the world's own objects (charlie sends acme's version of it).
    refers: bool = False
    update: Body | None = None
    # PUT body (a full representation); None: PUT not offered
    put: Body | None = None
    delete: bool = False
    # A fresh object to delete (the world's own may be needed, or not deletable as it stands).
    victim: Callable[[World], Model] | None = None
    # Deleted means gone, except tokens, which are revoked.
    revokes: bool = False
    actions: tuple[str, ...] = ()  # detail POST actions
    downloads: tuple[str, ...] = ()  # detail GET actions (non-JSON bodies)

    def __str__(self) -> str:
        return self.path


def _new_site(w: World) -> Model:
    return gateway_services.create_site(w.account, name="Doomed")


def _new_api_token(w: World) -> Model:
    assert w.api_token.actor is not None
    return account_services.create_token(
        w.account, kind=Token.Kind.API, actor=w.api_token.actor, name="doomed",
        expires_at=timezone.now() + timedelta(days=1),
    ).token  # fmt: skip


def _everyone(w: World) -> str:
    return str(account_services.everyone_group(w.account).pk)


ENDPOINTS = [
    Endpoint(
        "actors", "actor",
        create=lambda w: {"type": "user", "email": "new@example.test", "name": "New"},
        update=lambda w: {"name": "Robert"},
        put=lambda w: {"type": "user", "email": "robert@example.test", "name": "Robert"},
        delete=True, actions=("disable", "enable"),
    ),
    Endpoint(
        "groups", "group",
        create=lambda w: {"name": "Operations"},
        update=lambda w: {"name": "Platform"}, put=lambda w: {"name": "Platform"},
        delete=True,
    ),
    Endpoint(
        "memberships", "membership",
        create=lambda w: {"group": str(w.group.pk), "actor": str(w.api_token.actor_id)},
        refers=True, delete=True,
    ),
    Endpoint(
        "resources", "resource",
        create=lambda w: {
            "name": "DB", "kind": "ip", "address": "10.0.0.5", "site": str(w.site.pk)
        },
        refers=True,
        update=lambda w: {"name": "Docs", "filters": [{"protocol": "udp", "ports": ["53"]}]},
        put=lambda w: {
            "name": "Docs", "kind": "cidr", "address": "10.9.0.0/24", "site": str(w.site.pk),
            "filters": [], "ip_stack": "ipv4_only", "address_description": "",
        },
        delete=True,
    ),
    Endpoint(
        "sites", "site",
        create=lambda w: {"name": "Branch"},
        update=lambda w: {"name": "Head office"}, put=lambda w: {"name": "Head office"},
        delete=True, victim=_new_site,
    ),
    Endpoint(
        "policies", "policy",
        create=lambda w: {"group": _everyone(w), "resource": str(w.resource.pk)},
        refers=True,
        update=lambda w: {"description": "for engineers"},
        put=lambda w: {
            "group": str(w.group.pk), "resource": str(w.resource.pk), "description": "all",
            "conditions": [
                {"property": "remote_ip", "operator": "is_in_cidr", "values": ["10.0.0.0/8"]}
            ],
        },
        delete=True, actions=("disable", "enable"),
    ),
    Endpoint("gateways", "gateway", delete=True),
    Endpoint(
        "gateway-tokens", "gateway_token",
        create=lambda w: {"site": str(w.site.pk), "name": "second"}, refers=True,
        delete=True, revokes=True,
    ),
    Endpoint("devices", "device"),
    Endpoint(
        "static-devices", "static_device",
        create=lambda w: {"actor": str(w.actor.pk), "name": "phone"}, refers=True,
        delete=True, actions=("disable", "enable"), downloads=("config", "qr"),
    ),
    Endpoint("authorizations", "authorization"),
    Endpoint("auth-providers", "provider"),
    Endpoint("directories", "directory"),
    Endpoint(
        "api-tokens", "api_token",
        create=lambda w: {"actor": str(w.api_token.actor_id), "expires_at": _future()},
        refers=True, delete=True, victim=_new_api_token, revokes=True,
    ),
]  # fmt: skip

CREATABLE = [e for e in ENDPOINTS if e.create is not None]
REFERRING = [e for e in ENDPOINTS if e.refers]
UPDATABLE = [e for e in ENDPOINTS if e.update is not None]
PUTTABLE = [e for e in ENDPOINTS if e.put is not None]
DELETABLE = [e for e in ENDPOINTS if e.delete]
ACTIONS = [(e, a) for e in ENDPOINTS for a in e.actions]
DOWNLOADS = [(e, a) for e in ENDPOINTS for a in e.downloads]


def _obj(w: World, e: Endpoint) -> Model:
    obj: Model = getattr(w, e.attr)
    return obj


def _detail(e: Endpoint, obj: Model) -> str:
    return f"/api/v1/{e.path}/{obj.pk}"


def _is_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def _all_ids(secret: str, e: Endpoint) -> set[str]:
    ids: set[str] = set()
    url: str | None = f"/api/v1/{e.path}?page_size=500"
    while url:
        page = client_for(secret).get(url).json()
        ids.update(str(row["id"]) for row in page["results"])
        url = page["next"]
    return ids


VOLATILE = {"last_used_at", "last_used_ip"}  # alice's own token changes as she reads it


def _snapshot(w: World, url: str) -> dict[str, Any]:
    response = client_for(w.secret).get(url)
    assert response.status_code == 200
    return {k: v for k, v in response.json().items() if k not in VOLATILE}


def _still_there(w: World, e: Endpoint, obj: Model) -> bool:
    response = client_for(w.secret).get(_detail(e, obj))
    if response.status_code == 404:
        return False
    assert response.status_code == 200
    return not (e.revokes and response.json()["revoked_at"])


# --- alice: CRUD -------------------------------------------------------------------------------


@pytest.mark.parametrize("e", ENDPOINTS, ids=str)
def test_alice_lists_and_reads_her_objects_with_an_etag(alice_world: World, e: Endpoint) -> None:
    obj = _obj(alice_world, e)
    assert str(obj.pk) in _all_ids(alice_world.secret, e)
    response = client_for(alice_world.secret).get(_detail(e, obj))
    assert response.status_code == 200
    assert response.json()["id"] == str(obj.pk)
    assert response["ETag"].startswith('"')


@pytest.mark.parametrize("e", CREATABLE, ids=str)
def test_alice_creates_through_the_service(alice_world: World, e: Endpoint) -> None:
    assert e.create is not None
    before = _all_ids(alice_world.secret, e)
    response = client_for(alice_world.secret).post(
        f"/api/v1/{e.path}", e.create(alice_world), format="json"
    )
    assert response.status_code == 201, response.content
    created = response.json()["id"]
    assert created not in before
    assert created in _all_ids(alice_world.secret, e)
    assert response["ETag"]


@pytest.mark.parametrize("e", CREATABLE, ids=str)
def test_an_invalid_create_is_a_problem_with_field_errors(alice_world: World, e: Endpoint) -> None:
    before = _all_ids(alice_world.secret, e)
    response = client_for(alice_world.secret).post(f"/api/v1/{e.path}", {}, format="json")
    body = _is_problem(response, 400)
    assert body["errors"] and all(isinstance(v, list) for v in body["errors"].values())
    assert _all_ids(alice_world.secret, e) == before


@pytest.mark.parametrize("e", UPDATABLE, ids=str)
def test_alice_updates_with_a_matching_if_match_only(alice_world: World, e: Endpoint) -> None:
    assert e.update is not None
    client = client_for(alice_world.secret)
    url = _detail(e, _obj(alice_world, e))
    etag = client.get(url)["ETag"]
    stale = client.patch(url, e.update(alice_world), format="json", HTTP_IF_MATCH='"stale"')
    _is_problem(stale, 412)
    assert client.get(url)["ETag"] == etag, "a refused write must change nothing"
    response = client.patch(url, e.update(alice_world), format="json", HTTP_IF_MATCH=etag)
    assert response.status_code == 200, response.content
    for field, value in e.update(alice_world).items():
        assert response.json()[field] == value
    assert response["ETag"] != etag
    # The old ETag is now stale: a second script holding it is refused.
    _is_problem(client.patch(url, {}, format="json", HTTP_IF_MATCH=etag), 412)


@pytest.mark.parametrize("e", PUTTABLE, ids=str)
def test_put_is_idempotent(alice_world: World, e: Endpoint) -> None:
    assert e.put is not None
    client = client_for(alice_world.secret)
    url = _detail(e, _obj(alice_world, e))
    first = client.put(url, e.put(alice_world), format="json")
    assert first.status_code == 200, first.content
    second = client.put(url, e.put(alice_world), format="json")
    assert second.status_code == 200
    assert second.json() == first.json() and second["ETag"] == first["ETag"]


@pytest.mark.parametrize("e", DELETABLE, ids=str)
def test_alice_deletes(alice_world: World, e: Endpoint) -> None:
    obj = e.victim(alice_world) if e.victim else _obj(alice_world, e)
    response = client_for(alice_world.secret).delete(_detail(e, obj))
    assert response.status_code == 204, response.content
    assert not _still_there(alice_world, e, obj)


@pytest.mark.parametrize(("e", "name"), ACTIONS, ids=str)
def test_alice_runs_the_actions(alice_world: World, e: Endpoint, name: str) -> None:
    response = client_for(alice_world.secret).post(f"{_detail(e, _obj(alice_world, e))}/{name}")
    assert response.status_code == 200, response.content
    assert (response.json()["disabled_at"] is None) == (name == "enable")


@pytest.mark.parametrize(("e", "name"), DOWNLOADS, ids=str)
def test_alice_downloads(alice_world: World, e: Endpoint, name: str) -> None:
    response = client_for(alice_world.secret).get(f"{_detail(e, _obj(alice_world, e))}/{name}")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert b"[Interface]" in response.content or b"<svg" in response.content


# --- charlie (another account): nothing of acme exists ----------------------------------------


@pytest.mark.parametrize("e", ENDPOINTS, ids=str)
def test_charlie_lists_none_of_acmes_objects(
    alice_world: World, charlie_world: World, e: Endpoint
) -> None:
    assert str(_obj(alice_world, e).pk) not in _all_ids(charlie_world.secret, e)
    assert str(_obj(charlie_world, e).pk) in _all_ids(charlie_world.secret, e)


@pytest.mark.parametrize("e", ENDPOINTS, ids=str)
def test_charlie_gets_404_for_every_method_on_acmes_ids(
    alice_world: World, charlie_world: World, e: Endpoint
) -> None:
    obj = _obj(alice_world, e)
    url = _detail(e, obj)
    client = client_for(charlie_world.secret)
    before = _snapshot(alice_world, url)
    _is_problem(client.get(url), 404)
    if e.update is not None:
        _is_problem(client.patch(url, e.update(charlie_world), format="json"), 404)
    if e.put is not None:
        _is_problem(client.put(url, e.put(charlie_world), format="json"), 404)
    if e.delete:
        _is_problem(client.delete(url), 404)
    for name in e.actions:
        _is_problem(client.post(f"{url}/{name}"), 404)
    for name in e.downloads:
        _is_problem(client.get(f"{url}/{name}"), 404)
    assert _snapshot(alice_world, url) == before


@pytest.mark.parametrize("e", REFERRING, ids=str)
def test_charlie_cannot_create_objects_pointing_at_acmes_ids(
    alice_world: World, charlie_world: World, e: Endpoint
) -> None:
    assert e.create is not None
    before = _all_ids(charlie_world.secret, e), _all_ids(alice_world.secret, e)
    body = e.create(alice_world)  # every id in it is acme's
    response = client_for(charlie_world.secret).post(f"/api/v1/{e.path}", body, format="json")
    problem = _is_problem(response, 400)
    assert set(problem["errors"]) & set(body)
    assert (_all_ids(charlie_world.secret, e), _all_ids(alice_world.secret, e)) == before
    # ...while his own version of the same request works.
    own = client_for(charlie_world.secret).post(
        f"/api/v1/{e.path}", e.create(charlie_world), format="json"
    )
    assert own.status_code == 201, own.content


@pytest.mark.parametrize("e", [e for e in UPDATABLE if e.refers], ids=str)
def test_charlie_cannot_repoint_his_objects_at_acmes_ids(
    alice_world: World, charlie_world: World, e: Endpoint
) -> None:
    assert e.create is not None
    url = _detail(e, _obj(charlie_world, e))
    client = client_for(charlie_world.secret)
    etag = client.get(url)["ETag"]
    refs = {k: v for k, v in e.create(alice_world).items() if k in ("site", "group", "resource")}
    assert refs
    _is_problem(client.patch(url, refs, format="json"), 400)
    assert client.get(url)["ETag"] == etag


# --- the member's token and bad tokens -------------------------------------------------------


@pytest.mark.parametrize("e", ENDPOINTS, ids=str)
def test_a_service_accounts_token_gets_403_for_every_method(
    alice_world: World, e: Endpoint
) -> None:
    client = client_for(alice_world.member_secret)
    obj = _obj(alice_world, e)
    url = _detail(e, obj)
    before = _snapshot(alice_world, url)
    _is_problem(client.get(f"/api/v1/{e.path}"), 403)
    _is_problem(client.get(url), 403)
    if e.create is not None:
        _is_problem(client.post(f"/api/v1/{e.path}", e.create(alice_world), format="json"), 403)
    if e.update is not None:
        _is_problem(client.patch(url, e.update(alice_world), format="json"), 403)
    if e.delete:
        _is_problem(client.delete(url), 403)
    for name in e.actions:
        _is_problem(client.post(f"{url}/{name}"), 403)
    for name in e.downloads:
        _is_problem(client.get(f"{url}/{name}"), 403)
    assert _snapshot(alice_world, url) == before


def _revoked(w: World) -> str:
    secret = api_token(w.account, Actor.Type.API_CLIENT, "Revoked")
    token = account_services.use_token(secret, kind=Token.Kind.API)
    assert token is not None
    account_services.revoke_token(token)
    return secret


def _expired(w: World) -> str:
    secret = api_token(w.account, Actor.Type.API_CLIENT, "Expiring")
    token = account_services.use_token(secret, kind=Token.Kind.API)
    assert token is not None
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    return secret


def _of_disabled_actor(w: World) -> str:
    secret = api_token(w.account, Actor.Type.API_CLIENT, "Disabled")
    token = account_services.use_token(secret, kind=Token.Kind.API)
    assert token is not None and token.actor is not None
    account_services.disable_actor(token.actor)
    return secret


BAD_TOKENS: dict[str, Callable[[World], str | None]] = {
    "revoked": _revoked,
    "expired": _expired,
    "disabled-actor": _of_disabled_actor,
    "gateway-token": lambda w: gateway_services.issue_gateway_token(w.site).secret,
    "garbage": lambda w: "fza_not-a-token",
    "none": lambda w: None,
}


@pytest.mark.parametrize("kind", BAD_TOKENS)
@pytest.mark.parametrize("e", ENDPOINTS, ids=str)
def test_a_bad_token_gets_401_problem(alice_world: World, e: Endpoint, kind: str) -> None:
    client = client_for(BAD_TOKENS[kind](alice_world))
    for response in (
        client.get(f"/api/v1/{e.path}"),
        client.get(_detail(e, _obj(alice_world, e))),
    ):
        _is_problem(response, 401)
        assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_good_token_records_its_last_use(alice_world: World) -> None:
    token = Token.objects.get(pk=alice_world.api_token.pk)
    Token.objects.filter(pk=token.pk).update(last_used_at=None)
    assert client_for(alice_world.secret).get("/api/v1/sites").status_code == 200
    assert Token.objects.get(pk=token.pk).last_used_at is not None


# --- the service's rules hold through the API ------------------------------------------------


def test_a_managed_group_cannot_be_renamed_or_deleted(alice_world: World) -> None:
    everyone = _everyone(alice_world)
    client = client_for(alice_world.secret)
    _is_problem(client.patch(f"/api/v1/groups/{everyone}", {"name": "All"}, format="json"), 403)
    _is_problem(client.delete(f"/api/v1/groups/{everyone}"), 403)
    assert client.get(f"/api/v1/groups/{everyone}").json()["name"] == "Everyone"


def test_a_site_with_resources_is_not_deleted(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    body = _is_problem(client.delete(f"/api/v1/sites/{alice_world.site.pk}"), 400)
    assert body["errors"]["non_field_errors"]
    assert client.get(f"/api/v1/sites/{alice_world.site.pk}").status_code == 200


def test_bulk_replace_of_members_is_exact_and_idempotent(alice_world: World, alice: Actor) -> None:
    client = client_for(alice_world.secret)
    url = f"/api/v1/groups/{alice_world.group.pk}/members"
    for _ in range(2):
        response = client.put(url, {"actors": [str(alice.pk)]}, format="json")
        assert response.status_code == 200, response.content
        assert response.json() == {"actors": [str(alice.pk)]}
    members = _members(alice_world, str(alice_world.group.pk))
    assert members == {str(alice.pk)}


def test_bulk_replace_refuses_another_accounts_actor(
    alice_world: World, charlie_world: World
) -> None:
    client = client_for(alice_world.secret)
    url = f"/api/v1/groups/{alice_world.group.pk}/members"
    response = client.put(url, {"actors": [str(charlie_world.actor.pk)]}, format="json")
    _is_problem(response, 400)
    assert _members(alice_world, str(alice_world.group.pk)) == {str(alice_world.actor.pk)}
    _is_problem(client_for(charlie_world.secret).put(url, {"actors": []}, format="json"), 404)


def _members(w: World, group_id: str) -> set[str]:
    page = client_for(w.secret).get(f"/api/v1/memberships?group={group_id}").json()
    return {row["actor"] for row in page["results"]}


def test_a_new_api_token_shows_its_secret_once_and_it_works(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    body = {"actor": str(alice_world.api_token.actor_id), "expires_at": _future(), "name": "ci"}
    created = client.post("/api/v1/api-tokens", body, format="json").json()
    assert created["secret"].startswith("fza_")
    assert "secret" not in client.get(f"/api/v1/api-tokens/{created['id']}").json()
    assert client_for(created["secret"]).get("/api/v1/sites").status_code == 200
    client.delete(f"/api/v1/api-tokens/{created['id']}")
    _is_problem(client_for(created["secret"]).get("/api/v1/sites"), 401)


def test_api_tokens_need_an_expiry_in_the_future(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    actor = str(alice_world.api_token.actor_id)
    body = _is_problem(client.post("/api/v1/api-tokens", {"actor": actor}, format="json"), 400)
    assert "expires_at" in body["errors"]
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    body = _is_problem(
        client.post("/api/v1/api-tokens", {"actor": actor, "expires_at": past}, format="json"),
        400,
    )
    assert "expires_at" in body["errors"]


def test_api_tokens_are_not_for_people(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    body = {"actor": str(alice_world.actor.pk), "expires_at": _future()}
    problem = _is_problem(client.post("/api/v1/api-tokens", body, format="json"), 400)
    assert "actor" in problem["errors"]


def test_a_new_gateway_token_is_bound_to_its_site_and_shown_once(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    response = client.post(
        "/api/v1/gateway-tokens", {"site": str(alice_world.site.pk)}, format="json"
    )
    created = response.json()
    assert created["secret"].startswith("fzg_") and created["site"] == str(alice_world.site.pk)
    assert "secret" not in client.get(f"/api/v1/gateway-tokens/{created['id']}").json()
    token = account_services.use_token(created["secret"], kind=Token.Kind.GATEWAY)
    assert token is not None and token.gateway_binding.site_id == alice_world.site.pk


def test_a_static_device_created_without_a_key_gets_its_private_key_once(
    alice_world: World,
) -> None:
    client = client_for(alice_world.secret)
    body = {"actor": str(alice_world.actor.pk), "name": "nas"}
    created = client.post("/api/v1/static-devices", body, format="json").json()
    private = next(
        line for line in created["config"].splitlines() if line.startswith("PrivateKey = ")
    )
    assert len(private.removeprefix("PrivateKey = ")) == 44
    later = client.get(f"/api/v1/static-devices/{created['id']}/config").content.decode()
    assert "PrivateKey = <your private key>" in later and private not in later


def test_an_invalid_policy_condition_is_a_field_error(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    body = {
        "group": _everyone(alice_world),
        "resource": str(alice_world.resource.pk),
        "conditions": [{"property": "remote_ip", "operator": "is_in_cidr", "values": ["nope"]}],
    }
    problem = _is_problem(client.post("/api/v1/policies", body, format="json"), 400)
    assert "conditions" in problem["errors"]


def test_disabling_a_policy_through_the_api_revokes_its_authorizations(
    alice_world: World,
) -> None:
    client = client_for(alice_world.secret)
    client.post(f"/api/v1/policies/{alice_world.policy.pk}/disable")
    row = client.get(f"/api/v1/authorizations/{alice_world.authorization.pk}").json()
    assert row["revoked_at"] is not None and row["active"] is False
    assert row["revoke_reason"] == "policy_disabled"


# --- conventions: pagination, filters, ordering, errors, rate limit ---------------------------


def test_lists_page_with_a_cursor_next_link(alice_world: World) -> None:
    for n in range(5):
        gateway_services.create_site(alice_world.account, name=f"Site {n}")
    client = client_for(alice_world.secret)
    seen: list[str] = []
    url: str | None = "/api/v1/sites?page_size=2"
    pages = 0
    while url:
        page = client.get(url).json()
        assert len(page["results"]) <= 2
        seen.extend(row["id"] for row in page["results"])
        url = page["next"]
        pages += 1
    assert pages == 3 and len(seen) == len(set(seen)) == 6


def test_lists_filter_and_order(alice_world: World) -> None:
    policy_services.create_resource(
        alice_world.account, name="Alpha", kind="ip", address="10.0.0.9", site=alice_world.site
    )
    client = client_for(alice_world.secret)
    ips = client.get("/api/v1/resources?kind=ip").json()["results"]
    assert [r["name"] for r in ips] == ["Alpha"]
    ordered = client.get("/api/v1/resources?ordering=name").json()["results"]
    assert [r["name"] for r in ordered] == ["Alpha", "Wiki"]
    backwards = client.get("/api/v1/resources?ordering=-name").json()["results"]
    assert [r["name"] for r in backwards] == ["Wiki", "Alpha"]
    active = client.get("/api/v1/authorizations?active=false").json()["results"]
    assert active == []
    mine = client.get(f"/api/v1/authorizations?actor={alice_world.actor.pk}&active=true")
    assert [r["id"] for r in mine.json()["results"]] == [str(alice_world.authorization.pk)]


def test_unknown_paths_methods_and_media_types_are_problems(alice_world: World) -> None:
    client = client_for(alice_world.secret)
    _is_problem(client.get("/api/v1/no-such-thing"), 404)
    _is_problem(client.get("/api/v1/sites/not-a-uuid"), 404)
    _is_problem(client.get("/api"), 404)
    _is_problem(client.delete(f"/api/v1/gateways/{alice_world.gateway.pk}/x"), 404)
    _is_problem(client.post(f"/api/v1/gateways/{alice_world.gateway.pk}"), 405)
    # Unsafe methods on unknown paths too (no CSRF page: the API has no session).
    _is_problem(client_for(None).put("/api/v1/sites/%C2%84", {}, format="json"), 404)
    _is_problem(client.get("/api/v1/groups/%0Ax"), 404)
    _is_problem(client.put("/api/v1/sites", {}, format="json"), 405)
    _is_problem(client.post("/api/v1/sites", "name=x", content_type="text/plain"), 415)
    _is_problem(client.get("/api/v1/sites", HTTP_ACCEPT="text/html"), 406)
    _is_problem(client.post("/api/v1/sites", "{not json", content_type="application/json"), 400)


def test_a_token_over_its_rate_limit_gets_429_with_retry_after(
    alice_world: World, charlie_world: World, settings: Any
) -> None:
    settings.FZ_API_RATE = "3/min"
    client = client_for(alice_world.secret)
    for _ in range(3):
        assert client.get("/api/v1/sites").status_code == 200
    response = client.get("/api/v1/sites")
    _is_problem(response, 429)
    assert 0 < int(response["Retry-After"]) <= 60
    # Per token: charlie's bucket is his own.
    assert client_for(charlie_world.secret).get("/api/v1/sites").status_code == 200


def test_the_schema_and_the_docs_are_served(alice_world: World) -> None:
    client = client_for(None)
    schema = client.get("/api/openapi.json")
    assert schema.status_code == 200
    spec = schema.json()
    assert spec["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    assert "Problem" in spec["components"]["schemas"]
    get_site = spec["paths"]["/api/v1/sites/{id}"]["get"]
    assert "application/problem+json" in get_site["responses"]["404"]["content"]
    assert "ETag" in get_site["responses"]["200"]["headers"]
    patch_site = spec["paths"]["/api/v1/sites/{id}"]["patch"]
    assert "If-Match" in [p["name"] for p in patch_site["parameters"]]
    assert (
        "412" in patch_site["responses"]
        and "Retry-After" in patch_site["responses"]["429"]["headers"]
    )
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    assert "<script>" not in html and "<style>" not in html  # the CSP allows neither
    assert "drf_spectacular_sidecar" in html and "https://" not in html
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
    directives = dict(
        d.strip().split(" ", 1) for d in docs["Content-Security-Policy"].split(";") if d.strip()
    )
    assert directives["img-src"] == "'self' data:" and directives["script-src"] == "'self'"
    # Only this page: the API and the UI keep img-src 'self'.
    assert "data:" not in client.get("/sign-in/")["Content-Security-Policy"]
