"""id_token signature checks against a JWKS served over HTTP: key rotation and kid-less tokens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from accounts.signin import oidc

ISSUER = "https://idp.example.test"


class JWKS:
    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                jwks.fetches += 1
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/jwks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def publish(self, key: Any, kid: str | None) -> None:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        if kid:
            jwk["kid"] = kid
        self.keys.append(jwk)


@pytest.fixture
def jwks() -> Iterator[JWKS]:
    oidc.forget_caches()
    server = JWKS()
    yield server
    server.server.shutdown()
    oidc.forget_caches()


def _token(key: Any, kid: str | None, **extra: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "client-1", "sub": "u1", "iat": now, "exp": now + 300}
    claims |= {"nonce": "n1", **extra}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims, key, algorithm="RS256", headers=headers)


def _verify(token: str, jwks: JWKS) -> dict[str, Any]:
    return oidc.verify_id_token(
        token, issuer=ISSUER, client_id="client-1", nonce="n1", jwks_uri=jwks.uri
    )


def _rsa() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_an_unknown_kid_refetches_the_jwks_once(jwks: JWKS) -> None:
    old, new = _rsa(), _rsa()
    jwks.publish(old, "k1")
    assert _verify(_token(old, "k1"), jwks)["sub"] == "u1"
    jwks.keys = []
    jwks.publish(new, "k2")  # the provider rotated
    time.sleep(oidc.JWKS_MIN_REFETCH_S + 0.1)
    assert _verify(_token(new, "k2"), jwks)["sub"] == "u1"
    assert jwks.fetches == 2


def test_a_token_without_kid_is_tried_against_every_key(jwks: JWKS) -> None:
    first, second = _rsa(), _rsa()
    jwks.publish(first, None)
    jwks.publish(second, None)
    assert _verify(_token(second, None), jwks)["sub"] == "u1"
    with pytest.raises(oidc.OIDCError, match="signature does not verify"):
        _verify(_token(_rsa(), None), jwks)


def test_unpublished_keys_symmetric_and_none_algorithms_are_refused(jwks: JWKS) -> None:
    key = _rsa()
    jwks.publish(key, "k1")
    with pytest.raises(oidc.OIDCError, match="does not publish"):
        _verify(_token(_rsa(), "k9"), jwks)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "client-1", "sub": "u", "iat": now, "exp": now + 60}
    hs = jwt.encode(claims, "shared", algorithm="HS256", headers={"kid": "k1"})
    with pytest.raises(oidc.OIDCError, match="not allowed"):
        _verify(hs, jwks)
    unsigned = jwt.encode(claims, None, algorithm="none")
    with pytest.raises(oidc.OIDCError, match="not allowed"):
        _verify(unsigned, jwks)


def test_several_audiences_need_azp_to_be_us(jwks: JWKS) -> None:
    key = _rsa()
    jwks.publish(key, "k1")
    with pytest.raises(oidc.OIDCError, match="azp"):
        _verify(_token(key, "k1", aud=["client-1", "other"]), jwks)
    ok = _token(key, "k1", aud=["client-1", "other"], azp="client-1")
    assert _verify(ok, jwks)["azp"] == "client-1"


def test_es256_keys_work_too(jwks: JWKS) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "e1"
    jwks.keys.append(jwk)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "client-1", "sub": "u", "iat": now, "exp": now + 60}
    token = jwt.encode({**claims, "nonce": "n1"}, key, algorithm="ES256", headers={"kid": "e1"})
    assert _verify(token, jwks)["sub"] == "u"
