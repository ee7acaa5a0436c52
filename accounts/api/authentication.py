"""Bearer API tokens (``Authorization: Bearer fza_...``), as issued on the Settings page.

Only the SHA-256 of a secret is stored; ``accounts.services.use_token`` checks it, the expiry, the
revocation and the actor, and records the last use. A token acts for its actor: an API client's
token manages the account; a service account's token (a headless client's identity) is refused
with 403.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from accounts import services
from accounts.models import Account, Actor, Token


class ApiClient:
    """``request.user`` of an API request: the token's actor and account."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, token: Token) -> None:
        assert token.actor is not None
        self.token = token
        self.actor: Actor = token.actor
        self.account: Account = token.account

    @property
    def may_manage(self) -> bool:
        return self.actor.type == Actor.Type.API_CLIENT

    def __str__(self) -> str:
        return f"API token {self.token.pk} of {self.actor}"


class BearerTokenAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, Token] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, secret = header.partition(" ")
        if not header or scheme.lower() != self.keyword.lower():
            return None
        token = services.use_token(
            secret.strip(), kind=Token.Kind.API, remote_ip=request.META.get("REMOTE_ADDR")
        )
        if token is None or token.actor is None or token.account.disabled_at is not None:
            raise exceptions.AuthenticationFailed("The token is unknown, revoked or expired.")
        return ApiClient(token), token

    def authenticate_header(self, request: Request) -> str:
        # A header makes DRF answer 401 (not 403) to a request without valid credentials.
        return 'Bearer realm="api"'


class MayManageAccount(BasePermission):
    message = "Only an API client's token may manage the account."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return isinstance(user, ApiClient) and user.may_manage


class BearerTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "accounts.api.authentication.BearerTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token from Settings (`fza_...`), sent as "
            "`Authorization: Bearer <token>`.",
        }
