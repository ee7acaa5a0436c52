"""No secret of a sign-in (code, client secret, authorization code, state, nonce, PKCE
verifier, session key) reaches the logs, even at DEBUG."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.integration.signin.conftest import Mailbox
from tests.integration.signin.oidc_lab import through_canaille
from tests.integration.signin.test_oidc import _provider

pytestmark = pytest.mark.django_db


def _our_log(caplog: pytest.LogCaptureFixture) -> str:
    # mail.log and canaille are the test's own SMTP server and identity provider (peers).
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith(("mail.log", "canaille"))
    )


def test_no_sign_in_secret_is_logged(
    acme: Any,
    alice: Any,
    idp_user: Any,
    iam_server: Any,
    tamper: Any,
    mailbox: Mailbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from accounts import services as account_services
    from accounts.models import AuthProvider, Token
    from accounts.signin import services

    caplog.set_level(logging.DEBUG)
    secrets: list[str] = []
    # email code
    account_services.create_auth_provider(acme, name="Email", kind=AuthProvider.Kind.EMAIL)
    client = Client()
    page = client.post(reverse("email_request", args=["acme"]), {"email": "alice@acme.test"})
    body = mailbox.wait(1)[0].get_content()
    code = re.search(r"^ {4}([A-Z0-9]{6})\s*$", body, re.M)
    assert code
    secrets.append(code.group(1))
    client.post(page["Location"], {"code": "WRONG1"})
    client.post(page["Location"], {"code": code.group(1)})
    secrets.append(client.session.session_key or "")
    # OIDC, including a refused attempt (errors are logged: they must not carry secrets)
    provider = _provider(acme, iam_server, tamper)
    secrets.append(services.client_secret(provider))
    oidc_client = Client()
    path, query = through_canaille(oidc_client, reverse("oidc_start", args=["acme", provider.pk]))
    flows = oidc_client.session["fz_oidc_pending"]
    flow = flows[query["state"]]
    secrets += [query["code"], query["state"], flow["nonce"], flow["verifier"]]
    assert oidc_client.get(path, query).status_code == 302
    tamper.change = lambda c: {**c, "aud": "other"}
    refused = Client()
    path, query = through_canaille(refused, reverse("oidc_start", args=["acme", provider.pk]))
    secrets.append(query["code"])
    assert refused.get(path, query).status_code == 403
    # client tokens
    issued = account_services.create_token(acme, kind=Token.Kind.CLIENT, actor=alice)
    account_services.use_token(issued.secret, kind=Token.Kind.CLIENT)
    secrets.append(issued.secret)
    text = _our_log(caplog)
    assert "OIDC sign-in refused" in text  # the logs were captured at all
    leaked = [s for s in secrets if s and s in text]
    assert leaked == []
