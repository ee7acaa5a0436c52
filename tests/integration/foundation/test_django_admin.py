"""Django admin: read-only for tenant data, staff only, scoped to the staff user's account, secrets
never shown, and the bootstrap admin is view-only staff (not a superuser)."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth.models import Permission, User
from django.db.models import Model
from django.test import Client

from accounts import services as accounts
from accounts.models import Account, Actor, Identity, Token
from firezone_site.readonly_admin import ReadOnlyAdmin
from gateways import services as gateways
from policies import services as policies
from tests.conftest import PASSWORD
from tests.integration.ui.conftest import make_authorization

APPS = ("accounts", "policies", "gateways")


def tenant_models() -> list[type[Model]]:
    return [m for app in APPS for m in apps.get_app_config(app).get_models()]


def registered_tenant_models() -> list[type[Model]]:
    return [m for m in admin.site._registry if m._meta.app_label in APPS]


def test_every_model_is_in_the_django_admin() -> None:
    missing = [m.__name__ for m in tenant_models() if m not in admin.site._registry]
    assert missing == []


def test_every_tenant_model_admin_is_read_only() -> None:
    writable = [
        m.__name__
        for m in registered_tenant_models()
        if not isinstance(admin.site._registry[m], ReadOnlyAdmin)
    ]
    assert writable == []


def populate(account: Account) -> dict[str, Any]:
    """At least one row of every tenant model in ``account``, written through the services
    (Identity and Authorization have no service outside the sign-in/websocket flows)."""
    member = accounts.create_actor(
        account, email=f"member@{account.slug}.test", name="Member", password=PASSWORD
    )
    group = accounts.create_group(account, name="Engineering")
    accounts.add_member(group, member)
    accounts.create_directory(account, name="Okta", kind="okta")
    provider = accounts.create_auth_provider(account, name="OIDC", kind="oidc")
    Identity.objects.create(
        account=account, actor=member, provider=provider, issuer="https://idp", subject="s1"
    )
    site = gateways.create_site(account, name="HQ")
    issued = gateways.issue_gateway_token(site)
    gateway = gateways.connect_gateway(
        secret=issued.secret,
        params=gateways.GatewayParams(
            external_id="gw-1",
            name="gw-1",
            public_key=base64.b64encode(os.urandom(32)).decode(),
            version="0.1.0",
        ),
        remote_ip="203.0.113.7",
        channel_name=f"test.admin!{account.slug}",
    )
    resource = policies.create_resource(
        account, name="Wiki", kind="cidr", address="10.1.0.0/24", site=site
    )
    policy = policies.create_policy(account, group=group, resource=resource)
    device = gateways.register_static_device(member, name="laptop").device
    make_authorization(member, resource, policy, device, gateway=gateway)
    robot = accounts.create_actor(account, email="", name="CI", type=Actor.Type.SERVICE_ACCOUNT)
    accounts.create_token(account, kind=Token.Kind.API, actor=robot, name="ci")
    # Sign-in rows: an emailed code and an approved headless-client sign-in.
    from accounts.signin import services as signin

    email = accounts.create_auth_provider(account, name="Email code", kind="email")
    signin.request_email_code(email, member.email, base_url="http://portal.test")
    start = signin.start_device_authorization(client_name="laptop")
    signin.decide_device_authorization(start.user_code, member, None, approve=True)
    # A directory sync run (accounts.directories).
    from accounts.directories import engine as directory_engine

    class OnePerson:
        issuer = "https://idp.example.test"

        def users_page(self, token: str | None) -> Any:
            return directory_engine.Page([directory_engine.RemoteUser("p1", "p1@x.test", "P")])

        def groups_page(self, token: str | None) -> Any:
            return directory_engine.Page([directory_engine.RemoteGroup("g1", "Synced")])

        def members_page(self, group_id: str, token: str | None) -> Any:
            return directory_engine.Page(["p1"])

    synced = accounts.create_directory(account, name="IdP", kind="okta")
    directory_engine.run_sync(synced, OnePerson())
    return {"site": site, "issued": issued, "gateway": gateway, "policy": policy}


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """Every column of every row of every tenant model, plus the auth users."""
    rows = {
        m._meta.label: sorted(
            (dict(r) for r in m._default_manager.all().values()), key=lambda r: str(r["id"])
        )
        for m in tenant_models()
    }
    rows["auth.User"] = list(User.objects.order_by("pk").values())
    return rows


def bootstrap_staff() -> tuple[Account, Actor, Client]:
    """The first admin as ``bootstrap`` creates it, signed in with the password it prints."""
    result = accounts.bootstrap(account_name="Main", slug="main", admin_email="admin@main.test")
    client = Client()
    assert client.login(username="main/admin@main.test", password=result.password)
    return result.account, result.admin, client


def url(model: type[Model], suffix: str = "") -> str:
    return f"/django-admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


def form_data(obj: Model) -> dict[str, str]:
    """A plausible change-form POST: every concrete field with its value, the name altered."""
    data: dict[str, str] = {}
    for field in obj._meta.concrete_fields:
        value = getattr(obj, field.attname)
        data[field.attname] = "" if value is None else str(value)
        data[field.name] = data[field.attname]
    if "name" in data:
        data["name"] = "written by the django admin"
    data["_save"] = "Save"
    return data


@pytest.mark.django_db
def test_bootstrap_admin_is_view_only_staff_not_a_superuser() -> None:
    result = accounts.bootstrap(account_name="Main", slug="main", admin_email="admin@main.test")
    user = User.objects.get(pk=result.admin.user_id)
    assert result.admin.type == Actor.Type.ADMIN
    assert user.is_staff and not user.is_superuser
    codenames = set(user.user_permissions.values_list("codename", flat=True))
    assert codenames and all(c.startswith("view_") for c in codenames)
    labels = set(user.user_permissions.values_list("content_type__app_label", flat=True))
    assert labels == set(APPS)
    for model in tenant_models():
        assert user.has_perm(f"{model._meta.app_label}.view_{model._meta.model_name}")
        for action in ("add", "change", "delete"):
            assert not user.has_perm(f"{model._meta.app_label}.{action}_{model._meta.model_name}")


@pytest.mark.django_db
def test_only_staff_reach_the_django_admin(acme: Account, alice: Actor, bob: Actor) -> None:
    client = Client()
    assert client.login(username="acme/bob@acme.test", password=PASSWORD)
    response = client.get("/django-admin/")
    assert response.status_code == 302 and "/login/" in response["Location"]
    _, _, staff = bootstrap_staff()
    assert staff.get("/django-admin/").status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["bootstrap staff", "superuser"])
def test_no_admin_page_writes_tenant_data(who: str) -> None:
    account, staff_actor, client = bootstrap_staff()
    if who == "superuser":
        # Even the operator's superuser, who holds every permission, cannot write around the
        # services: the read-only admin refuses for everyone.
        User.objects.filter(pk=staff_actor.user_id).update(is_superuser=True)
    populate(account)
    before = snapshot()
    for model in registered_tenant_models():
        obj = model._default_manager.filter(
            **({"pk": account.pk} if model is Account else {"account": account})
        ).first()
        assert obj is not None, model.__name__
        pk = obj.pk
        # Add: neither the form nor the POST.
        assert client.get(url(model, "add/")).status_code == 403, model.__name__
        assert client.post(url(model, "add/"), form_data(obj)).status_code == 403, model
        # Change: a page to look at, with no save button; the POST is refused.
        page = client.get(url(model, f"{pk}/change/"))
        assert page.status_code == 200, model.__name__
        html = page.content.decode()
        assert 'name="_save"' not in html and 'name="_continue"' not in html, model.__name__
        assert client.post(url(model, f"{pk}/change/"), form_data(obj)).status_code == 403
        # Delete: neither the confirmation nor the POST.
        assert client.get(url(model, f"{pk}/delete/")).status_code == 403, model.__name__
        assert client.post(url(model, f"{pk}/delete/"), {"post": "yes"}).status_code == 403
        # The changelist offers no bulk action (the default one deletes) and no editable list.
        changelist = client.get(url(model))
        assert changelist.status_code == 200
        assert "delete_selected" not in changelist.content.decode()
        client.post(
            url(model),
            {"action": "delete_selected", "_selected_action": [str(pk)], "post": "yes"},
        )
    assert snapshot() == before


@pytest.mark.django_db(transaction=True)
def test_staff_see_only_their_own_account(globex: Account, charlie: Actor) -> None:
    account, _, client = bootstrap_staff()
    populate(account)
    other = populate(globex)
    sites = client.get(url(other["site"].__class__)).content.decode()
    assert "HQ" in sites and "1 site" in sites  # their own HQ only
    accounts_page = client.get(url(Account)).content.decode()
    assert "Main" in accounts_page and "Globex" not in accounts_page
    # The account filter in the sidebar lists only their own account.
    actors = client.get(url(Actor)).content.decode()
    assert "Globex" not in actors and "charlie@globex.test" not in actors
    # Another account's rows are not found, whatever the model.
    for name, obj in other.items():
        if name == "issued":
            obj = obj.token
        assert str(obj.pk) not in client.get(url(obj.__class__)).content.decode()
        response = client.get(url(obj.__class__, f"{obj.pk}/change/"))
        assert response.status_code == 302, name  # "doesn't exist", back to the index
        client.get("/django-admin/")  # consume the "doesn't exist" message
    response = client.get(url(Account, f"{globex.pk}/change/"))
    assert response.status_code == 302
    # The operator's superuser sees every account.
    root = User.objects.create_superuser("root", "root@operator.test", PASSWORD)
    operator = Client()
    operator.force_login(root)
    everyone = operator.get(url(Account)).content.decode()
    assert "Main" in everyone and "Globex" in everyone
    assert operator.get(url(Account, f"{globex.pk}/change/")).status_code == 200


@pytest.mark.django_db
def test_staff_without_an_actor_see_no_tenant_rows(acme: Account, alice: Actor) -> None:
    staff = User.objects.create_user("ops", "ops@operator.test", PASSWORD, is_staff=True)
    staff.user_permissions.set(Permission.objects.all())
    client = Client()
    client.force_login(staff)
    page = client.get(url(Actor)).content.decode()
    assert "alice@acme.test" not in page and "0 actors" in page


@pytest.mark.django_db
def test_the_admin_greets_staff_by_name_not_by_internal_username() -> None:
    account, staff_actor, client = bootstrap_staff()
    html = client.get("/django-admin/").content.decode()
    greeting = html.split('data-testid="admin-greeting">', 1)[1].split("<", 1)[0]
    assert greeting == "Admin"
    assert str(account.pk) not in html
    # Without a name the email is shown, still not the "<account id>:<email>" username.
    Actor.objects.filter(pk=staff_actor.pk).update(name="")
    html = client.get("/django-admin/").content.decode()
    greeting = html.split('data-testid="admin-greeting">', 1)[1].split("<", 1)[0]
    assert greeting == "admin@main.test"
    assert str(account.pk) not in html


@pytest.mark.django_db
def test_admin_changelists_load_with_search_and_never_show_secrets() -> None:
    account, _, client = bootstrap_staff()
    issued = populate(account)["issued"]
    token = Token.objects.get(pk=issued.token.pk)
    for model in registered_tenant_models():
        response = client.get(url(model), {"q": "x"})
        assert response.status_code == 200, model.__name__
    page = client.get(url(Token, f"{token.pk}/change/")).content.decode()
    assert token.secret_hash not in page
    assert issued.secret.split("_", 2)[2] not in page
