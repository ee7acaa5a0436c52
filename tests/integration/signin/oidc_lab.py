"""An independent OpenID provider for the tests: pytest-iam's Canaille, in the test process.

``TokenTamper`` sits in front of Canaille's token endpoint only (the discovery document it
serves is Canaille's, with ``token_endpoint`` pointed at itself; the issuer stays Canaille's).
Tests use it to hand the portal id_tokens that Canaille signed and then had changed (wrong
audience, expired, another nonce) -- re-signed with Canaille's own key -- or signed with a key
Canaille does not publish.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import requests

REDIRECT_URI = "http://testserver/sign-in/oidc/callback"

Claims = dict[str, Any]


class TokenTamper:
    def __init__(self, issuer: str, signing_jwk: dict[str, Any]) -> None:
        self.issuer = issuer.rstrip("/")
        self.signing_jwk = signing_jwk
        self.change: Callable[[Claims], Claims] | None = None
        self.other_key = False  # sign with a key Canaille does not publish
        tamper = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                doc = requests.get(
                    tamper.issuer + "/.well-known/openid-configuration", timeout=10
                ).json()
                doc["token_endpoint"] = tamper.url + "/token"
                self._reply(200, json.dumps(doc).encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                upstream = requests.post(
                    tamper.issuer + "/oauth/token",
                    data=body,
                    headers={
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() in ("authorization", "content-type")
                    },
                    timeout=10,
                )
                answer = upstream.json()
                if upstream.status_code == 200 and (tamper.change or tamper.other_key):
                    answer["id_token"] = tamper.rewrite(answer["id_token"])
                self._reply(upstream.status_code, json.dumps(answer).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def discovery_url(self) -> str:
        return self.url + "/.well-known/openid-configuration"

    def rewrite(self, token: str) -> str:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        if self.change is not None:
            claims = self.change(claims)
        if self.other_key:
            from cryptography.hazmat.primitives.asymmetric import rsa

            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = jwt.PyJWK(self.signing_jwk).key
        return jwt.encode(claims, key, algorithm=header["alg"], headers={"kid": header["kid"]})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_client(iam_server: Any) -> tuple[str, str]:
    client_id, secret = f"fz-{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
    client = iam_server.models.Client(
        client_id=client_id,
        client_secret=secret,
        client_name="Firezone portal (tests)",
        redirect_uris=[REDIRECT_URI],
        token_endpoint_auth_method="client_secret_basic",
        grant_types=["authorization_code"],
        response_types=["code"],
        scope=["openid", "email", "profile"],
    )
    iam_server.backend.save(client)
    client.audience = [client]
    iam_server.backend.save(client)
    if iam_server.logged_user is not None:  # whoever is signed in there consents to it too
        iam_server.consent(iam_server.logged_user, client)
    return client_id, secret


def through_canaille(django_client: Any, start_url: str, *, post: bool = False) -> Any:
    """Follow the sign-in out to Canaille (already signed in and consented there) and back."""
    out = django_client.post(start_url) if post else django_client.get(start_url)
    assert out.status_code == 302, out.content[:500]
    # This request is the browser's, not the portal's: keep it out of the captured logs (the
    # no-secrets-logged test checks what the portal logs).
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    urllib3_log.disabled = True
    try:
        at_idp = requests.get(out["Location"], allow_redirects=False, timeout=10)
    finally:
        urllib3_log.disabled = False
    assert at_idp.status_code == 302, at_idp.text[:500]
    back = urlparse(at_idp.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URI
    return back.path, {k: v[-1] for k, v in parse_qs(back.query).items()}
