"""OpenID Connect relying party: authorization code flow with PKCE (S256), state and nonce.

Theory of operation. ``begin()`` builds the authorization URL from the provider's discovery
document and returns the secrets the browser session must keep (state, nonce, PKCE verifier).
The provider redirects back with ``code`` and ``state``; the caller matches the state against
what it kept, then ``finish()`` redeems the code at the token endpoint (with the verifier) and
verifies the id_token: its signature against the provider's JWKS (refetched once when the token
names an unknown ``kid``; a token without ``kid`` is tried against every key), then ``iss``,
``aud`` (and ``azp`` when several audiences), ``exp``, ``iat`` and ``nonce``. Userinfo is merged
in when configured, only if its ``sub`` matches. Email verification and the mapping to an actor
are the caller's (``accounts.signin.services``).

Written on PyJWT (JOSE: signature, algorithm allow-list, exp/iat/aud/iss checks) and requests;
mozilla-django-oidc and allauth configure one provider per deployment in settings, while here
every account brings its own providers from the database.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests

HTTP_TIMEOUT_S = 10
DISCOVERY_TTL_S = 3600
JWKS_MIN_REFETCH_S = 5.0
CLOCK_SKEW_S = 60
# Asymmetric algorithms only: an HS256 token "signed" with a public key must never verify.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


class OIDCError(Exception):
    """The sign-in cannot go on; the message is safe to show to the person signing in."""


@dataclass(frozen=True, slots=True)
class Pending:
    """What the browser session keeps between the redirect out and the callback."""

    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True, slots=True)
class ClientConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    use_userinfo: bool = False
    # Where the discovery document is when not at <issuer>/.well-known/openid-configuration.
    discovery_url: str = ""


_lock = threading.Lock()
_discovery: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks: dict[str, tuple[float, list[dict[str, Any]]]] = {}


def _get_json(url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=HTTP_TIMEOUT_S, headers={"Accept": "application/json"})
        response.raise_for_status()
        data = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise OIDCError(f"The identity provider could not be reached ({url}).") from exc
    if not isinstance(data, dict):
        raise OIDCError(f"The identity provider answered {url} with something other than JSON.")
    return data


def discover(issuer: str, discovery_url: str = "") -> dict[str, Any]:
    """The discovery document, cached an hour; its ``issuer`` must be the configured one."""
    url = discovery_url or issuer.rstrip("/") + "/.well-known/openid-configuration"
    now = time.monotonic()
    with _lock:
        hit = _discovery.get(url)
    if hit is not None and now - hit[0] < DISCOVERY_TTL_S:
        return hit[1]
    doc = _get_json(url)
    if doc.get("issuer") != issuer:
        raise OIDCError(
            f"The discovery document names issuer {doc.get('issuer')!r}, not {issuer!r}: "
            "check the issuer URL."
        )
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(doc.get(key), str):
            raise OIDCError(f"The discovery document has no {key}.")
    with _lock:
        _discovery[url] = (now, doc)
    return doc


def _keys(jwks_uri: str, *, refresh: bool) -> list[dict[str, Any]]:
    now = time.monotonic()
    with _lock:
        hit = _jwks.get(jwks_uri)
    if hit is not None and (not refresh or now - hit[0] < JWKS_MIN_REFETCH_S):
        return hit[1]
    keys = _get_json(jwks_uri).get("keys")
    if not isinstance(keys, list):
        raise OIDCError("The provider's JWKS has no keys.")
    with _lock:
        _jwks[jwks_uri] = (now, keys)
    return keys


def forget_caches() -> None:
    with _lock:
        _discovery.clear()
        _jwks.clear()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def begin(config: ClientConfig) -> tuple[str, Pending]:
    doc = discover(config.issuer, config.discovery_url)
    pending = Pending(
        state=secrets.token_urlsafe(32),
        nonce=secrets.token_urlsafe(32),
        verifier=secrets.token_urlsafe(64),
    )
    challenge = _b64(hashlib.sha256(pending.verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": " ".join(config.scopes),
        "state": pending.state,
        "nonce": pending.nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    endpoint: str = doc["authorization_endpoint"]
    separator = "&" if "?" in endpoint else "?"
    return endpoint + separator + urlencode(params), pending


def _redeem(config: ClientConfig, doc: dict[str, Any], code: str, verifier: str) -> dict[str, Any]:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": config.redirect_uri,
        "code_verifier": verifier,
    }
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    auth: tuple[str, str] | None = None
    if "client_secret_basic" in methods:
        auth = (config.client_id, config.client_secret)
    else:
        data |= {"client_id": config.client_id, "client_secret": config.client_secret}
    try:
        response = requests.post(
            doc["token_endpoint"],
            data=data,
            auth=auth,
            timeout=HTTP_TIMEOUT_S,
            headers={"Accept": "application/json"},
        )
    except requests.RequestException as exc:
        raise OIDCError("The identity provider's token endpoint could not be reached.") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error", response.status_code) if isinstance(body, dict) else ""
        raise OIDCError(f"The identity provider refused the sign-in code ({error}).")
    if not isinstance(body.get("id_token"), str):
        raise OIDCError("The identity provider returned no id_token.")
    return body


def verify_id_token(
    token: str, *, issuer: str, client_id: str, nonce: str, jwks_uri: str
) -> dict[str, Any]:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise OIDCError("The id_token is malformed.") from exc
    if header.get("alg") not in ALGORITHMS:
        raise OIDCError(f"The id_token is signed with {header.get('alg')!r}, which is not allowed.")
    kid = header.get("kid")
    keys = _keys(jwks_uri, refresh=False)
    if kid is not None and not any(k.get("kid") == kid for k in keys):
        keys = _keys(jwks_uri, refresh=True)  # the provider may have rotated its keys
    candidates = [k for k in keys if kid is None or k.get("kid") == kid]
    candidates = [k for k in candidates if k.get("use", "sig") == "sig"]
    if not candidates:
        raise OIDCError("The id_token is signed by a key the identity provider does not publish.")
    last: Exception | None = None
    for jwk in candidates:
        try:
            key = jwt.PyJWK(jwk, algorithm=header["alg"])
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[header["alg"]],
                audience=client_id,
                issuer=issuer,
                leeway=CLOCK_SKEW_S,
                options={"require": ["iss", "aud", "exp", "iat", "sub"]},
            )
        except jwt.InvalidSignatureError as exc:
            last = exc
            continue
        except jwt.ExpiredSignatureError as exc:
            raise OIDCError("The id_token has expired.") from exc
        except jwt.InvalidAudienceError as exc:
            raise OIDCError("The id_token was issued for another application (audience).") from exc
        except jwt.InvalidIssuerError as exc:
            raise OIDCError("The id_token was issued by another issuer.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise OIDCError("The id_token is not valid yet (iat/nbf in the future).") from exc
        except (jwt.PyJWTError, ValueError) as exc:
            last = exc
            continue
        break
    else:
        raise OIDCError("The id_token signature does not verify.") from last
    if time.time() - float(claims["iat"]) > 24 * 3600:
        raise OIDCError("The id_token was issued too long ago.")
    aud = claims["aud"]
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise OIDCError("The id_token was issued for another application (azp).")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(
        claims["nonce"], nonce
    ):
        raise OIDCError("The sign-in response does not belong to this sign-in (nonce).")
    return claims


def finish(config: ClientConfig, pending: Pending, code: str) -> dict[str, Any]:
    """Redeem the code and return the verified id_token claims (plus userinfo if configured)."""
    doc = discover(config.issuer, config.discovery_url)
    body = _redeem(config, doc, code, pending.verifier)
    claims = verify_id_token(
        body["id_token"],
        issuer=config.issuer,
        client_id=config.client_id,
        nonce=pending.nonce,
        jwks_uri=doc["jwks_uri"],
    )
    if config.use_userinfo and isinstance(doc.get("userinfo_endpoint"), str):
        try:
            response = requests.get(
                doc["userinfo_endpoint"],
                headers={"Authorization": f"Bearer {body.get('access_token', '')}"},
                timeout=HTTP_TIMEOUT_S,
            )
            response.raise_for_status()
            info = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise OIDCError("The identity provider's userinfo endpoint failed.") from exc
        if isinstance(info, dict) and info.get("sub") == claims["sub"]:
            claims = {**info, **claims}
    return claims
