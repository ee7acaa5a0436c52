"""Writes through the REST API fire the same revocation as the UI: the connected gateway holding
the flow is told ``reject_access`` after the API's transaction commits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import services as account_services
from accounts.models import Account, Actor, Token
from agents import protocol
from policies.models import Site

from .conftest import db, gateway_with_flow, is_revoked

pytestmark = pytest.mark.django_db(transaction=True)


def _api_client(account: Account) -> APIClient:
    robot = account_services.create_actor(
        account, email="", name="Terraform", type=Actor.Type.API_CLIENT
    )
    secret = account_services.create_token(
        account, kind=Token.Kind.API, actor=robot, expires_at=timezone.now() + timedelta(days=1)
    ).secret
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    return client


async def test_deleting_a_policy_through_the_api_pushes_reject_access(
    acme: Account, globex: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    url = f"/api/v1/policies/{flow.policy.pk}"

    # Another account's token cannot: 404, nothing revoked, nothing pushed.
    charlie = await db(_api_client)(globex)
    refused = await db(charlie.delete)(url)
    assert refused.status_code == 404
    assert await flow.gateway.nothing(0.5)
    assert not await is_revoked(flow.auth)

    alice = await db(_api_client)(acme)
    response = await db(alice.delete)(url)
    assert response.status_code == 204
    message = await flow.gateway.receive_type("reject_access", timeout=10)
    assert message["authorization_ids"] == [str(flow.auth.pk)]
    assert await is_revoked(flow.auth)
    assert (await db(alice.get)(url)).status_code == 404
    await flow.gateway.disconnect()


async def test_removing_a_member_through_the_api_pushes_reject_access(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    alice = await db(_api_client)(acme)
    listing = await db(alice.get)(f"/api/v1/memberships?group={flow.group.pk}&actor={bob.pk}")
    (membership,) = listing.json()["results"]
    response = await db(alice.delete)(f"/api/v1/memberships/{membership['id']}")
    assert response.status_code == 204
    message = await flow.gateway.receive_type("reject_access", timeout=10)
    assert message["authorization_ids"] == [str(flow.auth.pk)]
    await flow.gateway.disconnect()


async def test_deleting_a_connected_gateway_through_the_api_closes_it_and_ends_its_flows(
    acme: Account, globex: Account, site: Site, bob: Actor, token: str
) -> None:
    flow = await gateway_with_flow(acme, site, bob, token)
    url = f"/api/v1/gateways/{flow.init['gateway_id']}"
    charlie = await db(_api_client)(globex)
    assert (await db(charlie.delete)(url)).status_code == 404
    assert await flow.gateway.nothing(0.5)

    alice = await db(_api_client)(acme)
    assert (await db(alice.delete)(url)).status_code == 204
    code, _ = await flow.gateway.close_code(timeout=10)
    assert code == protocol.CloseCode.GATEWAY_REMOVED
    assert await is_revoked(flow.auth)
    assert (await db(alice.get)(url)).status_code == 404
