"""Microsoft Entra ID through Microsoft Graph: users, groups and transitive (nested-flattened)
user members, client credentials; paging follows ``@odata.nextLink``; throttling is 429 with
``Retry-After``."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from accounts.directories.adapters.http import BearerToken, ProviderClient, RetryPolicy
from accounts.directories.engine import Page, RemoteGroup, RemoteUser


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("code"))[:300]
    return str(body.get("error_description") or error or body)[:300]


class EntraAdapter:
    concurrency = 8  # member pages fetched ahead by the engine (httpx.Client is thread-safe)

    def __init__(self, config: dict[str, Any], *, retry: RetryPolicy | None = None) -> None:
        self.tenant = str(config["tenant_id"])
        self.client_id = str(config["client_id"])
        self.client_secret = str(config["client_secret"])
        self.graph = str(config.get("graph_base", "https://graph.microsoft.com")).rstrip("/")
        self.login = str(config.get("login_base", "https://login.microsoftonline.com")).rstrip("/")
        self.page_size = int(config.get("page_size", 999))
        self.issuer = f"https://login.microsoftonline.com/{self.tenant}/v2.0"
        self.client = ProviderClient(retry=retry, error_message=_error)
        self.token = BearerToken(self._fetch_token, self.client.retry.clock)

    def _fetch_token(self) -> tuple[str, float]:
        response = self.client.request(
            "POST",
            f"{self.login}/{quote(self.tenant, safe='')}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "scope": f"{self.graph}/.default",
            },
        )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def _list(self, path: str, select: str, token: str | None) -> tuple[list[Any], str | None]:
        url = token or f"{self.graph}/v1.0/{path}"
        if not url.startswith(self.graph + "/"):
            raise ValueError("a next link outside Microsoft Graph")
        params = None if token else {"$select": select, "$top": self.page_size}
        body, _ = self.client.get_json(url, params=params, headers=self.token.header())
        return list(body.get("value", [])), body.get("@odata.nextLink")

    def users_page(self, token: str | None) -> Page[RemoteUser]:
        items, nxt = self._list(
            "users", "id,displayName,mail,userPrincipalName,accountEnabled", token
        )
        return Page(
            [
                RemoteUser(
                    id=str(u["id"]),
                    email=str(u.get("mail") or u.get("userPrincipalName") or ""),
                    name=str(u.get("displayName") or u.get("userPrincipalName") or ""),
                    active=u.get("accountEnabled", True) is not False,
                )
                for u in items
            ],
            nxt,
        )

    def groups_page(self, token: str | None) -> Page[RemoteGroup]:
        items, nxt = self._list("groups", "id,displayName", token)
        return Page(
            [RemoteGroup(id=str(g["id"]), name=str(g.get("displayName", ""))) for g in items], nxt
        )

    def members_page(self, group_id: str, token: str | None) -> Page[str]:
        items, nxt = self._list(
            f"groups/{quote(group_id, safe='')}/transitiveMembers/microsoft.graph.user", "id", token
        )
        return Page([str(m["id"]) for m in items], nxt)
