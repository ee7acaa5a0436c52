"""alice/bob (acme) vs charlie (globex): no query or service crosses accounts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from accounts import services as accounts
from accounts.models import Actor, Group, Membership, Token
from firezone_site.errors import NotFound, ValidationFailed
from gateways import services as gateways
from policies import queries
from policies import services as policies
from policies.models import Policy, Resource, Site

pytestmark = pytest.mark.django_db

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def acme_world(acme, alice, bob):  # type: ignore[no-untyped-def]
    site = gateways.create_site(acme, name="HQ")
    resource = policies.create_resource(
        acme, name="Wiki", kind="cidr", address="10.0.0.0/24", site=site
    )
    group = accounts.create_group(acme, name="Engineering")
    accounts.add_member(group, bob)
    policy = policies.create_policy(acme, group=group, resource=resource)
    return {"site": site, "resource": resource, "group": group, "policy": policy}


def test_charlie_cannot_read_acme_objects_through_scoped_queries(  # type: ignore[no-untyped-def]
    acme_world, globex, charlie
):
    for model in (Site, Resource, Policy, Group, Membership, Actor):
        assert (
            not model.objects.for_account(globex)
            .filter(pk__in=[o.pk for o in model.objects.for_account(acme_world["site"].account_id)])
            .exists()
        ), model.__name__
    assert queries.resources(globex).count() == 0
    assert queries.policies(globex).count() == 0
    assert Actor.objects.for_account(globex).filter(email="alice@acme.test").count() == 0


def test_charlie_cannot_attach_acme_objects_to_his_account(  # type: ignore[no-untyped-def]
    acme_world, globex, charlie
):
    globex_site = gateways.create_site(globex, name="HQ")
    with pytest.raises(ValidationFailed) as exc:
        policies.create_resource(
            globex, name="Steal", kind="ip", address="10.0.0.1", site=acme_world["site"]
        )
    assert "site" in exc.value.errors
    globex_resource = policies.create_resource(
        globex, name="Own", kind="ip", address="10.0.0.1", site=globex_site
    )
    with pytest.raises(ValidationFailed) as exc:
        policies.create_policy(globex, group=acme_world["group"], resource=globex_resource)
    assert "group" in exc.value.errors
    with pytest.raises(ValidationFailed) as exc:
        policies.create_policy(
            globex, group=accounts.everyone_group(globex), resource=acme_world["resource"]
        )
    assert "resource" in exc.value.errors
    with pytest.raises(ValidationFailed):
        policies.update_resource(globex_resource, site=acme_world["site"])
    assert Resource.objects.get(pk=globex_resource.pk).site_id == globex_site.pk


def test_charlie_cannot_join_or_be_added_to_acme_groups(  # type: ignore[no-untyped-def]
    acme_world, charlie
):
    with pytest.raises(NotFound):
        accounts.add_member(acme_world["group"], charlie)
    assert not Membership.objects.filter(group=acme_world["group"], actor=charlie).exists()
    accounts.set_members(acme_world["group"], [charlie])
    assert not Membership.objects.filter(group=acme_world["group"], actor=charlie).exists()


def test_tokens_of_another_account_actor_are_refused(acme, globex, charlie):  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound):
        accounts.create_token(acme, kind=Token.Kind.CLIENT, actor=charlie)


def test_allowed_resources_never_crosses_accounts(acme_world, globex, charlie):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from policies.evaluation import ClientContext

    ctx = ClientContext(
        remote_ip=None, country=None, auth_provider_id=None, verified=True, now=datetime.now(UTC)
    )
    # charlie is in globex's Everyone group; make acme's resource allowed to acme's Everyone too.
    policies.create_policy(
        acme_world["site"].account,
        group=accounts.everyone_group(acme_world["site"].account),
        resource=acme_world["resource"],
    )
    assert queries.allowed_resources(charlie, ctx) == []


def test_allowed_resources_for_bob_follows_membership(acme_world, bob, alice):  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from policies.evaluation import ClientContext

    ctx = ClientContext(
        remote_ip=None, country=None, auth_provider_id=None, verified=True, now=datetime.now(UTC)
    )
    assert [a.resource.name for a in queries.allowed_resources(bob, ctx)] == ["Wiki"]
    assert queries.allowed_resources(alice, ctx) == []
    accounts.remove_member(acme_world["group"], bob)
    assert queries.allowed_resources(bob, ctx) == []


UNSCOPED = re.compile(r"\.objects\.(?!for_account\()")
ALLOWED_FILES = {"models.py", "services.py", "queries.py", "admin.py", "auth.py", "health.py"}


def test_every_read_outside_services_and_queries_is_account_scoped() -> None:
    offenders = []
    for app in ("accounts", "policies", "gateways", "firezone_site"):
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts or "management" in path.parts:
                continue
            if path.name in ALLOWED_FILES:
                continue
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                if UNSCOPED.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert offenders == []
