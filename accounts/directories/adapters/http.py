"""HTTP for the pull adapters: one client per run, rate limits honoured, transient errors retried.

A 429 (or a vendor's own "slow down") waits as long as the provider says (``Retry-After`` in
seconds or as an HTTP date, or Okta's ``X-Rate-Limit-Reset`` epoch), capped; 408/5xx and network
errors back off exponentially with jitter. When the retries run out, or the answer is another
4xx, the adapter raises :class:`ProviderError` with the status, which the engine turns into a
resumable failure or a disabled directory.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from accounts.directories.engine import ProviderError

log = logging.getLogger(__name__)

TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    waited: list[float] = field(default_factory=list)  # what was slept, for the logs and tests


def retry_after(headers: Mapping[str, str], now: float, cap: float) -> float | None:
    """How long the provider asked us to wait, if it said so."""
    value = headers.get("retry-after")
    if value:
        try:
            return min(max(float(value), 0.0), cap)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return min(max(parsed.timestamp() - now, 0.0), cap)
    reset = headers.get("x-rate-limit-reset")
    if reset and headers.get("x-rate-limit-remaining", "1") == "0":
        try:
            return min(max(float(reset) - now, 0.0) + 0.1, cap)
        except ValueError:
            return None
    return None


class ProviderClient:
    """A thin httpx wrapper: JSON in and out, vendor error bodies turned into ProviderError."""

    def __init__(
        self,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        error_message: Callable[[httpx.Response], str] | None = None,
        throttled: Callable[[httpx.Response], bool] | None = None,
    ) -> None:
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)
        self.retry = retry or RetryPolicy()
        self.error_message = error_message or (lambda r: r.text[:300])
        # Some vendors signal throttling with another status (Google: 403 rateLimitExceeded).
        self.throttled = throttled or (lambda r: False)

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        policy = self.retry
        for attempt in range(1, policy.attempts + 1):
            try:
                response = self.http.request(method, url, headers=headers, params=params, data=data)
            except httpx.TransportError as exc:
                if attempt == policy.attempts:
                    raise ProviderError(f"{type(exc).__name__}: {exc}") from exc
                self._wait(self._backoff(attempt))
                continue
            if response.status_code < 400:
                return response
            throttled = response.status_code == 429 or self.throttled(response)
            if (throttled or response.status_code in TRANSIENT) and attempt < policy.attempts:
                asked = retry_after(response.headers, policy.clock(), policy.max_delay)
                self._wait(asked if asked is not None else self._backoff(attempt))
                continue
            status = 429 if throttled else response.status_code
            raise ProviderError(self.error_message(response), status=status)
        raise AssertionError("unreachable")

    def get_json(self, url: str, **kw: Any) -> tuple[Any, httpx.Response]:
        response = self.request("GET", url, **kw)
        try:
            return response.json(), response
        except ValueError as exc:
            raise ProviderError("The provider did not answer JSON", status=None) from exc

    def _backoff(self, attempt: int) -> float:
        delay = min(self.retry.base_delay * float(2 ** (attempt - 1)), self.retry.max_delay)
        return delay * (0.5 + random.random() / 2)

    def _wait(self, seconds: float) -> None:
        self.retry.waited.append(seconds)
        log.info("directory provider asked to wait %.1fs", seconds)
        self.retry.sleep(seconds)


class BearerToken:
    """An OAuth access token fetched by ``fetch`` and renewed a minute before it expires."""

    def __init__(self, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float]) -> None:
        self._fetch = fetch
        self._clock = clock
        self._token = ""
        self._expires = 0.0

    def header(self) -> dict[str, str]:
        if not self._token or self._clock() >= self._expires - 60:
            try:
                self._token, lifetime = self._fetch()
            except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
                # A key that does not parse or a token answer without a token: the settings.
                raise ProviderError(f"Could not get an access token: {exc}", status=400) from exc
            self._expires = self._clock() + lifetime
        return {"Authorization": f"Bearer {self._token}"}
