"""Upgrading a database populated at the schema before the layering move loses nothing.

The move (issue 8) changed which app owns ``Site`` and ``Authorization`` (state only, same tables)
and replaced ``accounts.Token.site`` by ``gateways.GatewayToken`` (a data migration). Each test
creates a scratch database, migrates it to the leaves main had before the move, inserts one of
everything through the historical models, migrates forward to the latest migrations and reads the
rows back through today's models. It runs on PostgreSQL (production) and SQLite (``make run``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

# The leaves of the portal apps on main before the move; other apps stay at their latest.
BEFORE_MOVE = {
    "accounts": "0002_initial",
    "policies": "0001_initial",
    "gateways": "0002_static_devices",
}
ALIAS = "upgrade_scratch"


def _postgres_settings(name: str) -> dict[str, Any]:
    return {**connections.settings["default"], "NAME": name, "TEST": {}}


@pytest.fixture(params=["postgresql", "sqlite"])
def scratch(
    request: pytest.FixtureRequest, django_db_blocker: Any, tmp_path: Path
) -> Iterator[str]:
    """A connection alias to an empty database of the given engine, dropped afterwards."""
    engine = request.param
    name = f"fz_upgrade_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        if engine == "postgresql":
            import psycopg

            default = connections.settings["default"]
            if not default["ENGINE"].endswith("postgresql"):
                pytest.fail("the suite runs against PostgreSQL (DATABASE_URL)")
            conninfo = {
                "host": default["HOST"] or "127.0.0.1",
                "port": default["PORT"] or 5432,
                "user": default["USER"],
                "dbname": "postgres",
            }
            if default["PASSWORD"]:
                conninfo["password"] = default["PASSWORD"]
            with psycopg.connect(**conninfo, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            connections.settings[ALIAS] = _postgres_settings(name)
        else:
            connections.settings[ALIAS] = {
                **connections.settings["default"],
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(tmp_path / f"{name}.sqlite3"),
                "HOST": "",
                "PORT": "",
                "USER": "",
                "PASSWORD": "",
                "OPTIONS": {},
                "TEST": {},
            }
        try:
            yield ALIAS
        finally:
            connections[ALIAS].close()
            del connections[ALIAS]
            del connections.settings[ALIAS]
            if engine == "postgresql":
                with psycopg.connect(**conninfo, autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _targets(executor: MigrationExecutor, overrides: dict[str, str]) -> list[tuple[str, str]]:
    leaves = dict(executor.loader.graph.leaf_nodes())
    return [(app, overrides.get(app, leaf)) for app, leaf in sorted(leaves.items())]


def _populate(apps: Any, db: str) -> dict[str, Any]:
    """One of everything, through the pre-move historical models, as main would have written it."""

    def make(label: str, **fields: Any) -> Any:
        return apps.get_model(label).objects.using(db).create(**fields)

    now = timezone.now()
    account = make("accounts.Account", name="Acme", slug="acme")
    other = make("accounts.Account", name="Globex", slug="globex")
    actor = make("accounts.Actor", account=account, email="bob@acme.test", name="Bob")
    group = make("accounts.Group", account=account, name="Engineering")
    make("accounts.Membership", account=account, group=group, actor=actor)
    site = make("gateways.Site", account=account, name="Berlin")
    other_site = make("gateways.Site", account=other, name="Globex HQ")
    gateway_token = make(
        "accounts.Token", account=account, kind="gateway", secret_hash="a" * 64, site=site
    )
    other_token = make(
        "accounts.Token", account=other, kind="gateway", secret_hash="b" * 64, site=other_site
    )
    api_actor = make("accounts.Actor", account=account, name="CI", type="service_account")
    api_token = make(
        "accounts.Token", account=account, kind="api", secret_hash="c" * 64, actor=api_actor
    )
    gateway_slot = make("gateways.TunnelAddress", account=account, slot=1)
    gateway = make(
        "gateways.Gateway",
        account=account,
        site=site,
        external_id="gw-1",
        name="gw-1",
        public_key="G" * 43 + "=",
        address=gateway_slot,
        ipv4="100.64.0.1",
        ipv6="fd00:2021:1111::1",
        last_token=gateway_token,
    )
    resource = make(
        "policies.Resource",
        account=account,
        name="Wiki",
        kind="cidr",
        address="10.0.0.0/24",
        site=site,
        filters=[{"protocol": "tcp", "ports": ["443"]}],
    )
    policy = make("policies.Policy", account=account, group=group, resource=resource)
    device_slot = make("gateways.TunnelAddress", account=account, slot=2)
    device = make(
        "gateways.ClientDevice",
        account=account,
        actor=actor,
        kind="static",
        external_id="laptop",
        name="laptop",
        public_key="D" * 43 + "=",
        address=device_slot,
        ipv4="100.64.0.2",
        ipv6="fd00:2021:1111::2",
    )
    assignment = make(
        "gateways.StaticDeviceAssignment",
        account=account,
        device=device,
        site=site,
        gateway=gateway,
        resource_ids=[str(resource.pk)],
    )
    authorization = make(
        "policies.Authorization",
        account=account,
        actor=actor,
        device=device,
        resource=resource,
        policy=policy,
        gateway=gateway,
        actor_email="bob@acme.test",
        resource_name="Wiki",
        resource_address="10.0.0.0/24",
        expires_at=now + timedelta(hours=1),
    )
    ContentType = apps.get_model("contenttypes.ContentType")
    Permission = apps.get_model("auth.Permission")
    site_type = ContentType.objects.using(db).create(app_label="gateways", model="site")
    auth_type = ContentType.objects.using(db).create(app_label="policies", model="authorization")
    view_site = Permission.objects.using(db).create(
        content_type=site_type, codename="view_site", name="Can view site"
    )
    return {
        "account": account.pk,
        "other": other.pk,
        "actor": actor.pk,
        "group": group.pk,
        "site": site.pk,
        "other_site": other_site.pk,
        "gateway_token": gateway_token.pk,
        "gateway_token_created_at": gateway_token.created_at,
        "other_token": other_token.pk,
        "api_token": api_token.pk,
        "gateway": gateway.pk,
        "resource": resource.pk,
        "policy": policy.pk,
        "device": device.pk,
        "assignment": assignment.pk,
        "authorization": authorization.pk,
        "site_type": site_type.pk,
        "auth_type": auth_type.pk,
        "view_site": view_site.pk,
    }


def test_an_upgraded_database_keeps_every_row_and_relation(scratch: str) -> None:
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType

    from accounts.models import Account, Actor, Group, Membership, Token
    from gateways.models import (
        Authorization,
        ClientDevice,
        Gateway,
        GatewayToken,
        StaticDeviceAssignment,
    )
    from policies.models import Policy, Resource, Site

    connection = connections[scratch]
    executor = MigrationExecutor(connection)
    before = _targets(executor, BEFORE_MOVE)
    executor.migrate(before)
    ids = _populate(executor.loader.project_state(before).apps, scratch)

    executor = MigrationExecutor(connection)  # reload: the recorder saw the applied migrations
    latest = _targets(executor, {})
    assert executor.migration_plan(latest), "the move's migrations must still be unapplied here"
    executor.migrate(latest)
    assert not MigrationExecutor(connection).migration_plan(latest)

    def get(model: Any, key: str) -> Any:
        return model.objects.using(scratch).get(pk=ids[key])

    account = get(Account, "account")
    site = get(Site, "site")
    assert site.account_id == account.pk and site.name == "Berlin"
    assert get(Site, "other_site").account_id == ids["other"]
    actor = get(Actor, "actor")
    group = get(Group, "group")
    assert Membership.objects.using(scratch).filter(group=group, actor=actor).count() == 1

    # The token's site moved into its binding, for each account's token, nothing else bound.
    binding = GatewayToken.objects.using(scratch).get(token_id=ids["gateway_token"])
    assert (binding.site_id, binding.account_id) == (site.pk, account.pk)
    assert binding.created_at == ids["gateway_token_created_at"]
    other_binding = GatewayToken.objects.using(scratch).get(token_id=ids["other_token"])
    assert (other_binding.site_id, other_binding.account_id) == (ids["other_site"], ids["other"])
    assert not GatewayToken.objects.using(scratch).filter(token_id=ids["api_token"]).exists()
    assert GatewayToken.objects.using(scratch).count() == 2
    assert Token.objects.using(scratch).count() == 3
    assert get(Token, "api_token").actor_id is not None

    gateway = get(Gateway, "gateway")
    assert gateway.site_id == site.pk and gateway.last_token_id == ids["gateway_token"]
    resource = get(Resource, "resource")
    assert resource.site_id == site.pk
    assert resource.filters == [{"protocol": "tcp", "ports": ["443"]}]
    policy = get(Policy, "policy")
    assert (policy.group_id, policy.resource_id) == (group.pk, resource.pk)
    device = get(ClientDevice, "device")
    assert device.actor_id == actor.pk and device.ipv4 == "100.64.0.2"
    assignment = get(StaticDeviceAssignment, "assignment")
    assert (assignment.device_id, assignment.site_id, assignment.gateway_id) == (
        device.pk,
        site.pk,
        gateway.pk,
    )
    authorization = get(Authorization, "authorization")
    assert (
        authorization.actor_id,
        authorization.device_id,
        authorization.resource_id,
        authorization.policy_id,
        authorization.gateway_id,
    ) == (actor.pk, device.pk, resource.pk, policy.pk, gateway.pk)
    assert authorization.revoked_at is None and authorization.resource_name == "Wiki"

    # Reverse relations across the moved models resolve on the upgraded tables.
    assert list(site.resources.using(scratch).values_list("pk", flat=True)) == [resource.pk]  # type: ignore[attr-defined]
    assert [t.pk for t in Token.objects.using(scratch).filter(gateway_binding__site=site)] == [
        ids["gateway_token"]
    ]

    # Content types (and so permissions granted on them) followed the models.
    site_type = ContentType.objects.using(scratch).get(pk=ids["site_type"])
    assert (site_type.app_label, site_type.model) == ("policies", "site")
    auth_type = ContentType.objects.using(scratch).get(pk=ids["auth_type"])
    assert (auth_type.app_label, auth_type.model) == ("gateways", "authorization")
    view_site = Permission.objects.using(scratch).get(pk=ids["view_site"])
    assert view_site.content_type_id == site_type.pk


def test_the_upgrade_can_be_reversed_without_losing_a_gateway_tokens_site(scratch: str) -> None:
    connection = connections[scratch]
    executor = MigrationExecutor(connection)
    before = _targets(executor, BEFORE_MOVE)
    executor.migrate(before)
    ids = _populate(executor.loader.project_state(before).apps, scratch)
    executor = MigrationExecutor(connection)
    executor.migrate(_targets(executor, {}))

    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = MigrationExecutor(connection).loader.project_state(before).apps
    token = old.get_model("accounts.Token").objects.using(scratch).get(pk=ids["gateway_token"])
    assert token.site_id == ids["site"]
    api_token = old.get_model("accounts.Token").objects.using(scratch).get(pk=ids["api_token"])
    assert api_token.site_id is None
    site_type = (
        old.get_model("contenttypes.ContentType").objects.using(scratch).get(pk=ids["site_type"])
    )
    assert site_type.app_label == "gateways"
