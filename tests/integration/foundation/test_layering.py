"""The pieces the layering move introduced: hooks wired by the upper apps, gateway tokens bound to
their site by gateways.GatewayToken, and the provider query policies answers for accounts."""

from __future__ import annotations

import pytest

from accounts import hooks as account_hooks
from accounts import services as accounts
from accounts.models import Account, Token
from firezone_site.hooks import Hook
from gateways import services as gateways
from gateways.models import Gateway, GatewayToken
from policies import hooks as policy_hooks
from policies import services as policies

pytestmark = pytest.mark.django_db


def _params(external_id: str = "gw-1") -> gateways.GatewayParams:
    _, public = gateways.generate_key_pair()
    return gateways.GatewayParams(
        external_id=external_id, name=external_id, public_key=public, version="1"
    )


def _connect(secret: str, external_id: str = "gw-1") -> Gateway:
    return gateways.connect_gateway(
        secret=secret, params=_params(external_id), remote_ip="127.0.0.1", channel_name="test!x"
    )


def test_every_hook_the_lower_layers_declare_is_provided_by_an_upper_app() -> None:
    declared = [
        value
        for module in (account_hooks, policy_hooks)
        for value in vars(module).values()
        if isinstance(value, Hook)
    ]
    assert len(declared) == 5
    assert [h.name for h in declared if not h.provided] == []


def test_a_gateway_token_joins_the_site_it_is_bound_to(acme: Account) -> None:
    berlin = gateways.create_site(acme, name="Berlin")
    gateways.create_site(acme, name="Paris")
    issued = gateways.issue_gateway_token(berlin)
    assert GatewayToken.objects.for_account(acme).get(token=issued.token).site_id == berlin.pk
    assert _connect(issued.secret).site_id == berlin.pk


def test_a_gateway_token_without_a_site_binding_is_refused(acme: Account) -> None:
    unbound = accounts.create_token(acme, kind=Token.Kind.GATEWAY, name="no site")
    with pytest.raises(gateways.GatewayRefused) as refused:
        _connect(unbound.secret)
    assert refused.value.code == 4001
    assert not Gateway.objects.for_account(acme).exists()


def test_a_rotated_gateway_token_keeps_its_site(acme: Account) -> None:
    site = gateways.create_site(acme, name="Berlin")
    old = gateways.issue_gateway_token(site)
    new = gateways.rotate_gateway_token(old.token)
    assert GatewayToken.objects.for_account(acme).get(token=new.token).site_id == site.pk
    assert Token.objects.get(pk=old.token.pk).replaced_by_id == new.token.pk
    assert _connect(new.secret).site_id == site.pk


def test_only_gateway_tokens_bound_to_a_site_rotate(acme: Account) -> None:
    from firezone_site.errors import ValidationFailed

    unbound = accounts.create_token(acme, kind=Token.Kind.GATEWAY)
    with pytest.raises(ValidationFailed):
        gateways.rotate_gateway_token(unbound.token)
    assert Token.objects.for_account(acme).count() == 1


def test_deleting_a_site_deletes_its_gateway_tokens_and_no_others(
    acme: Account, globex: Account
) -> None:
    berlin = gateways.create_site(acme, name="Berlin")
    paris = gateways.create_site(acme, name="Paris")
    theirs = gateways.create_site(globex, name="Berlin")
    doomed = gateways.issue_gateway_token(berlin)
    kept = gateways.issue_gateway_token(paris)
    other = gateways.issue_gateway_token(theirs)
    gateways.delete_site(berlin)
    assert not Token.objects.filter(pk=doomed.token.pk).exists()
    assert _connect(kept.secret).site_id == paris.pk
    assert Token.objects.filter(pk=other.token.pk).exists()
    assert list(gateways.gateway_tokens(paris)) == [kept.token]


def test_policies_requiring_a_provider_are_the_accounts_is_in_policies_naming_it(
    acme: Account, globex: Account
) -> None:
    okta = accounts.create_auth_provider(acme, name="Okta", kind="okta")
    google = accounts.create_auth_provider(acme, name="Google", kind="google")

    def policy(account: Account, name: str, operator: str, provider_id: str) -> object:
        site = gateways.create_site(account, name=name)
        resource = policies.create_resource(
            account, name=name, kind="cidr", address="10.0.0.0/24", site=site
        )
        group = accounts.create_group(account, name=name)
        conditions = [{"property": "provider_id", "operator": operator, "values": [provider_id]}]
        return policies.create_policy(
            account, group=group, resource=resource, conditions=conditions
        )

    needs_okta = policy(acme, "A", "is_in", str(okta.pk))
    policy(acme, "B", "is_not_in", str(okta.pk))
    policy(acme, "C", "is_in", str(google.pk))
    policy(globex, "D", "is_in", str(okta.pk))  # another account naming the same id
    assert account_hooks.policies_requiring_provider(acme.pk, okta.pk) == {needs_okta.pk}  # type: ignore[attr-defined]
    assert account_hooks.policies_requiring_provider(globex.pk, google.pk) == frozenset()


# --- the direction of models and migrations (import-linter sees imports, not "app.Model" strings)

LAYERS = ("firezone_site", "accounts", "policies", "gateways")  # lowest first
# Migrations written before the move; rewriting them would break databases that applied them.
LEGACY_MIGRATION_EDGES = {
    ("accounts", "0002_initial", "gateways"),  # Token.site (removed by accounts 0004)
    ("policies", "0001_initial", "gateways"),  # Resource.site (Site moved to policies)
}


def _rank(app_label: str) -> int:
    return LAYERS.index(app_label) if app_label in LAYERS else -1  # Django's own apps: below all


def test_no_model_has_a_relation_to_a_model_of_a_higher_layer() -> None:
    from django.apps import apps

    offenders = [
        f"{model._meta.label}.{field.name} -> {field.related_model._meta.label}"
        for model in apps.get_models()
        if model._meta.app_label in LAYERS
        for field in model._meta.get_fields()
        if field.is_relation
        and not field.auto_created  # reverse accessors are the other side's declaration
        and field.related_model is not None
        and _rank(field.related_model._meta.app_label) > _rank(model._meta.app_label)
    ]
    assert offenders == []


def test_no_migration_depends_on_a_higher_layer_except_the_ones_before_the_move() -> None:
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(None, ignore_no_migrations=True)
    edges = {
        (app, name, dep_app)
        for (app, name), migration in loader.disk_migrations.items()
        if app in LAYERS
        for dep_app, _ in migration.dependencies
        if _rank(dep_app) > _rank(app)
    }
    assert edges == LEGACY_MIGRATION_EDGES
