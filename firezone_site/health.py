"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def _check_channel_layer() -> dict[str, Any]:
    layer = get_channel_layer()
    if layer is None:
        return {"ok": False, "error": "no channel layer configured"}

    async def roundtrip() -> None:
        channel = await layer.new_channel("readyz.")
        token = uuid.uuid4().hex
        await layer.send(channel, {"type": "readyz", "token": token})
        message = await asyncio.wait_for(layer.receive(channel), timeout=2)
        if message.get("token") != token:
            raise RuntimeError("channel layer returned a different message")

    asyncio.run(roundtrip())
    return {"ok": True, "backend": type(layer).__name__}


def _check_broker() -> dict[str, Any]:
    from firezone_site.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return {"ok": True, "transport": app.conf.broker_url.split(":", 1)[0]}


def readyz(request: HttpRequest) -> JsonResponse:
    checks: dict[str, dict[str, Any]] = {}
    for name, check in (
        ("database", _check_database),
        ("channel_layer", _check_channel_layer),
        ("broker", _check_broker),
    ):
        started = time.monotonic()
        try:
            checks[name] = check()
        except Exception as exc:  # a probe reports any failure instead of raising
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        checks[name]["ms"] = round((time.monotonic() - started) * 1000, 1)
    ok = all(c["ok"] for c in checks.values())
    return JsonResponse(
        {
            "status": "ok" if ok else "unavailable",
            "checks": checks,
            "embedded": settings.FZ_EMBEDDED,
        },
        status=200 if ok else 503,
    )
