"""OIDC sign-in against an independent provider (Canaille via pytest-iam), in-process."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from tests.integration.signin.oidc_lab import register_client, through_canaille

pytestmark = pytest.mark.django_db


def _provider(
    account: Any, iam_server: Any, tamper: Any, *, verification: str = "none", kind: str = "oidc"
) -> Any:
    from accounts.signin import services

    client_id, secret = register_client(iam_server)
    provider = services.create_oidc_provider(
        account,
        kind="oidc",
        name="Canaille",
        value=iam_server.url.rstrip("/"),
        client_id=client_id,
        client_secret=secret,
        email_verification=verification,
        discovery_url=tamper.discovery_url,
    )
    if kind != "oidc":  # the vendor rules on a provider we can reach: require email_verified
        provider.config = {**provider.config, "email_verification": "claim"}
        provider.save(update_fields=["config"])
    provider.config = {**provider.config, "tested_at": "2026-01-01T00:00:00+00:00"}
    provider.save(update_fields=["config"])
    services.enable_auth_provider(provider)
    provider.refresh_from_db()
    return provider


@pytest.fixture
def canaille(acme: Any, iam_server: Any, tamper: Any) -> Any:
    return _provider(acme, iam_server, tamper)


def _sign_in(client: Client, provider: Any, *, state: str | None = None) -> Any:
    path, query = through_canaille(
        client, reverse("oidc_start", args=[provider.account.slug, provider.pk])
    )
    if state is not None:
        query["state"] = state
    return client.get(path, query)


def _written() -> tuple[int, int, int]:
    from django.contrib.auth.models import User

    from accounts.models import Actor, Identity

    return Actor.objects.count(), Identity.objects.count(), User.objects.count()


def test_the_full_code_and_pkce_flow_signs_in(
    canaille: Any, alice: Any, idp_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from accounts.models import Identity

    client = Client()
    response = _sign_in(client, canaille)
    assert response.status_code == 302, response.content.decode()[:800]
    assert response["Location"] == reverse("overview")
    assert client.get(reverse("overview")).status_code == 200
    identity = Identity.objects.for_account(alice.account_id).get(actor=alice)
    assert identity.issuer == canaille.config["issuer"]
    assert identity.email == "alice@acme.test"
    # the second time, the identity (issuer, subject) is what matches
    client.post(reverse("sign_out"))
    assert _sign_in(Client(), canaille).status_code == 302
    assert Identity.objects.for_account(alice.account_id).count() == 1
    secret = canaille.config["client_secret_enc"]
    assert secret not in caplog.text


def _refused(response: Any, text: str) -> None:
    assert response.status_code == 403, response.content.decode()[:800]
    assert text in response.content.decode()


def _shift(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(claims: dict[str, Any]) -> dict[str, Any]:
        return {**claims, **changes}

    return change


CASES = {
    "wrong audience": (_shift(aud="someone-else"), "another application (audience)"),
    "expired": (
        lambda c: {**c, "iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600},
        "expired",
    ),
    "wrong nonce": (_shift(nonce="not-the-one-we-sent"), "nonce"),
    "wrong issuer": (_shift(iss="https://evil.example"), "another issuer"),
    "issued in the future": (
        lambda c: {**c, "iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200},
        "not valid yet",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_tampered_id_token_is_refused_and_nothing_is_written(
    case: str, canaille: Any, alice: Any, idp_user: Any, tamper: Any
) -> None:
    tamper.change, message = CASES[case]
    before = _written()
    client = Client()
    _refused(_sign_in(client, canaille), message)
    assert _written() == before
    assert client.get(reverse("overview")).status_code == 302


def test_a_signature_by_another_key_is_refused(
    canaille: Any, alice: Any, idp_user: Any, tamper: Any
) -> None:
    tamper.other_key = True
    before = _written()
    client = Client()
    _refused(_sign_in(client, canaille), "signature does not verify")
    assert _written() == before
    assert client.get(reverse("overview")).status_code == 302


def test_a_wrong_state_is_refused(canaille: Any, alice: Any, idp_user: Any) -> None:
    before = _written()
    client = Client()
    _refused(_sign_in(client, canaille, state="forged-state"), "(state)")
    assert _written() == before
    assert client.get(reverse("overview")).status_code == 302


def test_a_response_started_in_another_browser_is_refused(
    canaille: Any, alice: Any, idp_user: Any
) -> None:
    path, query = through_canaille(Client(), reverse("oidc_start", args=["acme", canaille.pk]))
    victim = Client()
    _refused(victim.get(path, query), "(state)")
    assert victim.get(reverse("overview")).status_code == 302


def test_email_verified_is_required_where_the_provider_demands_it(
    acme: Any, alice: Any, idp_user: Any, iam_server: Any, tamper: Any
) -> None:
    strict = _provider(acme, iam_server, tamper, kind="google")
    before = _written()
    # Canaille sends no email_verified at all: not verified.
    _refused(_sign_in(Client(), strict), "did not confirm your email address")
    tamper.change = _shift(email_verified=False)
    _refused(_sign_in(Client(), strict), "did not confirm your email address")
    assert _written() == before
    tamper.change = _shift(email_verified=True)
    assert _sign_in(Client(), strict).status_code == 302


def test_an_unknown_person_is_refused_and_nothing_is_created(
    canaille: Any, alice: Any, iam_server: Any
) -> None:
    stranger = iam_server.random_user(emails=["stranger@elsewhere.test"])
    iam_server.login(stranger)
    iam_server.consent(stranger)
    try:
        before = _written()
        client = Client()
        _refused(_sign_in(client, canaille), "You are not a member of this account")
        assert _written() == before
        assert client.get(reverse("overview")).status_code == 302
    finally:
        iam_server.logout()


def test_the_same_address_in_another_account_is_not_matched(
    globex: Any, charlie: Any, alice: Any, idp_user: Any, iam_server: Any, tamper: Any
) -> None:
    # globex's provider vouches for alice@acme.test: that is nobody in globex.
    provider = _provider(globex, iam_server, tamper)
    before = _written()
    _refused(_sign_in(Client(), provider), "You are not a member of this account")
    assert _written() == before


def test_a_disabled_actor_is_refused_even_with_a_known_identity(
    canaille: Any, alice: Any, bob: Any, iam_server: Any
) -> None:
    from accounts import services

    person = iam_server.random_user(emails=["bob@acme.test"])
    iam_server.login(person)
    iam_server.consent(person)
    try:
        assert _sign_in(Client(), canaille).status_code == 302  # identity now upserted
        services.disable_actor(bob)
        before = _written()
        client = Client()
        _refused(_sign_in(client, canaille), "disabled")
        assert _written() == before
        assert client.get(reverse("device_list")).status_code == 302
    finally:
        iam_server.logout()


def test_disabling_the_provider_ends_its_sessions_only(
    canaille: Any, alice: Any, bob: Any, idp_user: Any
) -> None:
    from accounts import services
    from tests.conftest import PASSWORD

    client = Client()
    assert _sign_in(client, canaille).status_code == 302
    assert 8 * 3600 - 60 <= client.session.get_expiry_age() <= 8 * 3600
    password_client = Client()
    password_client.post(
        reverse("account_sign_in", args=["acme"]),
        {"username": "bob@acme.test", "password": PASSWORD},
    )
    assert password_client.get(reverse("device_list")).status_code == 200
    services.disable_auth_provider(canaille)
    assert client.get(reverse("overview")).status_code == 302  # signed out
    assert password_client.get(reverse("device_list")).status_code == 200  # others unaffected
    assert Client().get(reverse("oidc_start", args=["acme", canaille.pk])).status_code == 404


def test_disabling_the_provider_revokes_its_client_tokens(canaille: Any, alice: Any) -> None:
    from accounts import services
    from accounts.models import Token

    issued = services.create_token(alice.account, kind=Token.Kind.CLIENT, actor=alice)
    Token.objects.filter(pk=issued.token.pk).update(provider=canaille)
    other = services.create_token(alice.account, kind=Token.Kind.CLIENT, actor=alice)
    assert services.use_token(issued.secret, kind=Token.Kind.CLIENT) is not None
    services.disable_auth_provider(canaille)
    assert services.use_token(issued.secret, kind=Token.Kind.CLIENT) is None
    assert services.use_token(other.secret, kind=Token.Kind.CLIENT) is not None


def test_the_portal_session_lasts_the_providers_lifetime(
    canaille: Any, alice: Any, idp_user: Any
) -> None:
    from datetime import timedelta

    from accounts.models import AuthProvider

    AuthProvider.objects.filter(pk=canaille.pk).update(portal_session_lifetime=timedelta(hours=1))
    client = Client()
    assert _sign_in(client, canaille).status_code == 302
    assert 3600 - 60 <= client.session.get_expiry_age() <= 3600


def test_disabling_an_actor_ends_their_oidc_session(
    canaille: Any, alice: Any, bob: Any, iam_server: Any
) -> None:
    from accounts import services

    person = iam_server.random_user(emails=["bob@acme.test"])
    iam_server.login(person)
    iam_server.consent(person)
    try:
        client = Client()
        assert _sign_in(client, canaille).status_code == 302
        assert client.get(reverse("device_list")).status_code == 200
        services.disable_actor(bob)
        assert client.get(reverse("device_list")).status_code == 302
    finally:
        iam_server.logout()


def test_next_survives_the_round_trip_but_not_to_another_host(
    canaille: Any, alice: Any, idp_user: Any
) -> None:
    start = reverse("oidc_start", args=["acme", canaille.pk])
    client = Client()
    path, query = through_canaille(client, start + "?next=/policies/")
    assert client.get(path, query)["Location"] == "/policies/"
    evil = Client()
    path, query = through_canaille(evil, start + "?next=https://evil.example/")
    assert evil.get(path, query)["Location"] == reverse("overview")


def test_userinfo_is_merged_when_configured(
    canaille: Any, alice: Any, idp_user: Any, tamper: Any
) -> None:
    from accounts.models import AuthProvider, Identity

    # The id_token carries no email now: only the userinfo endpoint can tell who this is.
    tamper.change = lambda c: {k: v for k, v in c.items() if k != "email"}
    _refused(_sign_in(Client(), canaille), "sent no email address")
    AuthProvider.objects.filter(pk=canaille.pk).update(
        config={**canaille.config, "use_userinfo": True}
    )
    canaille.refresh_from_db()
    assert _sign_in(Client(), canaille).status_code == 302
    identity = Identity.objects.for_account(alice.account_id).get(actor=alice)
    assert identity.email == "alice@acme.test"


def test_a_clients_only_provider_signs_in_clients_but_not_to_the_portal(
    acme: Any, alice: Any, bob: Any, iam_server: Any, tamper: Any
) -> None:
    from accounts.models import AuthProvider
    from accounts.signin import services

    provider = _provider(acme, iam_server, tamper)
    AuthProvider.objects.filter(pk=provider.pk).update(context=AuthProvider.Context.CLIENTS)
    portal_page = Client().get(reverse("account_sign_in", args=["acme"])).content.decode()
    assert "Sign in with Canaille" not in portal_page
    start = reverse("oidc_start", args=["acme", provider.pk])
    assert Client().get(start).status_code == 404  # not for the portal
    device = services.start_device_authorization(client_name="laptop")
    target = f"/device?code={device.user_code}"
    client_page = Client().get(reverse("account_sign_in", args=["acme"]), {"next": target})
    assert "Sign in with Canaille" in client_page.content.decode()
    person = iam_server.random_user(emails=["bob@acme.test"])
    iam_server.login(person)
    iam_server.consent(person)
    try:
        client = Client()
        path, query = through_canaille(client, start + "?" + urlencode({"next": target}))
        landed = client.get(path, query)
    finally:
        iam_server.logout()
    assert landed["Location"] == target
    assert client.get(reverse("device_list")).status_code == 403  # no portal for this session
    page = client.get(target)
    assert page.status_code == 200
    done = client.post(target, {"code": device.user_code, "decision": "approve"})
    assert b"signed in as bob@acme.test" in done.content
    redeemed = services.redeem_device_code(device.device_code)
    assert redeemed.token is not None and redeemed.token.token.provider_id == provider.pk
