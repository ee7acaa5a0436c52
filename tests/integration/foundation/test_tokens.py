from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts import services as accounts
from accounts.models import Actor, Token
from gateways import services as gateways

pytestmark = pytest.mark.django_db


def test_only_the_hash_of_a_secret_is_stored(acme) -> None:  # type: ignore[no-untyped-def]
    site = gateways.create_site(acme, name="HQ")
    issued = gateways.issue_gateway_token(site)
    secret_part = issued.secret.split("_", 2)[2]  # the random part may itself contain "_"
    assert len(secret_part) >= 40
    with connection.cursor() as cur:
        cur.execute("SELECT * FROM accounts_token")
        rows = cur.fetchall()
    assert rows
    assert all(secret_part not in str(row) for row in rows)
    assert accounts.use_token(issued.secret, kind=Token.Kind.GATEWAY) == issued.token


def test_it_rejects_wrong_revoked_expired_and_other_kind_tokens(acme, alice) -> None:  # type: ignore[no-untyped-def]
    svc = accounts.create_actor(acme, email="", name="CI", type=Actor.Type.SERVICE_ACCOUNT)
    issued = accounts.create_token(acme, kind=Token.Kind.API, actor=svc)
    assert accounts.use_token(issued.secret, kind=Token.Kind.API) is not None
    assert accounts.use_token(issued.secret, kind=Token.Kind.GATEWAY) is None
    assert accounts.use_token(issued.secret[:-1] + "x", kind=Token.Kind.API) is None
    assert accounts.use_token("garbage", kind=Token.Kind.API) is None
    assert accounts.use_token("", kind=Token.Kind.API) is None
    Token.objects.filter(pk=issued.token.pk).update(expires_at=timezone.now() - timedelta(1))
    assert accounts.use_token(issued.secret, kind=Token.Kind.API) is None
    other = accounts.create_token(acme, kind=Token.Kind.API, actor=svc)
    accounts.revoke_token(other.token)
    assert accounts.use_token(other.secret, kind=Token.Kind.API) is None


def test_disabling_an_actor_revokes_its_tokens(acme, alice, bob) -> None:  # type: ignore[no-untyped-def]
    issued = accounts.create_token(acme, kind=Token.Kind.CLIENT, actor=bob)
    assert accounts.use_token(issued.secret, kind=Token.Kind.CLIENT) is not None
    accounts.disable_actor(bob)
    assert accounts.use_token(issued.secret, kind=Token.Kind.CLIENT) is None


def test_a_rotated_gateway_token_works_until_the_new_one_is_used(acme) -> None:  # type: ignore[no-untyped-def]
    site = gateways.create_site(acme, name="HQ")
    old = gateways.issue_gateway_token(site)
    new = gateways.rotate_gateway_token(old.token)
    assert accounts.use_token(old.secret, kind=Token.Kind.GATEWAY) is not None
    assert accounts.use_token(new.secret, kind=Token.Kind.GATEWAY) is not None
    assert accounts.use_token(old.secret, kind=Token.Kind.GATEWAY) is None
    assert accounts.use_token(new.secret, kind=Token.Kind.GATEWAY) is not None


def test_a_rotated_gateway_token_stops_after_the_4h_grace(acme) -> None:  # type: ignore[no-untyped-def]
    site = gateways.create_site(acme, name="HQ")
    old = gateways.issue_gateway_token(site)
    gateways.rotate_gateway_token(old.token, now=timezone.now() - timedelta(hours=4, seconds=1))
    assert accounts.use_token(old.secret, kind=Token.Kind.GATEWAY) is None


def test_expired_tokens_are_deleted(acme, bob) -> None:  # type: ignore[no-untyped-def]
    keep = accounts.create_token(acme, kind=Token.Kind.CLIENT, actor=bob)
    gone = accounts.create_token(acme, kind=Token.Kind.CLIENT, actor=bob)
    Token.objects.filter(pk=gone.token.pk).update(expires_at=timezone.now() - timedelta(days=2))
    assert accounts.delete_expired_tokens() == 1
    assert Token.objects.filter(pk=keep.token.pk).exists()
    assert not Token.objects.filter(pk=gone.token.pk).exists()


def test_api_tokens_go_to_service_accounts_of_the_same_account_only(  # type: ignore[no-untyped-def]
    acme, alice, bob, globex
) -> None:
    from firezone_site.errors import NotFound, ValidationFailed

    issued = accounts.issue_api_token(acme, new_service_account="CI", expires_in_days=30)
    assert issued.token.actor is not None and issued.token.actor.type == Actor.Type.API_CLIENT
    assert issued.token.expires_at is not None
    assert accounts.use_token(issued.secret, kind=Token.Kind.API) is not None
    again = accounts.issue_api_token(acme, actor_id=issued.token.actor.pk, name="second")
    assert again.token.actor_id == issued.token.actor.pk and again.token.expires_at is None
    other = accounts.create_actor(globex, email="", name="Bot", type=Actor.Type.SERVICE_ACCOUNT)
    for wrong in (bob.pk, other.pk):
        with pytest.raises(NotFound):
            accounts.issue_api_token(acme, actor_id=wrong)
    before = Actor.objects.for_account(acme).count()
    with pytest.raises(ValidationFailed):
        accounts.issue_api_token(acme, new_service_account="  ")
    assert Actor.objects.for_account(acme).count() == before


def test_a_site_and_its_first_token_are_created_together_or_not_at_all(acme) -> None:  # type: ignore[no-untyped-def]
    from firezone_site.errors import ValidationFailed
    from policies.models import Site

    site, issued = gateways.create_site_with_token(acme, name="HQ")
    assert issued.token.gateway_binding.site_id == site.pk
    tokens = Token.objects.for_account(acme).count()
    with pytest.raises(ValidationFailed):
        gateways.create_site_with_token(acme, name="HQ")
    assert Site.objects.for_account(acme).count() == 1
    assert Token.objects.for_account(acme).count() == tokens
