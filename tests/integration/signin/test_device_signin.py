"""Headless client sign-in end to end: the real ``firezone-client sign-in`` process against a
live portal, the browser step driven by the test over HTTP, the token file, and the token."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def _browser_sign_in(base: str, slug: str, email: str) -> requests.Session:
    browser = requests.Session()
    page = browser.get(f"{base}/{slug}/sign-in", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf
    signed = browser.post(
        f"{base}/{slug}/sign-in",
        data={"csrfmiddlewaretoken": csrf.group(1), "username": email, "password": PASSWORD},
        headers={"Referer": f"{base}/{slug}/sign-in"},
        allow_redirects=False,
        timeout=10,
    )
    assert signed.status_code == 302, signed.text[:500]
    return browser


def _confirm(browser: requests.Session, url: str, code: str, decision: str = "approve") -> Any:
    page = browser.get(url, timeout=10)
    assert page.status_code == 200 and code in page.text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert csrf
    return browser.post(
        url,
        data={"csrfmiddlewaretoken": csrf.group(1), "code": code, "decision": decision},
        headers={"Referer": url},
        timeout=10,
    )


def _cli(base: str, token_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "agents.client.cli", "sign-in", "--portal-url", base),
            *("--token-file", str(token_file), "--name", "build-box"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    )


def _read_prompt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    assert proc.stdout is not None
    first, second = proc.stdout.readline(), proc.stdout.readline()
    url = re.search(r"open (\S+)", first)
    code = re.search(r"code (\S+)", second)
    assert url and code, (first, second)
    return url.group(1), code.group(1)


def _introspect(base: str, token: str) -> dict[str, Any]:
    response = requests.post(
        f"{base}/api/client/introspect", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def test_a_headless_client_signs_in_through_the_browser(
    live_server: Any, bob: Any, charlie: Any, tmp_path: Path
) -> None:
    from accounts import services
    from accounts.models import Token

    base = live_server.url
    token_file = tmp_path / "conf" / "client-token"
    proc = _cli(base, token_file)
    try:
        url, code = _read_prompt(proc)
        assert url.startswith(f"{base}/device?code=")
        browser = _browser_sign_in(base, "acme", "bob@acme.test")
        approved = _confirm(browser, url, code)
        assert "signed in as bob@acme.test" in approved.text
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Signed in" in out
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in out + err
    info = _introspect(base, token)
    assert info["active"] is True and info["actor"] == "bob@acme.test" and info["account"] == "acme"
    row = Token.objects.for_account(bob.account_id).get(kind=Token.Kind.CLIENT, actor=bob)
    assert row.secret_hash != token and token not in row.secret_hash
    assert 6.9 * 86400 < (row.expires_at - row.created_at).total_seconds() <= 7 * 86400
    # the code is spent: a second confirmation finds nothing; a wrong token is inactive
    again = _confirm(_browser_sign_in(base, "globex", "charlie@globex.test"), url, code)
    assert "No client is waiting with this code" in again.text
    assert _introspect(base, token + "x")["active"] is False
    # disabling bob revokes the token
    services.disable_actor(bob)
    assert _introspect(base, token)["active"] is False


def test_a_denied_client_gets_no_token(live_server: Any, bob: Any, tmp_path: Path) -> None:
    base = live_server.url
    token_file = tmp_path / "client-token"
    proc = _cli(base, token_file)
    try:
        url, code = _read_prompt(proc)
        denied = _confirm(_browser_sign_in(base, "acme", "bob@acme.test"), url, code, "deny")
        assert "refused" in denied.text
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1 and "denied" in err
    assert not token_file.exists()


def test_the_token_endpoint_answers_pending_then_once(live_server: Any, bob: Any) -> None:
    from accounts.signin import services

    base = live_server.url
    start = requests.post(f"{base}/api/client/device-code", timeout=10).json()
    grant = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"}
    poll = requests.post(
        f"{base}/api/client/token", data={**grant, "device_code": start["device_code"]}, timeout=10
    )
    assert poll.status_code == 400 and poll.json()["error"] == "authorization_pending"
    fast = requests.post(
        f"{base}/api/client/token", data={**grant, "device_code": start["device_code"]}, timeout=10
    )
    assert fast.json()["error"] == "slow_down"
    assert services.decide_device_authorization(start["user_code"], bob, None, approve=True) == ""
    got = requests.post(
        f"{base}/api/client/token", data={**grant, "device_code": start["device_code"]}, timeout=10
    )
    assert got.status_code == 200 and got.json()["access_token"].startswith("fzc_")
    replay = requests.post(
        f"{base}/api/client/token", data={**grant, "device_code": start["device_code"]}, timeout=10
    )
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    unknown = requests.post(
        f"{base}/api/client/token", data={**grant, "device_code": "nope"}, timeout=10
    )
    assert unknown.json()["error"] == "invalid_grant"


@pytest.mark.django_db
def test_a_portal_only_provider_cannot_sign_in_clients(acme: Any, bob: Any) -> None:
    from accounts import services as account_services
    from accounts.models import AuthProvider
    from accounts.signin import services
    from accounts.signin.models import DeviceAuthorization

    portal_only = account_services.create_auth_provider(
        acme, name="Portal SSO", kind=AuthProvider.Kind.OIDC, context=AuthProvider.Context.PORTAL
    )
    start = services.start_device_authorization()
    refusal = services.decide_device_authorization(
        start.user_code, bob, portal_only.pk, approve=True
    )
    assert "portal only" in refusal
    assert services.redeem_device_code(start.device_code).error == "authorization_pending"
    assert DeviceAuthorization.objects.filter(approved_at__isnull=False).count() == 0
    both = account_services.create_auth_provider(acme, name="SSO", kind=AuthProvider.Kind.OIDC)
    assert services.decide_device_authorization(start.user_code, bob, both.pk, approve=True) == ""
    redeemed = services.redeem_device_code(start.device_code)
    assert redeemed.token is not None and redeemed.token.token.provider_id == both.pk


def test_starting_client_sign_ins_is_rate_limited_per_address(
    live_server: Any, settings: Any
) -> None:
    settings.FZ_SIGNIN_MAX_DEVICE_STARTS = 2
    base = live_server.url
    codes = [requests.post(f"{base}/api/client/device-code", timeout=10) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 429]
    assert codes[2].json()["error"] == "slow_down"


@pytest.mark.django_db
def test_expired_sign_ins_are_cleaned_up(acme: Any, bob: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from accounts.signin import services
    from accounts.signin.models import DeviceAuthorization

    old = services.start_device_authorization()
    fresh = services.start_device_authorization()
    DeviceAuthorization.objects.exclude(
        device_code_hash=services._sha256(fresh.device_code)
    ).update(expires_at=timezone.now() - timedelta(days=2))
    assert services.delete_expired_codes() == 1
    assert services.redeem_device_code(old.device_code).error == "invalid_grant"
    assert services.redeem_device_code(fresh.device_code).error == "authorization_pending"
