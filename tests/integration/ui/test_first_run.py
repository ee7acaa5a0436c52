"""First-run friction (issue 17): the deploy page, the gateway's public endpoint, a device
registered before any gateway, and static devices' activity."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Account
from gateways import configs, services
from gateways.models import ClientDevice, Gateway
from policies.models import Site

pytestmark = pytest.mark.django_db


def _deploy_html(client: Client, site: Site) -> str:
    response = client.post(reverse("site_token", args=[site.pk]), HTTP_HOST="portal.test")
    assert response.status_code == 302
    return client.get(response["Location"], HTTP_HOST="portal.test").content.decode()


def _blocks(html: str) -> list[str]:
    return re.findall(r"<pre class=\"copy\"><code[^>]*>(.*?)</code></pre>", html, re.S)


def test_the_deploy_page_shows_the_token_file_form_first_and_never_the_token_flag(
    alice_client: Client, world: dict[str, Any]
) -> None:
    html = _deploy_html(alice_client, world["site"])
    blocks = _blocks(html)
    # First the token goes into a 0600 file, then the agent reads it from there.
    assert "/etc/firezone/gateway-token" in blocks[0] and "chmod 0600" in blocks[0]
    assert blocks[1] == (
        "firezone-gateway --portal-url ws://portal.test --token-file /etc/firezone/gateway-token"
    )
    assert blocks[2].startswith("FIREZONE_TOKEN=&#x27;fzg_")
    # The token is never put on a command line (visible in ps).
    assert "--token fzg_" not in html and "--token " not in html


def test_the_deploy_page_says_the_endpoint_is_guessed_and_where_to_set_it(
    alice_client: Client, world: dict[str, Any]
) -> None:
    html = _deploy_html(alice_client, world["site"])
    note = html.split('data-testid="endpoint-note">', 1)[1].split("</p>", 1)[0]
    assert "guesses" in note and "NAT" in note and "127.0.0.1" in note
    assert "--endpoint" in note and "site page" in note


def _connect(site: Site, *, endpoint: str = "", remote_ip: str = "127.0.0.1") -> Gateway:
    issued = services.issue_gateway_token(site)
    return services.connect_gateway(
        secret=issued.secret,
        params=services.GatewayParams(
            external_id="gw-1",
            name="gw-1",
            public_key="G" * 43 + "=",
            version="0.1.0",
            endpoint=endpoint,
        ),
        remote_ip=remote_ip,
        channel_name="test.channel",
    )


def test_the_admin_sets_a_gateway_endpoint_and_static_configs_follow_it(
    alice_client: Client, world: dict[str, Any]
) -> None:
    site, device = world["site"], world["device"]
    gateway = _connect(site)
    before = configs.device_config(device)
    assert "Endpoint = 127.0.0.1:51820" in before.text
    # The site page shows the guess as a guess, with a link to set it.
    rows = alice_client.get(reverse("live_gateways") + f"?site={site.pk}").content.decode()
    assert "guessed from the websocket" in rows
    assert reverse("gateway_endpoint", args=[gateway.pk]) in rows

    url = reverse("gateway_endpoint", args=[gateway.pk])
    bad = alice_client.post(url, {"endpoint": "not an endpoint"})
    assert bad.status_code == 422
    assert Gateway.objects.get(pk=gateway.pk).endpoint_override == ""
    response = alice_client.post(url, {"endpoint": "vpn.example.com:51999"})
    assert response.status_code == 302
    after = configs.device_config(device)
    assert "Endpoint = vpn.example.com:51999" in after.text
    assert after.version == before.version + 1
    rows = alice_client.get(reverse("live_gateways") + f"?site={site.pk}").content.decode()
    assert "vpn.example.com:51999" in rows and "set by an admin" in rows

    # The admin's endpoint wins over a later reconnect with --endpoint, and over the guess.
    _connect(site, endpoint="198.51.100.1:51820", remote_ip="203.0.113.9")
    assert "Endpoint = vpn.example.com:51999" in configs.device_config(device).text
    # Cleared, the agent's --endpoint applies again.
    alice_client.post(url, {"endpoint": ""})
    assert "Endpoint = 198.51.100.1:51820" in configs.device_config(device).text


def test_only_admins_of_the_gateways_account_can_set_its_endpoint(
    bob_client: Client, charlie_client: Client, world: dict[str, Any]
) -> None:
    gateway = _connect(world["site"])
    url = reverse("gateway_endpoint", args=[gateway.pk])
    assert charlie_client.post(url, {"endpoint": "evil.example:1"}).status_code == 404
    assert bob_client.post(url, {"endpoint": "evil.example:1"}).status_code == 403
    assert Gateway.objects.get(pk=gateway.pk).endpoint_override == ""


def test_a_static_device_without_gateway_gets_a_deploy_first_step(
    alice_client: Client, acme: Account, world: dict[str, Any]
) -> None:
    response = alice_client.post(
        reverse("device_new"), {"actor": "bob@acme.test", "name": "Bob phone"}, follow=True
    )
    html = response.content.decode()
    assert 'data-testid="deploy-gateway-first"' in html
    assert "no gateway yet" in html
    device = ClientDevice.objects.for_account(acme).get(name="Bob phone")
    detail = alice_client.get(reverse("device_detail", args=[device.pk])).content.decode()
    assert 'data-testid="deploy-gateway-first"' in detail
    # Not offered before a gateway is there: the new config would have no peer either.
    assert 'data-testid="new-config"' not in detail
