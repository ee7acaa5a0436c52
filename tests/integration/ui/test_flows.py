"""The admin workflow through the test client: each form saves through its service."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.conftest import PASSWORD
from tests.integration.ui.conftest import make_authorization

pytestmark = pytest.mark.django_db


def test_it_signs_in_with_email_or_slug_and_email(client: Client, alice: Any) -> None:
    response = client.post(
        reverse("sign_in"), {"username": "alice@acme.test", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert client.get(reverse("overview")).status_code == 200
    client.post(reverse("sign_out"))
    assert client.get(reverse("overview")).status_code == 302
    response = client.post(
        reverse("sign_in"), {"username": "acme/alice@acme.test", "password": PASSWORD}
    )
    assert response.status_code == 302


def test_it_refuses_a_wrong_password_inline(client: Client, alice: Any) -> None:
    response = client.post(
        reverse("sign_in"), {"username": "alice@acme.test", "password": "wrong password!"}
    )
    assert response.status_code == 200
    assert b"Wrong email or password" in response.content
    assert client.get(reverse("overview")).status_code == 302


def test_sign_out_needs_post(alice_client: Client) -> None:
    assert alice_client.get(reverse("sign_out")).status_code == 405
    assert alice_client.get(reverse("overview")).status_code == 200


def test_creating_a_site_shows_the_token_once_with_the_command(
    alice_client: Client, acme: Any
) -> None:
    from accounts import services as accounts
    from accounts.models import Token

    response = alice_client.post(
        reverse("site_new"), {"name": "Berlin"}, HTTP_HOST="portal.test", follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    command = html.split('id="gateway-command">', 1)[1].split("</code>", 1)[0]
    assert command == (
        "firezone-gateway --portal-url ws://portal.test --token-file /etc/firezone/gateway-token"
    )
    assert response["Cache-Control"] == "no-store"
    match = re.search(r"'(fzg_[^'\s]+)'", html.split('id="gateway-token-file">', 1)[1])
    assert match is not None
    secret = match.group(1)
    assert "ExecStart=/usr/local/bin/firezone-gateway --portal-url ws://portal.test" in html
    token = accounts.use_token(secret, kind=Token.Kind.GATEWAY)
    assert token is not None and token.gateway_binding.site.name == "Berlin"
    # The site page lists the token but never shows its secret again.
    page = alice_client.get(
        reverse("site_detail", args=[token.gateway_binding.site_id])
    ).content.decode()
    assert "Berlin gateways" in page
    assert secret not in page


def test_a_new_gateway_token_can_be_issued_and_revoked(alice_client: Client, world: Any) -> None:
    from accounts.models import Token

    site = world["site"]
    response = alice_client.post(reverse("site_token", args=[site.pk]), follow=True)
    assert b"FIREZONE_TOKEN=&#x27;fzg_" in response.content
    assert (
        Token.objects.for_account(site.account_id).filter(gateway_binding__site=site).count() == 2
    )
    old = world["gateway_token"]
    alice_client.post(reverse("site_token_revoke", args=[site.pk, old.pk]))
    old.refresh_from_db()
    assert old.revoked_at is not None


def test_site_page_shows_gateway_status_live(alice_client: Client, world: Any) -> None:
    from gateways import services

    site = world["site"]
    partial = reverse("live_gateways") + f"?site={site.pk}"
    assert b"No gateways have connected yet" in alice_client.get(partial).content
    services.ensure_key_secret(site.account_id)
    gateway = _connect_gateway(site)
    html = alice_client.get(partial, HTTP_HX_REQUEST="true").content.decode()
    assert f'data-gateway="{gateway.pk}"' in html
    assert 'data-status="online"' in html
    assert "<strong>1</strong> of 1 gateway online" in html
    assert 'hx-trigger="every 5s"' in html


def _connect_gateway(site: Any) -> Any:
    from gateways.models import Gateway
    from gateways.services import allocate_tunnel_address

    addresses = allocate_tunnel_address(site.account_id)
    return Gateway.objects.create(
        account_id=site.account_id,
        site=site,
        external_id="gw-1",
        name="gw-1",
        public_key="A" * 43 + "=",
        address=addresses.slot,
        ipv4=addresses.ipv4,
        ipv6=addresses.ipv6,
        online=True,
        last_seen_at=timezone.now(),
    )


def test_resource_create_edit_delete(alice_client: Client, world: Any, acme: Any) -> None:
    from policies.models import Resource

    response = alice_client.post(
        reverse("resource_new"),
        {
            "name": "Git",
            "kind": "dns",
            "address": "*.Git.Example.com",
            "site": world["site"].pk,
            "ip_stack": "ipv4_only",
            "filter_tcp": "on",
            "ports_tcp": "22, 443, 8000-8100",
            "filter_icmp": "on",
        },
    )
    assert response.status_code == 302
    resource = Resource.objects.for_account(acme).get(name="Git")
    assert resource.address == "*.git.example.com"
    assert sorted(resource.filters, key=lambda f: f["protocol"]) == [
        {"protocol": "icmp", "ports": []},
        {"protocol": "tcp", "ports": ["22", "443", "8000-8100"]},
    ]
    edit = alice_client.get(reverse("resource_edit", args=[resource.pk])).content.decode()
    assert 'value="22, 443, 8000-8100"' in edit
    response = alice_client.post(
        reverse("resource_edit", args=[resource.pk]),
        {
            "name": "Git",
            "kind": "dns",
            "address": "git.example.com",
            "site": world["site"].pk,
            "ip_stack": "dual",
        },
    )
    assert response.status_code == 302
    resource.refresh_from_db()
    assert (resource.address, resource.filters, resource.ip_stack) == (
        "git.example.com",
        [],
        "dual",
    )
    alice_client.post(reverse("resource_delete", args=[resource.pk]))
    assert not Resource.objects.for_account(acme).filter(pk=resource.pk).exists()


def test_dns_probe_tells_whether_a_name_matches(alice_client: Client) -> None:
    url = reverse("dns_match")
    hit = alice_client.get(url, {"address": "*.example.com", "probe": "example.com"})
    assert b"example.com matches *.example.com" in hit.content
    miss = alice_client.get(url, {"address": "*.example.com", "probe": "a.b.example.com"})
    assert b"does not match" in miss.content


def test_group_membership_add_remove_and_set(
    alice_client: Client, world: Any, alice: Any, bob: Any
) -> None:
    from accounts.models import Membership

    group = world["group"]

    def members() -> set[str]:
        return set(
            Membership.objects.for_account(group.account_id)
            .filter(group=group)
            .values_list("actor__email", flat=True)
        )

    alice_client.post(reverse("group_member_add", args=[group.pk]), {"email": "Alice@acme.test"})
    assert members() == {"alice@acme.test", "bob@acme.test"}
    alice_client.post(reverse("group_member_remove", args=[group.pk, bob.pk]))
    assert members() == {"alice@acme.test"}
    alice_client.post(
        reverse("group_members_set", args=[group.pk]), {"emails": "bob@acme.test, bob@acme.test"}
    )
    assert members() == {"bob@acme.test"}
    alice_client.post(reverse("group_edit", args=[group.pk]), {"name": "Eng"})
    group.refresh_from_db()
    assert group.name == "Eng"


def test_actor_create_disable_enable_delete(alice_client: Client, acme: Any) -> None:
    from accounts.models import Actor

    response = alice_client.post(
        reverse("actor_new"),
        {"name": "Dana", "email": "Dana@acme.test", "type": "user", "password": "p" * 12},
    )
    assert response.status_code == 302
    dana = Actor.objects.for_account(acme).get(email="dana@acme.test")
    assert dana.user is not None
    everyone = alice_client.get(reverse("actor_detail", args=[dana.pk])).content
    assert b"Everyone" in everyone
    alice_client.post(reverse("actor_disable", args=[dana.pk]))
    dana.refresh_from_db()
    assert dana.disabled_at is not None
    alice_client.post(reverse("actor_enable", args=[dana.pk]))
    dana.refresh_from_db()
    assert dana.disabled_at is None
    alice_client.post(
        reverse("actor_edit", args=[dana.pk]),
        {"name": "Dana B", "email": "dana@acme.test", "type": "admin"},
    )
    dana.refresh_from_db()
    assert (dana.name, dana.type) == ("Dana B", "admin")
    alice_client.post(reverse("actor_delete", args=[dana.pk]))
    assert not Actor.objects.for_account(acme).filter(pk=dana.pk).exists()


def test_policy_conditions_round_trip(alice_client: Client, world: Any, acme: Any) -> None:
    from policies import evaluation
    from policies.models import Policy

    response = alice_client.post(
        reverse("policy_new"),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "description": "office hours",
            "ip_operator": "is_not_in_cidr",
            "ip_values": "203.0.113.0/24, 2001:db8::/32",
            "country_operator": "is_in",
            "country_values": "de, fr",
            "time_enabled": "on",
            "time_zone": "Europe/Berlin",
            **{f"time_{d}": "09:00-17:00" for d in "MTWRF"},
            "time_S": "all day",
            "verified": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    policy = Policy.objects.for_account(acme).get(description="office hours")
    assert policy.conditions == evaluation.conditions_to_json(
        evaluation.parse_conditions(
            [
                {
                    "property": "remote_ip",
                    "operator": "is_not_in_cidr",
                    "values": ["203.0.113.0/24", "2001:db8::/32"],
                },
                {
                    "property": "remote_ip_location_region",
                    "operator": "is_in",
                    "values": ["DE", "FR"],
                },
                {
                    "property": "current_utc_datetime",
                    "operator": "is_in_day_of_week_time_ranges",
                    "values": ["MTWRF/09:00-17:00/Europe/Berlin", "S/true/Europe/Berlin"],
                },
                {"property": "client_verified", "operator": "is", "values": ["true"]},
            ]
        )
    )
    detail = alice_client.get(reverse("policy_detail", args=[policy.pk])).content.decode()
    assert "Mon, Tue, Wed, Thu, Fri 09:00-17:00 (Europe/Berlin)" in detail
    # The edit form shows what is stored; saving it unchanged keeps the conditions.
    edit = alice_client.get(reverse("policy_edit", args=[policy.pk])).content.decode()
    assert 'value="Europe/Berlin"' in edit and 'value="all day"' in edit
    stored = list(policy.conditions)
    response = alice_client.post(
        reverse("policy_edit", args=[policy.pk]),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "description": "office hours",
            "ip_operator": "is_not_in_cidr",
            "ip_values": "203.0.113.0/24, 2001:db8::/32",
            "country_operator": "is_in",
            "country_values": "DE, FR",
            "time_enabled": "on",
            "time_zone": "Europe/Berlin",
            **{f"time_{d}": "09:00-17:00" for d in "MTWRF"},
            "time_S": "all day",
            "verified": "on",
        },
    )
    assert response.status_code == 302
    policy.refresh_from_db()
    assert policy.conditions == stored
    # Clearing every condition leaves none.
    alice_client.post(
        reverse("policy_edit", args=[policy.pk]),
        {"group": "Everyone", "resource": "Wiki", "description": "x"},
    )
    policy.refresh_from_db()
    assert policy.conditions == []


def test_policy_disable_enable_delete_revoke_access(
    alice_client: Client, world: Any, acme: Any
) -> None:
    from policies.models import Policy

    policy, authorization = world["policy"], world["authorization"]
    alice_client.post(reverse("policy_disable", args=[policy.pk]))
    policy.refresh_from_db()
    authorization.refresh_from_db()
    assert policy.disabled_at is not None
    assert authorization.revoked_at is not None
    alice_client.post(reverse("policy_enable", args=[policy.pk]))
    policy.refresh_from_db()
    assert policy.disabled_at is None
    alice_client.post(reverse("policy_delete", args=[policy.pk]))
    assert not Policy.objects.for_account(acme).filter(pk=policy.pk).exists()


def test_admin_registers_a_device_for_a_user(alice_client: Client, world: Any, bob: Any) -> None:
    from gateways.models import ClientDevice

    response = alice_client.post(
        reverse("device_new"), {"actor": "bob@acme.test", "name": "Bob phone"}, follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "PrivateKey = " in html and "&lt;your private key&gt;" not in html
    assert response["Cache-Control"] == "no-store"
    assert "<svg" in html
    device = ClientDevice.objects.for_account(bob.account_id).get(actor=bob, name="Bob phone")
    download = alice_client.get(reverse("device_config", args=[device.pk]))
    assert download["Content-Disposition"] == 'attachment; filename="fz-Bob-phone.conf"'
    text = download.content.decode()
    assert f"# config version {device.config_version}" in text
    assert "PrivateKey = <your private key>" in text
    assert f"Address = {device.ipv4}/32" in text
    detail = alice_client.get(reverse("device_detail", args=[device.pk])).content.decode()
    assert f'data-testid="config-version">{device.config_version}<' in detail
    qr = alice_client.get(reverse("device_qr", args=[device.pk]))
    assert qr["Content-Type"] == "image/svg+xml" and b"<svg" in qr.content


def test_member_registers_a_device_for_himself_only(
    bob_client: Client, world: Any, bob: Any, alice: Any
) -> None:
    from gateways.models import ClientDevice

    response = bob_client.post(
        reverse("device_new"), {"actor": "alice@acme.test", "name": "Tablet"}, follow=True
    )
    assert response.status_code == 200
    device = ClientDevice.objects.for_account(bob.account_id).get(name="Tablet")
    assert device.actor_id == bob.pk


def test_audit_log_filters_by_actor_resource_and_time(
    alice_client: Client, world: Any, alice: Any
) -> None:
    from gateways.models import Authorization

    old = make_authorization(alice, world["resource"], world["policy"])
    Authorization.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    url = reverse("authorization_list")

    def rows(**params: str) -> set[str]:
        html = alice_client.get(url, params).content.decode()
        return {part.split('"', 1)[0] for part in html.split('data-authorization="')[1:]}

    new = str(world["authorization"].pk)
    assert rows() == {new, str(old.pk)}
    assert rows(actor="bob@") == {new}
    assert rows(resource="wiki") == {new, str(old.pk)}
    assert rows(resource="nothing") == set()
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert rows(since=since) == {new}
    assert rows(until=since) == {str(old.pk)}
    assert rows(status="revoked") == set()
    assert rows(q="bob wiki") == {new}
    assert rows(q="10.1.0") == {new, str(old.pk)}
    expired = make_authorization(alice, world["resource"], world["policy"])
    revoked = make_authorization(alice, world["resource"], world["policy"])
    Authorization.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    Authorization.objects.filter(pk=revoked.pk).update(revoked_at=timezone.now())
    assert rows(status="active") == {new, str(old.pk)}
    assert rows(status="expired") == {str(expired.pk)}
    assert rows(status="revoked") == {str(revoked.pk)}
    assert rows(status="active", q="bob") == {new}


def test_actor_edit_sets_a_new_password(alice_client: Client, world: Any, bob: Any) -> None:
    response = alice_client.post(
        reverse("actor_edit", args=[bob.pk]),
        {
            "name": "Bob",
            "email": "bob@acme.test",
            "type": "user",
            "password": "a brand new password",
        },
    )
    assert response.status_code == 302
    fresh = Client()
    assert fresh.login(username="bob@acme.test", password="a brand new password")
    assert not Client().login(username="bob@acme.test", password=PASSWORD)


def test_policy_with_auth_provider_condition(alice_client: Client, world: Any, acme: Any) -> None:
    from accounts import services as accounts
    from policies.models import Policy

    provider = accounts.create_auth_provider(acme, name="Okta", kind="okta")
    form = alice_client.get(reverse("policy_new")).content.decode()
    assert f'value="{provider.pk}"' in form
    response = alice_client.post(
        reverse("policy_new"),
        {
            "group": "Everyone",
            "resource": "Wiki",
            "provider_operator": "is_not_in",
            "provider_values": [str(provider.pk)],
        },
    )
    assert response.status_code == 302
    policy = Policy.objects.for_account(acme).get(group__name="Everyone")
    assert policy.conditions == [
        {"property": "provider_id", "operator": "is_not_in", "values": [str(provider.pk)]}
    ]
    detail = alice_client.get(reverse("policy_detail", args=[policy.pk])).content.decode()
    assert "Auth provider is not in Okta" in detail


def test_overview_polls_new_authorizations(alice_client: Client, world: Any, alice: Any) -> None:
    partial = reverse("live_authorizations")
    first = alice_client.get(partial, HTTP_HX_REQUEST="true").content.decode()
    newer = make_authorization(alice, world["resource"], world["policy"])
    assert f'data-authorization="{newer.pk}"' not in first
    second = alice_client.get(partial, HTTP_HX_REQUEST="true").content.decode()
    assert f'data-authorization="{newer.pk}"' in second


def test_settings_rename_and_api_token_shown_once_then_revoked(
    alice_client: Client, acme: Any
) -> None:
    from accounts import services as accounts
    from accounts.models import Actor, Token

    alice_client.post(reverse("settings"), {"form": "account", "name": "Acme Corp"})
    acme.refresh_from_db()
    assert acme.name == "Acme Corp"
    response = alice_client.post(
        reverse("settings"),
        {
            "form": "token",
            "new_service_account": "Deployer",
            "name": "deploy",
            "expires_in_days": "30",
        },
        follow=True,
    )
    html = response.content.decode()
    secret = html.split('id="api-token">', 1)[1].split("<", 1)[0]
    assert response["Cache-Control"] == "no-store"
    token = accounts.use_token(secret, kind=Token.Kind.API)
    assert token is not None and token.actor is not None
    assert token.actor.type == Actor.Type.API_CLIENT and token.actor.name == "Deployer"
    # The blank form shown with the secret already offers the service account just created.
    assert f'<option value="{token.actor.pk}">Deployer</option>' in html
    assert secret not in alice_client.get(reverse("settings")).content.decode()
    alice_client.post(reverse("token_revoke", args=[token.pk]))
    assert accounts.use_token(secret, kind=Token.Kind.API) is None


def test_lists_search_and_paginate(alice_client: Client, world: Any, acme: Any) -> None:
    from accounts import services as accounts

    for i in range(55):
        accounts.create_group(acme, name=f"team-{i:02d}")
    page1 = alice_client.get(reverse("group_list")).content.decode()
    assert "Page 1 of 2" in page1 and "team-47" in page1 and "team-48" not in page1
    page2 = alice_client.get(reverse("group_list"), {"page": 2}).content.decode()
    assert "team-54" in page2 and "team-00" not in page2
    found = alice_client.get(reverse("group_list"), {"q": "team-0"}).content.decode()
    assert "team-09" in found and "team-10" not in found and "10 total" in found


def test_device_detail_lists_the_sites_its_config_reaches(alice_client: Client, world: Any) -> None:
    def reach(device: Any) -> str:
        html = alice_client.get(reverse("device_detail", args=[device.pk])).content.decode()
        return html.split("<h2>Gateways</h2>", 1)[1].split("</section>", 1)[0]

    # bob is in Engineering, whose policy reaches Wiki at HQ; alice is granted nothing.
    assert "<td>HQ</td>" in reach(world["device"])
    assert "No resources reachable yet" not in reach(world["device"])
    assert "No resources reachable yet" in reach(world["alice_device"])
    assert "<td>HQ</td>" not in reach(world["alice_device"])
