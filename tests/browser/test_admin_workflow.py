"""The whole admin workflow in Chromium, and a member's view."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.integration.ui.conftest import make_authorization

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/sign-in/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("[data-testid=sign-in]")


def settled(page: Any) -> None:
    """Wait until htmx has finished its swap. htmx wires up swapped-in content (the search box's
    ``hx-trigger``, for one) only when the swap settles, after the new heading is already there;
    typing before then fires an input event nothing listens to."""
    page.wait_for_function(
        "() => document.querySelector('.htmx-swapping, .htmx-settling') === null"
    )


def nav(page: Any, label: str) -> None:
    """Follow a sidebar link (an htmx-boosted swap) and wait for its page, settled."""
    page.click(f"nav.sidebar >> text={label}")
    page.wait_for_selector(f"main h1:text-is('{label}')")
    settled(page)


def is_search(q: str) -> Any:
    def match(response: Any) -> bool:
        request = response.request
        return f"q={q}" in response.url and request.headers.get("hx-request") == "true"

    return match


def test_admin_workflow(
    page: Any, live_server: Any, shots: Any, alice: Any, bob: Any, acme: Any
) -> None:
    from accounts.models import Actor
    from gateways.models import ClientDevice, Gateway
    from gateways.services import allocate_tunnel_address
    from policies.models import Policy, Resource

    base = live_server.url
    page.goto(f"{base}/sign-in/")
    shots(page, "sign-in")
    page.fill("#id_username", "alice@acme.test")
    page.fill("#id_password", "wrong password")
    page.click("[data-testid=sign-in]")
    page.wait_for_selector("text=Wrong email or password")
    sign_in(page, base, "acme/alice@acme.test")
    page.wait_for_selector("h1:has-text('Overview')")
    shots(page, "overview-empty")

    # A site, and the one-time gateway command.
    nav(page, "Sites")
    page.click("text=New site")
    page.fill("#id_name", "Berlin")
    shots(page, "site-new")
    page.click("[data-testid=save]")
    command = page.inner_text("#gateway-command")
    assert re.fullmatch(
        r"firezone-gateway --portal-url ws://[^ ]+ --token-file /etc/firezone/gateway-token",
        command,
    ), command
    assert re.search(r"'fzg_[0-9a-f]{32}_\S+'", page.inner_text("#gateway-token-file"))
    assert "--token-file /etc/firezone/gateway-token" in page.inner_text("#gateway-unit")
    shots(page, "site-deploy")

    # A resource: first a refused address (inline error), then a good one.
    nav(page, "Resources")
    page.click("text=New resource")
    page.fill("#id_name", "Intranet")
    page.select_option("#id_kind", "cidr")
    page.fill("#id_address", "127.0.0.0/8")
    page.select_option("#id_site", label="Berlin")
    page.check("#id_filter_tcp")
    page.fill("#id_ports_tcp", "443, 8000-8100")
    page.click("[data-testid=save]")
    error = page.wait_for_selector("p.error[data-field=address]")
    assert error.inner_text()
    shots(page, "resource-inline-error")
    assert not Resource.objects.for_account(acme).filter(name="Intranet").exists()
    page.fill("#id_address", "10.20.0.0/16")
    page.click("[data-testid=save]")
    page.wait_for_selector("h1:has-text('Intranet')")
    shots(page, "resource-detail")

    # A DNS resource with a wildcard, trying the pattern tester on the way.
    nav(page, "Resources")
    page.click("text=New resource")
    page.fill("#id_name", "Git")
    page.select_option("#id_kind", "dns")
    page.fill("#id_address", "*.git.example.com")
    page.fill("#id_probe", "git.example.com")
    page.wait_for_selector("#probe-result:has-text('matches')")
    shots(page, "resource-dns-form")
    page.select_option("#id_site", label="Berlin")
    page.click("[data-testid=save]")
    page.wait_for_selector("h1:has-text('Git')")

    # A group and a user, then the membership.
    nav(page, "Groups")
    page.click("text=New group")
    page.fill("#id_name", "Engineering")
    page.click("[data-testid=save]")
    page.wait_for_selector("h1:has-text('Engineering')")
    nav(page, "Actors")
    page.click("text=New actor")
    page.fill("#id_name", "Dana")
    page.fill("#id_email", "dana@acme.test")
    page.select_option("#id_type", "user")
    page.click("[data-testid=save]")
    page.wait_for_selector("h1:has-text('Dana')")
    nav(page, "Actors")
    # Search as you type: htmx fetches and swaps just the list. Wait on that request's response
    # and the swap, not on a fixed timeout.
    with page.expect_response(is_search("dana"), timeout=60_000) as searched:
        page.fill("input[name=q]", "dana")
    assert searched.value.ok
    page.wait_for_selector("#list >> text=1 total")  # the swap of the response just received
    assert page.is_visible("#list >> text=dana@acme.test")
    assert not page.is_visible("#list >> text=bob@acme.test")
    assert "q=dana" in page.url
    shots(page, "actors-search")
    nav(page, "Groups")
    page.click("table >> text=Engineering")
    page.fill("#id_email", "dana@acme.test")
    page.click("[data-testid=add-member]")
    page.wait_for_selector("table >> text=dana@acme.test")
    shots(page, "group-detail")

    # A policy with office hours in Berlin.
    nav(page, "Policies")
    page.click("text=New policy")
    page.fill("#id_group", "Engineering")
    page.fill("#id_resource", "Intranet")
    page.fill("#id_description", "Office hours")
    page.check("#id_time_enabled")
    page.fill("#id_time_zone", "Europe/Berlin")
    for day in "MTWRF":
        page.fill(f"#id_time_{day}", "08:00-18:00")
    page.select_option("#id_country_operator", "is_in")
    page.fill("#id_country_values", "DE, AT")
    shots(page, "policy-form")
    page.click("[data-testid=save]")
    page.wait_for_selector(".condition:has-text('Mon, Tue, Wed, Thu, Fri 08:00-18:00')")
    shots(page, "policy-detail")
    policy = Policy.objects.for_account(acme).get(description="Office hours")
    assert {c["property"] for c in policy.conditions} == {
        "current_utc_datetime",
        "remote_ip_location_region",
    }
    nav(page, "Policies")
    shots(page, "policies")

    # A static device for Dana, its config and QR code.
    nav(page, "Devices")
    page.click("text=Register a device")
    page.fill("#id_actor", "dana@acme.test")
    page.fill("#id_name", "Dana laptop")
    page.click("[data-testid=save]")
    config_text = page.inner_text("#device-config-text")
    assert "PrivateKey = " in config_text and "<your private key>" not in config_text
    assert page.query_selector(".qr svg") is not None
    shots(page, "device-registered")
    page.click("text=Go to the device")
    page.wait_for_selector("[data-testid=config-version]")
    shots(page, "device-detail")
    with page.expect_download() as download_info:
        page.click("[data-testid=download-config]")
    download = download_info.value
    text = Path(download.path()).read_text()
    device = ClientDevice.objects.for_account(acme).get(name="Dana laptop")
    assert download.suggested_filename == "fz-Dana-laptop.conf"
    assert f"# config version {device.config_version}" in text
    assert f"Address = {device.ipv4}/32" in text

    # Live status: a gateway comes online and Dana gets an authorization; the overview shows
    # both without a reload (htmx polls the fragments every few seconds).
    nav(page, "Overview")
    page.wait_for_selector("#gateways-live >> text=No gateways have connected yet")
    dana = Actor.objects.for_account(acme).get(email="dana@acme.test")
    resource = Resource.objects.for_account(acme).get(name="Intranet")
    addresses = allocate_tunnel_address(acme)
    Gateway.objects.create(
        account=acme,
        site=resource.site,
        external_id="gw-berlin-1",
        name="gw-berlin-1",
        public_key="B" * 43 + "=",
        address=addresses.slot,
        ipv4=addresses.ipv4,
        ipv6=addresses.ipv6,
        online=True,
    )
    authorization = make_authorization(dana, resource, policy, device)
    page.wait_for_selector("#gateways-live [data-status=online]", timeout=12_000)
    assert "1 of 1 gateway online" in page.inner_text("[data-testid=gateway-summary]")
    page.wait_for_selector(f"[data-authorization='{authorization.pk}']", timeout=12_000)
    assert page.url.rstrip("/") == base  # no navigation happened
    shots(page, "overview-live")

    # The audit log, filtered by actor.
    nav(page, "Audit log")
    page.fill("#id_actor", "dana")
    page.click("[data-testid=filter]")
    page.wait_for_selector(f"[data-authorization='{authorization.pk}']")
    shots(page, "audit-log")

    # Settings: an API token for a new service account, shown once.
    nav(page, "Settings")
    page.fill("#id_new_service_account", "Terraform")
    page.fill("#id_name", "terraform")
    page.click("[data-testid=create-token]")
    assert page.inner_text("#api-token").startswith("fza_")
    shots(page, "settings-token")

    nav(page, "Sites")
    shots(page, "sites")
    page.click("table >> text=Berlin")
    page.wait_for_selector("#gateways-live [data-status=online]")
    shots(page, "site-detail")

    page.click("[data-testid=sign-out]")
    page.wait_for_selector("[data-testid=sign-in]")
    page.goto(f"{base}/resources/")
    assert "/sign-in/" in page.url


def test_member_sees_only_his_devices(
    page: Any, live_server: Any, shots: Any, alice: Any, bob: Any
) -> None:
    from gateways.services import register_static_device

    register_static_device(bob, name="Bob laptop")
    register_static_device(alice, name="Alice desktop")
    base = live_server.url
    sign_in(page, base, "bob@acme.test")
    page.wait_for_selector("h1:has-text('My devices')")
    assert page.is_visible("text=Bob laptop")
    assert not page.is_visible("text=Alice desktop")
    assert not page.is_visible("nav.sidebar >> text=Resources")
    shots(page, "member-devices")
    page.click("text=Register a device")
    assert page.query_selector("#id_actor") is None  # members register for themselves only
    page.fill("#id_name", "Bob phone")
    page.click("[data-testid=save]")
    page.wait_for_selector("#device-config-text")
    shots(page, "member-device-registered")
    response = page.goto(f"{base}/resources/")
    assert response is not None and response.status == 403
    shots(page, "member-forbidden")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(f"{base}/devices/")
    page.wait_for_selector("text=Bob phone")
    shots(page, "member-devices-phone")
