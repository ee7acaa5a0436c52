"""Liveness and readiness probes.

``/readyz`` is anonymous, so it answers with the check names and ``ok``/``fail`` only; what failed
and why (exception text, timings) goes to the log. It must also be fast (load balancers' probe
timeouts are often 1-2 s): each check is one round trip with a short timeout.

The channel-layer check sends a message to a fresh channel and receives it, through a separate
instance of the configured backend that lives on its own event-loop thread. The process's shared
instance belongs to daphne's event loop (its receive loop or poller runs there while gateways are
connected); receiving on it from the request's own loop waited for a wake-up that never came and
took the whole 2 s timeout (embedded layer), or failed at once (channels_redis: "Two event loops
are trying to receive() on one channel layer at once!").
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from django.db import connection
from django.http import HttpRequest, JsonResponse

log = logging.getLogger(__name__)

#: Upper bound for one check's round trip (a healthy one takes a few milliseconds).
CHECK_TIMEOUT_S = 1


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


class _LayerProbe:
    """A dedicated instance of the configured channel layer on its own event-loop thread.

    Kept between calls so a check is two round trips on an open connection, not a new
    connection pool each time; rebuilt when the configuration changes (tests override it).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._layer: Any = None
        self._config = ""

    def _instance(self) -> tuple[asyncio.AbstractEventLoop, Any]:
        config = repr(channel_layers.configs.get(DEFAULT_CHANNEL_LAYER))
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="readyz-channel-layer", daemon=True
                ).start()
                self._layer = None
            if self._layer is None or config != self._config:
                if DEFAULT_CHANNEL_LAYER not in channel_layers.configs:
                    raise RuntimeError("no channel layer configured")
                self._layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
                self._config = config
            return self._loop, self._layer

    def roundtrip(self, timeout: float) -> None:
        loop, layer = self._instance()

        async def once() -> None:
            channel = await layer.new_channel("readyz.")
            token = uuid.uuid4().hex
            await layer.send(channel, {"type": "readyz", "token": token})
            message = await layer.receive(channel)
            if message.get("token") != token:
                raise RuntimeError("channel layer returned a different message")

        async def bounded() -> None:
            await asyncio.wait_for(once(), timeout)

        asyncio.run_coroutine_threadsafe(bounded(), loop).result(timeout + 1)


_layer_probe = _LayerProbe()


def _check_channel_layer() -> None:
    _layer_probe.roundtrip(CHECK_TIMEOUT_S)


def _check_broker() -> None:
    from firezone_site.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_S)


CHECKS: tuple[tuple[str, Callable[[], None]], ...] = (
    ("database", _check_database),
    ("channel_layer", _check_channel_layer),
    ("broker", _check_broker),
)


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, str] = {}
    for name, check in CHECKS:
        started = time.monotonic()
        try:
            check()
        except Exception as exc:  # a probe reports any failure instead of raising
            checks[name] = "fail"
            log.warning(
                "readiness check %s failed after %.1f ms: %s: %s",
                name,
                (time.monotonic() - started) * 1000,
                type(exc).__name__,
                exc,
            )
        else:
            checks[name] = "ok"
    ok = all(state == "ok" for state in checks.values())
    return JsonResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status=200 if ok else 503
    )
