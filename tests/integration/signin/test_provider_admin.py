"""Admins add, test, enable and disable identity providers in the UI; secrets never come back."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.integration.signin.oidc_lab import register_client, through_canaille
from tests.integration.ui.conftest import signed_in

pytestmark = pytest.mark.django_db


def _form(iam_server: Any, tamper: Any, client_id: str, secret: str) -> dict[str, Any]:
    return {
        "kind": "oidc",
        "name": "Corp SSO",
        "value": iam_server.url.rstrip("/"),
        "discovery_url": tamper.discovery_url,
        "client_id": client_id,
        "client_secret": secret,
        "context": "both",
        "email_verification": "none",
        "portal_session_hours": "8",
        "client_session_days": "7",
    }


def test_an_admin_adds_tests_and_enables_a_provider(
    alice: Any,
    idp_user: Any,
    iam_server: Any,
    tamper: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from accounts.models import AuthProvider

    caplog.set_level(logging.DEBUG)
    client_id, secret = register_client(iam_server)
    iam_server.consent(idp_user)
    admin = signed_in(alice)
    new = admin.get(reverse("provider_new") + "?kind=oidc").content.decode()
    assert "http://testserver/sign-in/oidc/callback" in new  # the redirect URI to register
    response = admin.post(reverse("provider_new"), _form(iam_server, tamper, client_id, secret))
    assert response.status_code == 302
    provider = AuthProvider.objects.for_account(alice.account_id).get(name="Corp SSO")
    assert provider.disabled_at is not None  # saved disabled until tested
    assert secret not in str(provider.config)
    detail = admin.get(response["Location"]).content.decode()
    assert secret not in detail and "stored encrypted" in detail
    # not on the sign-in page yet, and cannot be enabled before a test
    assert (
        "Corp SSO" not in Client().get(reverse("account_sign_in", args=["acme"])).content.decode()
    )
    refused = admin.post(reverse("provider_enable", args=[provider.pk]), follow=True)
    assert b"before enabling it" in refused.content
    # the test signs in through the provider without changing the admin's session
    path, query = through_canaille(admin, reverse("provider_test", args=[provider.pk]), post=True)
    tested = admin.get(path, query, follow=True)
    assert b"Test sign-in succeeded" in tested.content
    assert admin.post(reverse("provider_enable", args=[provider.pk])).status_code == 302
    page = Client().get(reverse("account_sign_in", args=["acme"])).content.decode()
    assert "Sign in with Corp SSO" in page
    admin.post(reverse("provider_disable", args=[provider.pk]))
    provider.refresh_from_db()
    assert provider.disabled_at is not None
    assert secret not in caplog.text


def test_get_on_test_or_toggle_does_nothing(alice: Any, acme: Any) -> None:
    from accounts import services
    from accounts.models import AuthProvider

    provider = services.create_auth_provider(acme, name="Email", kind=AuthProvider.Kind.EMAIL)
    admin = signed_in(alice)
    for name in ("provider_test", "provider_enable", "provider_disable"):
        assert admin.get(reverse(name, args=[provider.pk])).status_code == 405


def test_members_and_other_accounts_cannot_manage_providers(
    alice: Any, bob: Any, charlie: Any, acme: Any
) -> None:
    from accounts import services
    from accounts.models import AuthProvider

    provider = services.create_auth_provider(acme, name="Email", kind=AuthProvider.Kind.EMAIL)
    assert signed_in(bob).get(reverse("provider_list")).status_code == 403
    charlie_client = signed_in(charlie)
    assert charlie_client.get(reverse("provider_detail", args=[provider.pk])).status_code == 404
    assert charlie_client.post(reverse("provider_disable", args=[provider.pk])).status_code == 404
    provider.refresh_from_db()
    assert provider.disabled_at is None
    assert "Email" not in charlie_client.get(reverse("provider_list")).content.decode()


def test_the_client_secret_is_encrypted_with_a_key_derived_from_secret_key(
    acme: Any, settings: Any
) -> None:
    from accounts.signin import crypto, services

    provider = services.create_oidc_provider(
        acme,
        kind="okta",
        name="Okta",
        value="acme.okta.com",
        client_id="0oa123",
        client_secret="s3cr3t-value",
    )
    assert provider.config["issuer"] == "https://acme.okta.com"
    assert provider.config["email_verification"] == "claim"
    assert "s3cr3t-value" not in str(provider.config)
    assert services.client_secret(provider) == "s3cr3t-value"
    settings.SECRET_KEY = "another-secret-key-that-is-long-enough-0123456789"
    with pytest.raises(crypto.SecretUnavailable):
        services.client_secret(provider)


def test_presets_fill_in_the_vendor_issuers(acme: Any) -> None:
    from accounts.signin import services

    google = services.create_oidc_provider(
        acme, kind="google", name="G", value="", client_id="x", client_secret="y"
    )
    entra = services.create_oidc_provider(
        acme, kind="entra", name="E", value="tenant-1", client_id="x", client_secret="y"
    )
    assert google.config["issuer"] == "https://accounts.google.com"
    assert google.config["email_verification"] == "claim"
    assert entra.config["issuer"] == "https://login.microsoftonline.com/tenant-1/v2.0"
    assert entra.config["subject_claim"] == "oid"
