"""Forms that create a one-time secret use post-redirect-get: the POST redirects, the redirected
page shows the secret once, and a reload neither creates a second object nor shows it again."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services as accounts
from accounts.models import Account, Actor, Token
from gateways.models import ClientDevice
from policies.models import Site
from tests.integration.ui.conftest import signed_in

pytestmark = pytest.mark.django_db


def _command_secret(html: str) -> str:
    """The token from the deploy page's token-file step (printf '%s\\n' 'fzg_...')."""
    block = html.split('id="gateway-token-file">', 1)[1].split("</code>", 1)[0]
    match = re.search(r"'(fzg_[^'\s]+)'", block)
    assert match is not None, block
    return match.group(1)


def test_creating_a_site_redirects_and_a_reload_creates_nothing_and_shows_no_secret(
    alice_client: Client, acme: Account
) -> None:
    response = alice_client.post(reverse("site_new"), {"name": "Berlin"})
    site = Site.objects.for_account(acme).get(name="Berlin")
    deploy = reverse("site_deploy", args=[site.pk])
    assert response.status_code == 302 and response["Location"] == deploy
    shown = alice_client.get(deploy)
    assert shown.status_code == 200 and shown["Cache-Control"] == "no-store"
    secret = _command_secret(shown.content.decode())
    token = accounts.use_token(secret, kind=Token.Kind.GATEWAY)
    assert token is not None and token.gateway_binding.site_id == site.pk
    # The reload: back to the site page, no secret, still one site and one token.
    again = alice_client.get(deploy, follow=True)
    html = again.content.decode()
    assert again.redirect_chain == [(reverse("site_detail", args=[site.pk]), 302)]
    assert secret not in html and "shown only once" in html
    assert Site.objects.for_account(acme).filter(name="Berlin").count() == 1
    assert Token.objects.for_account(acme).filter(gateway_binding__site=site).count() == 1


def test_issuing_a_gateway_token_redirects_and_shows_it_once(
    alice_client: Client, world: Any
) -> None:
    site = world["site"]
    response = alice_client.post(reverse("site_token", args=[site.pk]))
    deploy = reverse("site_deploy", args=[site.pk])
    assert response.status_code == 302 and response["Location"] == deploy
    secret = _command_secret(alice_client.get(deploy).content.decode())
    assert accounts.use_token(secret, kind=Token.Kind.GATEWAY) is not None
    assert secret not in alice_client.get(deploy, follow=True).content.decode()
    assert (
        Token.objects.for_account(site.account_id).filter(gateway_binding__site=site).count() == 2
    )


def test_the_secret_is_shown_only_to_the_session_that_created_it(
    alice_client: Client, alice: Actor, charlie: Actor, bob: Actor, acme: Account
) -> None:
    alice_client.post(reverse("site_new"), {"name": "Berlin"})
    site = Site.objects.for_account(acme).get(name="Berlin")
    deploy = reverse("site_deploy", args=[site.pk])
    # Another account's admin: not found. A member: refused. Alice in another browser: the
    # secret is not in that session.
    assert signed_in(charlie).get(deploy).status_code == 404
    assert signed_in(bob).get(deploy).status_code == 403
    other_browser = signed_in(alice).get(deploy)
    assert other_browser.status_code == 302
    # The creating session still gets it, once.
    assert "fzg_" in alice_client.get(deploy).content.decode()


def test_registering_a_device_redirects_and_shows_the_private_key_once(
    alice_client: Client, world: Any, bob: Actor, acme: Account
) -> None:
    response = alice_client.post(
        reverse("device_new"), {"actor": "bob@acme.test", "name": "Bob phone"}
    )
    device = ClientDevice.objects.for_account(acme).get(actor=bob, name="Bob phone")
    registered = reverse("device_registered", args=[device.pk])
    assert response.status_code == 302 and response["Location"] == registered
    shown = alice_client.get(registered)
    html = shown.content.decode()
    assert shown["Cache-Control"] == "no-store"
    private_line = next(line for line in html.splitlines() if "PrivateKey = " in line)
    private_key = private_line.split("PrivateKey = ", 1)[1].split("\n", 1)[0].strip()
    assert len(private_key) == 44 and "&lt;your private key&gt;" not in html
    again = alice_client.get(registered, follow=True)
    assert again.redirect_chain == [(reverse("device_detail", args=[device.pk]), 302)]
    assert private_key not in again.content.decode()
    assert ClientDevice.objects.for_account(acme).filter(actor=bob).count() == 2  # laptop, phone


def test_a_member_sees_their_own_new_device_once_and_no_one_else_does(
    bob_client: Client, bob: Actor, charlie: Actor, acme: Account
) -> None:
    response = bob_client.post(reverse("device_new"), {"name": "Phone"})
    device = ClientDevice.objects.for_account(acme).get(actor=bob, name="Phone")
    registered = reverse("device_registered", args=[device.pk])
    assert response["Location"] == registered
    assert signed_in(charlie).get(registered).status_code == 404
    assert "PrivateKey = " in bob_client.get(registered).content.decode()
    assert bob_client.get(registered).status_code == 302


def test_issuing_an_api_token_redirects_and_shows_it_once(
    alice_client: Client, acme: Account
) -> None:
    response = alice_client.post(
        reverse("settings"), {"form": "token", "new_service_account": "Deployer", "name": "d"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("settings")
    shown = alice_client.get(reverse("settings"))
    assert shown["Cache-Control"] == "no-store"
    html = shown.content.decode()
    secret = html.split('id="api-token">', 1)[1].split("<", 1)[0]
    assert accounts.use_token(secret, kind=Token.Kind.API) is not None
    assert "For Deployer" in html
    reload = alice_client.get(reverse("settings")).content.decode()
    assert secret not in reload and 'data-testid="issued-token"' not in reload
    assert Token.objects.for_account(acme).filter(kind=Token.Kind.API).count() == 1
    assert Actor.objects.for_account(acme).filter(name="Deployer").count() == 1


def test_a_secret_never_fetched_is_not_shown_later(alice_client: Client, acme: Account) -> None:
    from firezone_site import once

    alice_client.post(reverse("site_new"), {"name": "Berlin"})
    site = Site.objects.for_account(acme).get(name="Berlin")
    # The tab was closed; the same browser opens the deploy page after the stash's lifetime.
    session = alice_client.session
    pending = session[once.SESSION_KEY]
    (entry,) = pending.values()
    entry["at"] -= once.MAX_AGE + 1
    session[once.SESSION_KEY] = pending
    session.save()
    response = alice_client.get(reverse("site_deploy", args=[site.pk]))
    assert response.status_code == 302
    assert once.SESSION_KEY not in alice_client.session
