"""The fakes are right: the vendors' own SDKs, pointed at them, read them as they read the real
APIs (pagination, models, errors)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .fakes import ACCESS_TOKEN, FakeState


def test_google_api_python_client_reads_the_google_fake(fake: tuple[FakeState, str]) -> None:
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build
    from googleapiclient.errors import HttpError

    state, base = fake
    service = build(
        "admin",
        "directory_v1",
        static_discovery=True,
        credentials=Credentials(token=ACCESS_TOKEN),
        client_options={"api_endpoint": f"{base}/google/"},
    )
    users: list[dict[str, Any]] = []
    request = service.users().list(customer="my_customer", maxResults=2)
    pages = 0
    while request is not None:
        response = request.execute()
        users += response.get("users", [])
        pages += 1
        request = service.users().list_next(request, response)
    assert pages == 3
    assert [u["id"] for u in users] == ["u1", "u2", "u3", "u4", "u5"]
    assert users[3]["suspended"] is True and users[0]["name"]["fullName"] == "Ann Archer"
    groups = service.groups().list(customer="my_customer").execute()["groups"]
    assert [g["name"] for g in groups] == ["Engineering", "Sales", "Everyone at Acme"]
    members: list[str] = []
    request = service.members().list(groupKey="g1", maxResults=3, includeDerivedMembership=True)
    while request is not None:
        response = request.execute()
        members += [m["id"] for m in response["members"] if m["type"] == "USER"]
        request = service.members().list_next(request, response)
    assert members == ["u1", "u2", "u3", "u5"]
    units = service.orgunits().list(customerId="my_customer", type="all").execute()
    assert [u["orgUnitPath"] for u in units["organizationUnits"]] == ["/Eng", "/Sales"]
    state.fault("/google/admin/directory/v1/users", 403)
    with pytest.raises(HttpError) as error:
        service.users().list(customer="my_customer").execute()
    assert error.value.resp.status == 403
    assert error.value.error_details[0]["reason"] == "forbidden"


def test_the_okta_sdk_reads_the_okta_fake(
    fake: tuple[FakeState, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from okta.client import Client
    from okta.pagination import PaginationHelper

    state, base = fake
    monkeypatch.setenv("OKTA_TESTING_TESTINGDISABLEHTTPSCHECK", "true")

    async def run() -> None:
        client = Client(
            {
                "orgUrl": f"{base}/okta",
                "token": ACCESS_TOKEN,
                "rateLimit": {"maxRetries": 0},
            }
        )
        users, resp, err = await client.list_users(limit=2)
        assert err is None, err
        ids = [u.id for u in users]
        pages = 1
        while cursor := PaginationHelper.extract_next_cursor(resp.headers):
            more, resp, err = await client.list_users(limit=2, after=cursor)
            assert err is None, err
            ids += [u.id for u in more]
            pages += 1
        assert pages == 3
        assert ids == ["u1", "u2", "u3", "u4", "u5"]
        assert users[0].profile.email == "ann@acme.test"
        groups, resp, err = await client.list_groups(limit=200)
        assert err is None, err
        # GroupProfile is an anyOf (Okta or AD group profile): the parsed one is actual_instance.
        names = [g.profile.actual_instance.name for g in groups]
        assert names == ["Engineering", "Sales", "Everyone at Acme"]
        members, resp, err = await client.list_group_users("g2")
        assert err is None, err
        assert [m.id for m in members] == ["u3"]
        state.fault("/okta/api/v1/users", 403)
        _, _, err = await client.list_users()
        assert (err is not None and "403" in str(err)) or "E0000006" in str(err)

    asyncio.run(run())


def test_the_msgraph_sdk_reads_the_graph_fake(fake: tuple[FakeState, str]) -> None:
    from kiota_abstractions.authentication import AccessTokenProvider, AllowedHostsValidator
    from kiota_abstractions.authentication.base_bearer_token_authentication_provider import (
        BaseBearerTokenAuthenticationProvider,
    )
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.users.users_request_builder import UsersRequestBuilder

    state, base = fake

    class Static(AccessTokenProvider):
        async def get_authorization_token(self, uri: str, additional: Any = None) -> str:
            return ACCESS_TOKEN

        def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
            return AllowedHostsValidator(["127.0.0.1"])

    async def run() -> None:
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(Static()))
        adapter.base_url = f"{base}/graph/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        config = UsersRequestBuilder.UsersRequestBuilderGetRequestConfiguration(
            query_parameters=UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(
                select=["id", "displayName", "mail", "accountEnabled"], top=2
            )
        )
        page = await client.users.get(request_configuration=config)
        assert page is not None
        users = list(page.value or [])
        while page is not None and page.odata_next_link:
            page = await client.users.with_url(page.odata_next_link).get()
            users += list(page.value or []) if page else []
        assert [u.id for u in users] == ["u1", "u2", "u3", "u4", "u5"]
        assert users[3].account_enabled is False and users[0].mail == "ann@acme.test"
        groups = await client.groups.get()
        assert groups is not None
        assert [g.display_name for g in groups.value or []] == [
            "Engineering",
            "Sales",
            "Everyone at Acme",
        ]
        members = await client.groups.by_group_id("g1").transitive_members.graph_user.get()
        assert members is not None
        assert [m.id for m in members.value or []] == ["u1", "u2", "u3", "u5"]
        from kiota_abstractions.api_error import APIError

        state.fault("/graph/v1.0/users", 403)
        with pytest.raises(APIError) as error:
            await client.users.get()
        assert error.value.response_status_code == 403

    asyncio.run(run())
