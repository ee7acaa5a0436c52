"""Per-account sign-in page, the root page that asks for the account, and brute-force limits."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _post(client: Client, slug: str, email: str, password: str) -> Any:
    return client.post(
        reverse("account_sign_in", args=[slug]), {"username": email, "password": password}
    )


def test_the_account_page_lists_enabled_portal_providers_only(acme: Any, globex: Any) -> None:
    from accounts import services
    from accounts.models import AuthProvider

    services.create_auth_provider(acme, name="Email", kind=AuthProvider.Kind.EMAIL)
    services.create_auth_provider(
        acme, name="Clients SSO", kind=AuthProvider.Kind.OIDC, context=AuthProvider.Context.CLIENTS
    )
    off = services.create_auth_provider(acme, name="Old SSO", kind=AuthProvider.Kind.OIDC)
    services.disable_auth_provider(off)
    on = services.create_auth_provider(acme, name="Corp SSO", kind=AuthProvider.Kind.OIDC)
    services.create_auth_provider(globex, name="Globex SSO", kind=AuthProvider.Kind.OIDC)
    page = Client().get(reverse("account_sign_in", args=["acme"])).content.decode()
    assert "Sign in with Corp SSO" in page
    assert reverse("oidc_start", args=["acme", on.pk]) in page
    assert "Email me a sign-in code" in page
    for absent in ("Clients SSO", "Old SSO", "Globex SSO"):
        assert absent not in page
    globex_page = Client().get(reverse("account_sign_in", args=["globex"])).content.decode()
    assert "Globex SSO" in globex_page and "Email me a sign-in code" not in globex_page


def test_an_unknown_or_disabled_account_has_no_sign_in_page(acme: Any) -> None:
    from accounts import services

    assert Client().get(reverse("account_sign_in", args=["nope"])).status_code == 404
    services.disable_account(acme)
    assert Client().get(reverse("account_sign_in", args=["acme"])).status_code == 404


def test_the_root_page_asks_for_the_account_and_redirects_there(acme: Any) -> None:
    client = Client()
    page = client.get(reverse("sign_in"))
    assert b'name="account"' in page.content
    response = client.get(reverse("sign_in"), {"account": "acme"})
    assert response.status_code == 302
    assert response["Location"] == reverse("account_sign_in", args=["acme"])
    missing = client.get(reverse("sign_in"), {"account": "nope"})
    assert missing.status_code == 200 and b"No account with this name" in missing.content


def test_a_password_signs_in_on_the_account_page(client: Client, alice: Any, charlie: Any) -> None:
    assert _post(client, "acme", "alice@acme.test", PASSWORD).status_code == 302
    assert client.get(reverse("overview")).status_code == 200
    # charlie's credentials are not acme's
    other = Client()
    response = _post(other, "acme", "charlie@globex.test", PASSWORD)
    assert response.status_code == 200 and b"Wrong email or password" in response.content
    assert other.get(reverse("overview")).status_code == 302


def test_ten_wrong_passwords_lock_the_email_even_for_the_right_one(
    client: Client, alice: Any, bob: Any, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(9):
        response = _post(client, "acme", "alice@acme.test", "wrong password!")
        assert b"Wrong email or password" in response.content
    tenth = _post(client, "acme", "alice@acme.test", "wrong password!")
    assert b"Too many failed sign-in attempts" in tenth.content
    eleventh = _post(client, "acme", "alice@acme.test", PASSWORD)
    assert eleventh.status_code == 200
    assert b"Too many failed sign-in attempts" in eleventh.content
    assert client.get(reverse("overview")).status_code == 302
    # the root page and the slug/email form are the same key: no way around the lock
    root = client.post(reverse("sign_in"), {"username": "alice@acme.test", "password": PASSWORD})
    assert b"Too many failed sign-in attempts" in root.content
    assert any("sign-in locked" in r.getMessage() for r in caplog.records)
    # bob, same account and same source address, is unaffected
    assert _post(Client(), "acme", "bob@acme.test", PASSWORD).status_code == 302


def test_the_lock_ends_after_the_lockout_period(
    alice: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts.signin import throttle

    settings.FZ_SIGNIN_LOCKOUT_S = 1
    attempt = throttle.Attempt(account="acme", email="alice@acme.test", ip="127.0.0.1")
    for _ in range(10):
        throttle.record_failure(attempt)
    assert throttle.is_locked(attempt)
    import time

    deadline = time.monotonic() + 10
    while throttle.is_locked(attempt) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not throttle.is_locked(attempt)


def test_many_failures_from_one_address_lock_that_address(
    alice: Any, bob: Any, settings: Any
) -> None:
    settings.FZ_SIGNIN_MAX_FAILURES_PER_IP = 5
    spray = Client(REMOTE_ADDR="198.51.100.7")
    for i in range(5):
        _post(spray, "acme", f"nobody{i}@acme.test", "wrong password!")
    response = _post(spray, "acme", "bob@acme.test", PASSWORD)
    assert b"Too many failed sign-in attempts" in response.content
    assert (
        _post(Client(REMOTE_ADDR="198.51.100.8"), "acme", "bob@acme.test", PASSWORD).status_code
        == 302
    )


def test_a_password_session_lasts_the_default_eight_hours(client: Client, alice: Any) -> None:
    _post(client, "acme", "alice@acme.test", PASSWORD)
    assert 8 * 3600 - 60 <= client.session.get_expiry_age() <= 8 * 3600
