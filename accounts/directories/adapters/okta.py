"""Okta: users, groups and group members through the Management API, as an OAuth service app
authenticated with a private-key JWT (client credentials). Paging follows the ``Link: rel=next``
header; rate limits come as 429 with ``X-Rate-Limit-Reset``."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from accounts.directories.adapters.http import BearerToken, ProviderClient, RetryPolicy
from accounts.directories.engine import Page, RemoteGroup, RemoteUser

SCOPES = "okta.users.read okta.groups.read"
INACTIVE = frozenset({"SUSPENDED", "DEPROVISIONED"})


def _error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("errorSummary") or body.get("error_description") or body)[:300]


class OktaAdapter:
    concurrency = 8  # member pages fetched ahead by the engine (httpx.Client is thread-safe)

    def __init__(self, config: dict[str, Any], *, retry: RetryPolicy | None = None) -> None:
        self.org_url = str(config["org_url"]).rstrip("/")
        self.client_id = str(config["client_id"])
        self.private_key = str(config["private_key"])
        self.key_id = str(config.get("key_id", ""))
        # Okta's maxima: 200 users, 10,000 groups, 1,000 group members per page.
        size = config.get("page_size")
        self.limits = {
            "users": int(size or 200),
            "groups": int(size or 10000),
            "members": int(size or 1000),
        }
        self.issuer = self.org_url
        self.client = ProviderClient(retry=retry, error_message=_error)
        self.token = BearerToken(self._fetch_token, self.client.retry.clock)

    def _fetch_token(self) -> tuple[str, float]:
        token_url = f"{self.org_url}/oauth2/v1/token"
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": token_url,
                "iat": now,
                "exp": now + 300,
                "jti": uuid.uuid4().hex,
            },
            self.private_key,
            algorithm="RS256",
            headers={"kid": self.key_id} if self.key_id else None,
        )
        response = self.client.request(
            "POST",
            token_url,
            data={
                "grant_type": "client_credentials",
                "scope": SCOPES,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
            },
        )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def _list(
        self, path: str, token: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        # The resume token is Okta's own next link (its opaque ``after`` cursor included).
        url = token or f"{self.org_url}/api/v1/{path}"
        if not url.startswith(self.org_url + "/"):
            raise ValueError("a next link outside the Okta org")
        params = None if token else {"limit": limit}
        body, response = self.client.get_json(url, params=params, headers=self.token.header())
        nxt = response.links.get("next", {}).get("url")
        return (body if isinstance(body, list) else []), nxt

    def users_page(self, token: str | None) -> Page[RemoteUser]:
        items, nxt = self._list("users", token, self.limits["users"])
        users = []
        for u in items:
            profile = u.get("profile") or {}
            name = profile.get("displayName") or " ".join(
                p for p in (profile.get("firstName"), profile.get("lastName")) if p
            )
            users.append(
                RemoteUser(
                    id=str(u["id"]),
                    email=str(profile.get("email") or profile.get("login") or ""),
                    name=str(name or profile.get("login", "")),
                    active=u.get("status") not in INACTIVE,
                )
            )
        return Page(users, nxt)

    def groups_page(self, token: str | None) -> Page[RemoteGroup]:
        items, nxt = self._list("groups", token, self.limits["groups"])
        return Page(
            [
                RemoteGroup(id=str(g["id"]), name=str((g.get("profile") or {}).get("name", "")))
                for g in items
            ],
            nxt,
        )

    def members_page(self, group_id: str, token: str | None) -> Page[str]:
        items, nxt = self._list(
            f"groups/{quote(group_id, safe='')}/users", token, self.limits["members"]
        )
        return Page([str(u["id"]) for u in items], nxt)
