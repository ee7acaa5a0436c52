"""Sign-in in Chromium: through Canaille's real login page, and with an emailed code."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from tests.integration.signin.conftest import Mailbox, mailbox  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_through_the_identity_providers_login_page(
    page: Any, live_server: Any, shots: Any, alice: Any, iam_server: Any
) -> None:
    from accounts.signin import services

    base = live_server.url
    client_id, secret = f"fz-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    client = iam_server.models.Client(
        client_id=client_id,
        client_secret=secret,
        client_name="Firezone portal (browser test)",
        redirect_uris=[f"{base}/sign-in/oidc/callback"],
        token_endpoint_auth_method="client_secret_basic",
        grant_types=["authorization_code"],
        response_types=["code"],
        scope=["openid", "email", "profile"],
    )
    iam_server.backend.save(client)
    client.audience = [client]
    iam_server.backend.save(client)
    person = iam_server.random_user(emails=["alice@acme.test"])
    iam_server.backend.set_user_password(person, "idp password 123")
    iam_server.backend.save(person)
    iam_server.consent(person, client)
    provider = services.create_oidc_provider(
        alice.account,
        kind="oidc",
        name="Canaille",
        value=iam_server.url.rstrip("/"),
        client_id=client_id,
        client_secret=secret,
        email_verification="none",
    )
    services.mark_provider_tested(provider, alice)
    services.enable_auth_provider(provider)

    page.goto(f"{base}/sign-in/")
    page.fill("#id_account", "acme")
    page.click("[data-testid=continue]")
    page.wait_for_selector("text=Sign in with Canaille")
    shots(page, "account-sign-in")
    page.click("text=Sign in with Canaille")
    page.wait_for_selector("input[name=login]")
    shots(page, "idp-login")
    page.fill("input[name=login]", person.user_name)
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=password]")
    page.fill("input[name=password]", "idp password 123")
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Overview')")
    assert page.url.rstrip("/") == base
    shots(page, "overview")


def test_sign_in_with_an_emailed_code(
    page: Any,
    live_server: Any,
    shots: Any,
    alice: Any,
    mailbox: Mailbox,  # noqa: F811
) -> None:
    from accounts import services
    from accounts.models import AuthProvider

    services.create_auth_provider(alice.account, name="Email", kind=AuthProvider.Kind.EMAIL)
    base = live_server.url
    page.goto(f"{base}/acme/sign-in")
    page.fill("#id_email", "alice@acme.test")
    page.click("[data-testid=send-code]")
    page.wait_for_selector("text=Check your mail")
    shots(page, "code-sent")
    body = mailbox.wait(1)[0].get_content()
    link = re.search(r"(http://\S+#code=[A-Z0-9]{6})", body)
    assert link
    page.goto(link.group(1))  # the link: the page fills the code from the URL fragment
    page.wait_for_selector("[data-testid=code-form]")
    assert page.input_value("#id_code")
    shots(page, "code-filled")
    page.click("[data-testid=submit-code]")
    page.wait_for_selector("h1:has-text('Overview')")
