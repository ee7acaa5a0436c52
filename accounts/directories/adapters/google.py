"""Google Workspace: Admin SDK Directory API, as a service account impersonating an admin.

Users, groups and (derived, so nested groups are flattened) members, ``pageToken`` paging;
optionally each organisational unit as a group. Google signals throttling as 403
``rateLimitExceeded``/``userRateLimitExceeded`` as well as 429: both wait and retry.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
import jwt

from accounts.directories.adapters.http import BearerToken, ProviderClient, RetryPolicy
from accounts.directories.engine import Page, RemoteGroup, RemoteUser

SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly "
    "https://www.googleapis.com/auth/admin.directory.group.readonly "
    "https://www.googleapis.com/auth/admin.directory.orgunit.readonly"
)
THROTTLE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded"})
OU_PREFIX = "ou:"


def _error(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        if isinstance(error, dict):
            return str(error.get("message") or error.get("status") or response.status_code)
        return str(response.json().get("error_description") or error)
    except ValueError:
        return response.text[:300]


def _throttled(response: httpx.Response) -> bool:
    if response.status_code != 403:
        return False
    try:
        errors = response.json().get("error", {}).get("errors", [])
    except (ValueError, AttributeError):
        return False
    return any(e.get("reason") in THROTTLE_REASONS for e in errors if isinstance(e, dict))


class GoogleAdapter:
    concurrency = 8  # member pages fetched ahead by the engine (httpx.Client is thread-safe)

    issuer = "https://accounts.google.com"

    def __init__(self, config: dict[str, Any], *, retry: RetryPolicy | None = None) -> None:
        self.base = str(config.get("api_base", "https://admin.googleapis.com")).rstrip("/")
        self.token_uri = str(config.get("token_uri", "https://oauth2.googleapis.com/token"))
        self.service_account = str(config["service_account_email"])
        self.private_key = str(config["private_key"])
        self.admin_email = str(config["admin_email"])
        self.customer = str(config.get("customer", "my_customer"))
        self.org_unit_groups = bool(config.get("org_unit_groups", False))
        self.page_size = int(config.get("page_size", 500))
        self.client = ProviderClient(retry=retry, error_message=_error, throttled=_throttled)
        self.token = BearerToken(self._fetch_token, self.client.retry.clock)

    def _fetch_token(self) -> tuple[str, float]:
        now = int(time.time())
        assertion = jwt.encode(
            {
                "iss": self.service_account,
                "sub": self.admin_email,
                "scope": SCOPES,
                "aud": self.token_uri,
                "iat": now,
                "exp": now + 3600,
            },
            self.private_key,
            algorithm="RS256",
        )
        response = self.client.request(
            "POST",
            self.token_uri,
            data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": assertion,
            },
        )
        body = response.json()
        return str(body["access_token"]), float(body.get("expires_in", 3600))

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        body, _ = self.client.get_json(
            f"{self.base}/admin/directory/v1/{path}", params=params, headers=self.token.header()
        )
        return body if isinstance(body, dict) else {}

    def users_page(self, token: str | None) -> Page[RemoteUser]:
        params: dict[str, Any] = {"customer": self.customer, "maxResults": self.page_size}
        if token:
            params["pageToken"] = token
        body = self._get("users", params)
        return Page([self._user(u) for u in body.get("users", [])], body.get("nextPageToken"))

    @staticmethod
    def _user(u: dict[str, Any]) -> RemoteUser:
        name = u.get("name") or {}
        return RemoteUser(
            id=str(u["id"]),
            email=str(u.get("primaryEmail", "")),
            name=str(name.get("fullName") or u.get("primaryEmail", "")),
            active=not u.get("suspended", False) and not u.get("archived", False),
        )

    def groups_page(self, token: str | None) -> Page[RemoteGroup]:
        if token and token.startswith(OU_PREFIX):
            return self._org_units()
        params: dict[str, Any] = {"customer": self.customer, "maxResults": min(self.page_size, 200)}
        if token:
            params["pageToken"] = token
        body = self._get("groups", params)
        groups = [
            RemoteGroup(id=str(g["id"]), name=str(g.get("name") or g.get("email", "")))
            for g in body.get("groups", [])
        ]
        nxt = body.get("nextPageToken")
        if not nxt and self.org_unit_groups:
            nxt = OU_PREFIX  # one more page: the organisational units
        return Page(groups, nxt)

    def _org_units(self) -> Page[RemoteGroup]:
        body = self._get(f"customer/{quote(self.customer)}/orgunits", {"type": "all"})
        return Page(
            [
                RemoteGroup(
                    id=f"{OU_PREFIX}{ou['orgUnitPath']}", name=f"OU {ou.get('name', '')}".strip()
                )
                for ou in body.get("organizationUnits", [])
            ],
            None,
        )

    def members_page(self, group_id: str, token: str | None) -> Page[str]:
        if group_id.startswith(OU_PREFIX):
            path = group_id.removeprefix(OU_PREFIX).replace("'", "\\'")
            params: dict[str, Any] = {
                "customer": self.customer,
                "maxResults": self.page_size,
                "query": f"orgUnitPath='{path}'",
            }
            if token:
                params["pageToken"] = token
            body = self._get("users", params)
            return Page([str(u["id"]) for u in body.get("users", [])], body.get("nextPageToken"))
        params = {"maxResults": min(self.page_size, 200), "includeDerivedMembership": "true"}
        if token:
            params["pageToken"] = token
        body = self._get(f"groups/{quote(group_id, safe='')}/members", params)
        return Page(
            [str(m["id"]) for m in body.get("members", []) if m.get("type", "USER") == "USER"],
            body.get("nextPageToken"),
        )
