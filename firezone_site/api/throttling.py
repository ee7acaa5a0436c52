"""Per-token rate limits: every API token has its own bucket (``FZ_API_RATE``, e.g. 600/min),
kept in the default cache (Redis in production, so every portal process shares it)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_rate(self) -> str:
        return str(settings.FZ_API_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        token = request.auth
        if token is None or getattr(token, "pk", None) is None:
            return None  # unauthenticated requests are refused before they cost anything
        return f"fz-api-throttle:{token.pk}"
