"""Email one-time codes, mailed through a real SMTP server and read back from it."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from tests.integration.signin.conftest import Mailbox

pytestmark = pytest.mark.django_db


@pytest.fixture
def email_provider(acme: Any) -> Any:
    from accounts import services
    from accounts.models import AuthProvider

    return services.create_auth_provider(acme, name="Email", kind=AuthProvider.Kind.EMAIL)


def _ask(client: Client, email: str, slug: str = "acme") -> Any:
    return client.post(reverse("email_request", args=[slug]), {"email": email})


def _code(message: Any) -> tuple[str, str]:
    body = message.get_content()
    code = re.search(r"^ {4}([A-Z0-9]{6})\s*$", body, re.M)
    link = re.search(r"(http://\S+/sign-in/email/\S+)#code=([A-Z0-9]{6})", body)
    assert code and link and link.group(2) == code.group(1)
    return code.group(1), link.group(1)


def test_a_mailed_code_signs_in_once(
    email_provider: Any, alice: Any, mailbox: Mailbox, caplog: pytest.LogCaptureFixture
) -> None:
    from accounts.signin.models import SignInCode

    client = Client()
    response = _ask(client, "alice@acme.test")
    assert response.status_code == 302
    page_url = response["Location"]
    [mail] = mailbox.wait(1)
    assert mail["To"] == "alice@acme.test"
    code, link = _code(mail)
    assert link.endswith(page_url)
    row = SignInCode.objects.for_account(alice.account_id).get(actor=alice)
    assert code not in row.code_hash and row.code_hash.count("$") >= 1  # a password hash
    assert client.post(page_url, {"code": code.lower()}).status_code == 302
    assert client.get(reverse("overview")).status_code == 200
    # the same code cannot be used twice
    again = Client().post(page_url, {"code": code})
    assert again.status_code == 422 and b"wrong, expired or used up" in again.content
    text = caplog.text
    assert code not in text


def test_the_answer_does_not_tell_whether_the_email_exists(
    email_provider: Any, alice: Any, mailbox: Mailbox
) -> None:
    known = _ask(Client(), "alice@acme.test")
    unknown = _ask(Client(), "mallory@acme.test")
    assert known.status_code == unknown.status_code == 302
    known_page = Client().get(known["Location"]).content.decode()
    unknown_page = Client().get(unknown["Location"]).content.decode()
    strip = re.compile(r"[A-Za-z0-9]{64}|/sign-in/email/[0-9a-f-]+")  # CSRF tokens, code ids
    assert strip.sub("", known_page) == strip.sub("", unknown_page)
    mailbox.wait(1)
    time.sleep(0.5)
    assert len(mailbox.messages) == 1  # nothing was mailed for the unknown address

    def timed(email: str) -> float:
        start = time.perf_counter()
        _ask(Client(), email)
        return time.perf_counter() - start

    known_t = min(timed("alice@acme.test") for _ in range(3))
    unknown_t = min(timed("mallory@acme.test") for _ in range(3))
    # Same work either way (hash + render; mail goes out from a thread): within a generous
    # margin for a loaded machine.
    assert abs(known_t - unknown_t) < 0.25


def test_three_wrong_codes_burn_it(email_provider: Any, alice: Any, mailbox: Mailbox) -> None:
    client = Client()
    page_url = _ask(client, "alice@acme.test")["Location"]
    code, _ = _code(mailbox.wait(1)[0])
    wrong = "ZZZZZ2" if code != "ZZZZZ2" else "ZZZZZ3"
    for _ in range(3):
        assert client.post(page_url, {"code": wrong}).status_code == 422
    burned = client.post(page_url, {"code": code})
    assert burned.status_code == 422
    assert client.get(reverse("overview")).status_code == 302


def test_a_code_expires_after_fifteen_minutes(
    email_provider: Any, alice: Any, mailbox: Mailbox
) -> None:
    from datetime import timedelta

    from accounts.signin.models import SignInCode

    client = Client()
    page_url = _ask(client, "alice@acme.test")["Location"]
    code, _ = _code(mailbox.wait(1)[0])
    row = SignInCode.objects.for_account(alice.account_id).get(actor=alice)
    assert timedelta(minutes=14) < row.expires_at - row.created_at <= timedelta(minutes=15)
    SignInCode.objects.filter(pk=row.pk).update(expires_at=row.created_at)
    assert client.post(page_url, {"code": code}).status_code == 422


def test_a_code_of_one_account_does_not_sign_in_to_another(
    email_provider: Any, alice: Any, charlie: Any, mailbox: Mailbox
) -> None:
    client = Client()
    page_url = _ask(client, "alice@acme.test")["Location"]
    code, _ = _code(mailbox.wait(1)[0])
    foreign = page_url.replace("/acme/", "/globex/")
    assert client.post(foreign, {"code": code}).status_code == 422
    assert client.get(reverse("overview")).status_code == 302


def test_disabled_actors_and_disabled_providers_get_no_code(
    email_provider: Any, alice: Any, bob: Any, mailbox: Mailbox
) -> None:
    from accounts import services

    services.disable_actor(bob)
    assert _ask(Client(), "bob@acme.test").status_code == 302
    time.sleep(0.5)
    assert mailbox.messages == []
    services.disable_auth_provider(email_provider)
    assert _ask(Client(), "alice@acme.test").status_code == 404


def test_wrong_codes_count_towards_the_lockout(
    email_provider: Any, alice: Any, mailbox: Mailbox, settings: Any
) -> None:
    settings.FZ_SIGNIN_MAX_FAILURES = 4
    client = Client()
    for i in range(2):
        page_url = _ask(client, "alice@acme.test")["Location"]
        mailbox.wait(i + 1)
        for _ in range(2):
            client.post(page_url, {"code": "ZZZZZZ"})
    page_url = _ask(client, "alice@acme.test")
    assert page_url.status_code == 429
    assert b"Too many failed sign-in attempts" in page_url.content


def test_the_embedded_default_writes_mails_to_var_mail(
    email_provider: Any, alice: Any, settings: Any, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = str(tmp_path / "mail")
    caplog.set_level(logging.INFO)
    _ask(Client(), "alice@acme.test")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not list((tmp_path / "mail").glob("*")):
        time.sleep(0.1)
    [written] = list((tmp_path / "mail").glob("*"))
    assert "alice@acme.test" in written.read_text()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and str(tmp_path / "mail") not in caplog.text:
        time.sleep(0.1)
    assert str(tmp_path / "mail") in caplog.text


def test_mails_to_one_address_are_capped_silently(
    email_provider: Any, alice: Any, mailbox: Mailbox, settings: Any
) -> None:
    settings.FZ_SIGNIN_MAX_MAILS = 2
    answers = [_ask(Client(), "alice@acme.test") for _ in range(4)]
    assert {a.status_code for a in answers} == {302}
    mailbox.wait(2)
    time.sleep(1.0)
    assert len(mailbox.messages) == 2
