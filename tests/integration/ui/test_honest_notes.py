"""Until later issues make them work, the UI says what is not enforced yet: DNS and Internet
resources (gateways enforce only CIDR/IP today) and policy conditions on facts that no client
reports (remote IP, country, auth provider)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounts import services as accounts
from policies import services as policies

pytestmark = pytest.mark.django_db

NOT_ENFORCED = "not yet enforced by gateways"
REPORTED_ONLY = "Applies only to clients that report it"


def test_the_resource_form_defaults_to_cidr_not_dns(alice_client: Client, world: Any) -> None:
    html = alice_client.get(reverse("resource_new")).content.decode()
    select = html.split('name="kind"', 1)[1].split("</select>", 1)[0]
    selected = [opt for opt in select.split("<option")[1:] if "selected" in opt]
    assert len(selected) == 1 and 'value="cidr"' in selected[0]
    assert 'value="dns"' not in selected[0]
    # The choice list and the help text say which kinds gateways do not enforce yet.
    assert "DNS name (not yet enforced)" in select and "Internet (not yet enforced)" in select
    assert "CIDR range (not yet enforced)" not in select
    assert NOT_ENFORCED in html


@pytest.mark.parametrize(("kind", "address"), [("dns", "wiki.corp.example"), ("internet", "")])
def test_a_dns_or_internet_resource_shows_it_is_not_enforced(
    alice_client: Client, world: Any, acme: Any, kind: str, address: str
) -> None:
    resource = policies.create_resource(
        acme, name=f"{kind} thing", kind=kind, address=address, site=world["site"]
    )
    detail = alice_client.get(reverse("resource_detail", args=[resource.pk])).content.decode()
    assert 'data-testid="not-enforced"' in detail and NOT_ENFORCED in detail
    listing = alice_client.get(reverse("resource_list")).content.decode()
    row = listing.split(f"{kind} thing</a>", 1)[1].split("</tr>", 1)[0]
    assert "not yet enforced" in row


def test_a_cidr_resource_shows_no_such_note(alice_client: Client, world: Any) -> None:
    resource = world["resource"]  # cidr 10.1.0.0/24
    detail = alice_client.get(reverse("resource_detail", args=[resource.pk])).content.decode()
    assert 'data-testid="not-enforced"' not in detail
    listing = alice_client.get(reverse("resource_list")).content.decode()
    row = listing.split("Wiki</a>", 1)[1].split("</tr>", 1)[0]
    assert "not yet enforced" not in row


def test_the_policy_form_says_which_conditions_need_a_reporting_client(
    alice_client: Client, world: Any
) -> None:
    html = alice_client.get(reverse("policy_new")).content.decode()
    note = html.split('data-testid="reported-only">', 1)[1].split("</p>", 1)[0]
    assert "Remote IP, country and auth provider" in note and REPORTED_ONLY in note
    # The note sits in the conditions fieldset, before the remote IP row.
    assert html.index('data-testid="reported-only"') < html.index('name="ip_operator"')


@pytest.mark.parametrize(
    "condition",
    [
        {"property": "remote_ip", "operator": "is_in_cidr", "values": ["10.0.0.0/8"]},
        {"property": "remote_ip_location_region", "operator": "is_in", "values": ["DE"]},
        {"property": "provider_id", "operator": "is_in", "values": ["{provider}"]},
    ],
)
def test_a_policy_with_a_reported_only_condition_shows_the_note(
    alice_client: Client, world: Any, acme: Any, condition: dict[str, Any]
) -> None:
    if condition["values"] == ["{provider}"]:
        provider = accounts.create_auth_provider(acme, name="OIDC", kind="oidc")
        condition = {**condition, "values": [str(provider.pk)]}
    group = accounts.create_group(acme, name="Ops")
    policy = policies.create_policy(
        acme, group=group, resource=world["resource"], conditions=[condition]
    )
    html = alice_client.get(reverse("policy_detail", args=[policy.pk])).content.decode()
    assert 'data-testid="reported-only"' in html and REPORTED_ONLY in html


def test_a_policy_with_only_a_time_condition_shows_no_such_note(
    alice_client: Client, world: Any, acme: Any
) -> None:
    group = accounts.create_group(acme, name="Ops")
    window = {
        "property": "current_utc_datetime",
        "operator": "is_in_day_of_week_time_ranges",
        "values": ["MTWRF/09:00-17:00/UTC"],
    }
    policy = policies.create_policy(
        acme, group=group, resource=world["resource"], conditions=[window]
    )
    html = alice_client.get(reverse("policy_detail", args=[policy.pk])).content.decode()
    assert 'data-testid="reported-only"' not in html
    plain = alice_client.get(reverse("policy_detail", args=[world["policy"].pk])).content.decode()
    assert 'data-testid="reported-only"' not in plain
