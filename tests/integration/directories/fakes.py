"""Fakes of the three directory APIs over real HTTP (there are no emulators).

One threaded HTTP server on loopback serves, from one shared data set:
- Google Admin SDK Directory API under ``/google/`` (token endpoint ``/google/token``),
- Okta's Management API under ``/okta/`` (token endpoint ``/okta/oauth2/v1/token``),
- Microsoft Graph under ``/graph/`` (token endpoint ``/login/<tenant>/oauth2/v2.0/token``).
The JSON follows the vendors' documented shapes (paging tokens, rate-limit headers, error bodies)
and is checked against the vendors' own SDKs in ``test_fakes_vs_sdks``. Faults (an HTTP status
with headers, for the next N matching requests) and a request log let tests steer and observe.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt

ACCESS_TOKEN = "fake-access-token"
MAX_PAGE = {
    "google": 500,
    "google_groups": 200,
    "okta": 200,
    "okta_groups": 10000,
    "okta_members": 1000,
    "graph": 999,
}


@dataclass
class Fault:
    prefix: str  # path prefix the fault applies to
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    times: int = 1


@dataclass
class DirectoryData:
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> email, name, active, ou
    groups: dict[str, str] = field(default_factory=dict)  # id -> name
    members: dict[str, list[str]] = field(default_factory=dict)  # group id -> user ids
    org_units: dict[str, str] = field(default_factory=dict)  # path -> name

    def user(self, uid: str, email: str, name: str, *, active: bool = True, ou: str = "/") -> None:
        self.users[uid] = {"email": email, "name": name, "active": active, "ou": ou}

    def group(self, gid: str, name: str, *members: str) -> None:
        self.groups[gid] = name
        self.members[gid] = list(members)


@dataclass
class FakeState:
    data: DirectoryData = field(default_factory=DirectoryData)
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[float, str, str]] = field(default_factory=list)
    google_public_key: str = ""
    okta_public_key: str = ""
    graph_client_secret: str = "graph-secret"
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_s: float = 0.0  # per request, to widen windows in crash tests

    def fault(self, prefix: str, status: int, times: int = 1, **headers: str) -> None:
        with self.lock:
            self.faults.append(
                Fault(
                    prefix,
                    status,
                    {k.replace("_", "-"): v for k, v in headers.items()},
                    times=times,
                )
            )

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for f in self.faults:
                if path.startswith(f.prefix) and f.times > 0:
                    f.times -= 1
                    return f
        return None

    def requests(self, prefix: str = "") -> list[tuple[float, str, str]]:
        with self.lock:
            return [r for r in self.log if r[2].startswith(prefix)]


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def _offset(token: str | None) -> int:
    if not token:
        return 0
    padded = token + "=" * (-len(token) % 4)
    return int(base64.urlsafe_b64decode(padded).decode().removeprefix("o:"))


def _page(items: list[Any], token: str | None, size: int) -> tuple[list[Any], str | None]:
    start = _offset(token)
    end = start + size
    return items[start:end], (_token(end) if end < len(items) else None)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # One write per response and no Nagle: headers and body in separate small segments would
    # meet the client's delayed ACK (40 ms a request).
    wbufsize = 1 << 16
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _base(self) -> str:
        return f"http://{self.headers.get('Host')}"

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        with state.lock:
            state.log.append((time.monotonic(), method, path))
        if state.delay_s:
            time.sleep(state.delay_s)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        form = {k: v[-1] for k, v in parse_qs(raw).items()}
        if path == "/_control/okta_key":  # benchmarks: the key the client assertion is signed with
            state.okta_public_key = raw
            self._send(200, {})
            return
        if path == "/_control/churn":  # benchmarks: change a fraction of the data in place
            with state.lock:
                changed = churn(state.data, float(query.get("fraction", "0.01")))
            self._send(200, {"changed": changed})
            return
        vendor = path.split("/")[1] if path.count("/") >= 1 else ""
        fault = state.take_fault(path)
        if fault is not None:
            self._send(
                fault.status, fault.body or self._error_body(vendor, fault.status), fault.headers
            )
            return
        try:
            if vendor == "google":
                self._google(method, path.removeprefix("/google"), query, form)
            elif vendor == "okta":
                self._okta(method, path.removeprefix("/okta"), query, form)
            elif vendor in ("graph", "login"):
                self._graph(method, path, query, form)
            else:
                self._send(404, {"error": "not found"})
        except KeyError:
            self._send(404, self._error_body(vendor, 404))

    def _error_body(self, vendor: str, status: int) -> Any:
        if vendor == "google":
            reason = "rateLimitExceeded" if status == 429 else "forbidden"
            return {
                "error": {
                    "code": status,
                    "message": f"Fake Google error {status}",
                    "errors": [{"message": "error", "domain": "global", "reason": reason}],
                    "status": "PERMISSION_DENIED" if status == 403 else "UNAVAILABLE",
                }
            }
        if vendor == "okta":
            code = {401: "E0000011", 403: "E0000006", 404: "E0000007", 429: "E0000047"}
            return {
                "errorCode": code.get(status, "E0000009"),
                "errorSummary": f"Fake Okta error {status}",
                "errorLink": code.get(status, "E0000009"),
                "errorId": "oaeFake",
                "errorCauses": [],
            }
        return {
            "error": {
                "code": "Authorization_RequestDenied" if status == 403 else "TooManyRequests",
                "message": f"Fake Graph error {status}",
                "innerError": {"date": "2026-01-01T00:00:00", "request-id": "fake"},
            }
        }

    def _authorized(self, vendor: str) -> bool:
        sent = self.headers.get("Authorization")
        # Okta also takes API tokens (SSWS); the okta SDK 3.x sends them without the space.
        ssws = (sent or "").removeprefix("SSWS").strip() == ACCESS_TOKEN and (
            sent or ""
        ).startswith("SSWS")
        if sent == f"Bearer {ACCESS_TOKEN}" or (vendor == "okta" and ssws):
            return True
        self._send(401, self._error_body(vendor, 401))
        return False

    # --- Google --------------------------------------------------------------------------------

    def _google(self, method: str, path: str, q: dict[str, str], form: dict[str, str]) -> None:
        state = self.server.state
        data = state.data
        if method == "POST" and path == "/token":
            try:
                claims = jwt.decode(
                    form["assertion"],
                    state.google_public_key,
                    algorithms=["RS256"],
                    audience=f"{self._base()}/google/token",
                )
                assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                assert claims["sub"] and claims["iss"] and "admin.directory" in claims["scope"]
            except Exception:
                self._send(400, {"error": "invalid_grant", "error_description": "Invalid JWT"})
                return
            self._send(
                200, {"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}
            )
            return
        if not self._authorized("google"):
            return
        parts = path.strip("/").split("/")  # admin directory v1 ...
        rest = parts[3:]
        size = min(int(q.get("maxResults", 100)), MAX_PAGE["google"])
        if rest == ["users"]:
            users = list(data.users.items())
            if "query" in q:
                ou = q["query"].removeprefix("orgUnitPath='").removesuffix("'")
                users = [(k, u) for k, u in users if u["ou"] == ou]
            page, nxt = _page(users, q.get("pageToken"), size)
            body: dict[str, Any] = {
                "kind": "admin#directory#users",
                "etag": '"fake"',
                "users": [
                    {
                        "kind": "admin#directory#user",
                        "id": uid,
                        "primaryEmail": u["email"],
                        "name": {
                            "givenName": u["name"].split(" ")[0],
                            "familyName": u["name"].split(" ")[-1],
                            "fullName": u["name"],
                        },
                        "suspended": not u["active"],
                        "orgUnitPath": u["ou"],
                    }
                    for uid, u in page
                ],
            }
            if nxt:
                body["nextPageToken"] = nxt
            self._send(200, body)
        elif rest == ["groups"]:
            page, nxt = _page(
                list(data.groups.items()),
                q.get("pageToken"),
                min(size, MAX_PAGE["google_groups"]),
            )
            body = {
                "kind": "admin#directory#groups",
                "groups": [
                    {
                        "kind": "admin#directory#group",
                        "id": gid,
                        "email": f"{gid}@groups.test",
                        "name": name,
                        "directMembersCount": str(len(data.members.get(gid, []))),
                    }
                    for gid, name in page
                ],
            }
            if nxt:
                body["nextPageToken"] = nxt
            self._send(200, body)
        elif len(rest) == 3 and rest[0] == "groups" and rest[2] == "members":
            members = data.members[rest[1]]
            page, nxt = _page(members, q.get("pageToken"), min(size, MAX_PAGE["google_groups"]))
            body = {
                "kind": "admin#directory#members",
                "members": [
                    {
                        "kind": "admin#directory#member",
                        "id": m,
                        "email": data.users.get(m, {}).get("email", ""),
                        "role": "MEMBER",
                        "type": "USER",
                        "status": "ACTIVE",
                    }
                    for m in page
                ],
            }
            if nxt:
                body["nextPageToken"] = nxt
            self._send(200, body)
        elif len(rest) == 3 and rest[0] == "customer" and rest[2] == "orgunits":
            self._send(
                200,
                {
                    "kind": "admin#directory#orgUnits",
                    "organizationUnits": [
                        {
                            "kind": "admin#directory#orgUnit",
                            "name": name,
                            "orgUnitPath": p,
                            "orgUnitId": f"id:{p}",
                            "parentOrgUnitPath": "/",
                        }
                        for p, name in sorted(data.org_units.items())
                    ],
                },
            )
        else:
            self._send(404, self._error_body("google", 404))

    # --- Okta ----------------------------------------------------------------------------------

    def _okta_headers(self, next_url: str | None, self_url: str) -> dict[str, str]:
        links = [f'<{self_url}>; rel="self"']
        if next_url:
            links.append(f'<{next_url}>; rel="next"')
        return {
            "Link": ", ".join(links),
            "X-Rate-Limit-Limit": "600",
            "X-Rate-Limit-Remaining": "599",
            "X-Rate-Limit-Reset": str(int(time.time()) + 60),
        }

    def _okta_user(self, uid: str) -> dict[str, Any]:
        u = self.server.state.data.users[uid]
        first, _, last = u["name"].partition(" ")
        return {
            "id": uid,
            "status": "ACTIVE" if u["active"] else "SUSPENDED",
            "created": "2026-01-01T00:00:00.000Z",
            "activated": None,
            "statusChanged": None,
            "lastLogin": None,
            "lastUpdated": "2026-01-01T00:00:00.000Z",
            "passwordChanged": None,
            "type": {"id": "otyFake"},
            "profile": {
                "firstName": first,
                "lastName": last,
                "email": u["email"],
                "login": u["email"],
                "mobilePhone": None,
            },
            "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
            "_links": {"self": {"href": f"{self._base()}/okta/api/v1/users/{uid}"}},
        }

    def _okta(self, method: str, path: str, q: dict[str, str], form: dict[str, str]) -> None:
        state = self.server.state
        data = state.data
        if method == "POST" and path == "/oauth2/v1/token":
            try:
                claims = jwt.decode(
                    form["client_assertion"],
                    state.okta_public_key,
                    algorithms=["RS256"],
                    audience=f"{self._base()}/okta/oauth2/v1/token",
                )
                assert claims["iss"] == claims["sub"]
                assert (
                    form["grant_type"] == "client_credentials"
                    and "okta.users.read" in form["scope"]
                )
            except Exception:
                self._send(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "The client_assertion is invalid.",
                    },
                )
                return
            self._send(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "access_token": ACCESS_TOKEN,
                    "scope": form["scope"],
                },
            )
            return
        if not self._authorized("okta"):
            return
        limit = int(q.get("limit", 200))
        size = min(limit, MAX_PAGE["okta"])
        parts = path.strip("/").split("/")[2:]  # after api/v1
        if parts == ["users"]:
            items: list[Any] = list(data.users)
            render = self._okta_user
        elif parts == ["groups"]:
            items = list(data.groups)
            size = min(limit, MAX_PAGE["okta_groups"])

            def render(gid: str) -> dict[str, Any]:
                return {
                    "id": gid,
                    "created": "2026-01-01T00:00:00.000Z",
                    "lastUpdated": "2026-01-01T00:00:00.000Z",
                    "lastMembershipUpdated": "2026-01-01T00:00:00.000Z",
                    "objectClass": ["okta:user_group"],
                    "type": "OKTA_GROUP",
                    "profile": {"name": data.groups[gid], "description": None},
                    "_links": {},
                }
        elif len(parts) == 3 and parts[0] == "groups" and parts[2] == "users":
            items = list(data.members[parts[1]])
            size = min(limit, MAX_PAGE["okta_members"])
            render = self._okta_user
        else:
            self._send(404, self._error_body("okta", 404))
            return
        page, nxt = _page(items, q.get("after"), size)
        here = f"{self._base()}/okta{path}"
        next_url = f"{here}?{urlencode({'limit': size, 'after': nxt})}" if nxt else None
        self._send(200, [render(i) for i in page], self._okta_headers(next_url, here))

    # --- Graph ---------------------------------------------------------------------------------

    def _graph(self, method: str, path: str, q: dict[str, str], form: dict[str, str]) -> None:
        state = self.server.state
        data = state.data
        if method == "POST" and path.startswith("/login/") and path.endswith("/oauth2/v2.0/token"):
            if (
                form.get("client_secret") != state.graph_client_secret
                or form.get("grant_type") != "client_credentials"
            ):
                self._send(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "AADSTS7000215: Invalid client secret provided.",
                    },
                )
                return
            self._send(
                200,
                {
                    "token_type": "Bearer",
                    "expires_in": 3599,
                    "ext_expires_in": 3599,
                    "access_token": ACCESS_TOKEN,
                },
            )
            return
        if not self._authorized("graph"):
            return
        parts = path.strip("/").split("/")[2:]  # after graph/v1.0
        size = min(int(q.get("$top", 100)), MAX_PAGE["graph"])
        token = q.get("$skiptoken")
        base = f"{self._base()}/graph/v1.0"
        if parts == ["users"]:
            rows = [
                {
                    "id": uid,
                    "displayName": u["name"],
                    "mail": u["email"],
                    "userPrincipalName": u["email"],
                    "accountEnabled": u["active"],
                }
                for uid, u in list(data.users.items())
            ]
            context = f"{base}/$metadata#users"
        elif parts == ["groups"]:
            rows = [{"id": gid, "displayName": name} for gid, name in list(data.groups.items())]
            context = f"{base}/$metadata#groups"
        elif (
            len(parts) == 4
            and parts[0] == "groups"
            and parts[2] == "transitiveMembers"
            and parts[3] in ("microsoft.graph.user", "graph.user")
        ):
            rows = [
                {"@odata.type": "#microsoft.graph.user", "id": m} for m in data.members[parts[1]]
            ]
            context = f"{base}/$metadata#users"
        else:
            self._send(404, self._error_body("graph", 404))
            return
        select = q.get("$select")
        if select:
            keep = set(select.split(",")) | {"@odata.type"}
            rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
        page, nxt = _page(rows, token, size)
        body: dict[str, Any] = {"@odata.context": context, "value": page}
        if nxt:
            params = {"$top": size, "$skiptoken": nxt}
            if select:
                params["$select"] = select
            body["@odata.nextLink"] = (
                f"{base}/{'/'.join(quote(p) for p in parts)}?{urlencode(params)}"
            )
        self._send(200, body)


def churn(data: DirectoryData, fraction: float) -> int:
    """Rename, delete and add ``fraction`` of the users each, and move that fraction of the
    memberships (deterministic, so runs compare)."""
    ids = list(data.users)
    step = max(int(1 / fraction), 1) if fraction > 0 else 0
    if not step:
        return 0
    changed = 0
    for n, uid in enumerate(ids[::step]):
        if n % 3 == 0:
            data.users[uid]["name"] += " (renamed)"
        elif n % 3 == 1:
            del data.users[uid]
            for members in data.members.values():
                if uid in members:
                    members.remove(uid)
        else:
            data.user(f"{uid}-new", f"new-{data.users[uid]['email']}", "New Person")
        changed += 1
    groups = list(data.members)
    for n, gid in enumerate(groups[::step]):
        members = data.members[gid]
        if members:
            members.pop()
        joiner = ids[(n * 7919) % len(ids)]
        if joiner in data.users and joiner not in members:
            members.append(joiner)
        changed += 1
    return changed


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: FakeState

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a killed client hangs up
            super().handle_error(request, client_address)


@contextmanager
def serve(state: FakeState) -> Iterator[str]:
    """Serve the fakes on a free loopback port; yields the base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
