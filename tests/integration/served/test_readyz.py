"""/readyz on a real served portal: names and ok/fail only, fast (< 50 ms) while gateways are
connected, and 503 when a dependency is down (issue 17 point 6, issue 19 part 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect

from accounts.models import Account
from gateways import services

from .conftest import REPO_ROOT, ServedPortal, free_port, http_get, serve_portal, settled

pytestmark = pytest.mark.django_db(transaction=True)

ALL_OK = {"database": "ok", "channel_layer": "ok", "broker": "ok"}


async def open_gateway(portal: ServedPortal, secret: str) -> ClientConnection:
    query = urlencode(
        {
            "external_id": "gw-ready",
            "name": "gw-ready",
            "public_key": services.generate_key_pair()[1],
            "version": "0.1.0",
            "protocol": "1",
        }
    )
    ws = await connect(
        f"{portal.ws_url}/gateway/websocket?{query}",
        additional_headers={"Authorization": f"Bearer {secret}"},
        ping_interval=None,
        open_timeout=10,
    )
    assert json.loads(await ws.recv())["type"] == "init"
    return ws


def timed_readyz(port: int, times: int = 5) -> list[tuple[float, int, dict[str, Any]]]:
    out = []
    for _ in range(times):
        started = time.monotonic()
        status, body = http_get(port, "/readyz")
        out.append(((time.monotonic() - started) * 1000, status, json.loads(body)))
    return out


def assert_fast_and_ok(results: list[tuple[float, int, dict[str, Any]]]) -> None:
    for _ms, status, body in results:
        assert status == 200, body
        assert body == {"status": "ok", "checks": ALL_OK}
    times = sorted(ms for ms, _, _ in results)
    # Typically 5-15 ms; the minimum must be under 50 ms (it was ~2,000 ms), and no call may come
    # near a load balancer's 1 s probe timeout even on a loaded machine.
    assert times[0] < 50, times
    assert times[-1] < 1000, times


async def test_readyz_is_fast_while_a_gateway_is_connected(
    served_portal: ServedPortal, acme: Account
) -> None:
    _site, issued = await database_sync_to_async(services.create_site_with_token)(acme, name="R")
    ws = await open_gateway(served_portal, issued.secret)
    try:
        assert_fast_and_ok(timed_readyz(served_portal.port))
        # And the gateway's socket still works (the check did not disturb the shared layer).
        await ws.send('{"type":"heartbeat"}')
        assert json.loads(await ws.recv())["type"] == "heartbeat_reply"
    finally:
        await ws.close()
    await settled("gw-ready")


def embedded_env(var: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FZ_TESTING"}
    }
    env.update(FZ_VAR_DIR=str(var), PYTHONPATH=str(REPO_ROOT))
    return env


async def test_readyz_is_fast_on_the_embedded_default_with_a_gateway_connected(
    tmp_path: Path,
) -> None:
    env = embedded_env(tmp_path / "var")
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    script = (
        "from accounts import services as a; from gateways import services as g;"
        "acct = a.create_account(name='E', slug='e');"
        "print(g.create_site_with_token(acct, name='S')[1].secret)"
    )
    made = subprocess.run([*manage, "shell", "-c", script], cwd=REPO_ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    secret = made.stdout.strip().splitlines()[-1]
    with serve_portal(tmp_path, env) as portal:
        ws = await open_gateway(portal, secret)
        try:
            assert_fast_and_ok(timed_readyz(portal.port))
        finally:
            await ws.close()


@pytest.mark.parametrize(
    ("variable", "broken"),
    [
        ("REDIS_URL", {"channel_layer", "broker"}),
        ("DATABASE_URL", {"database"}),
    ],
)
def test_readyz_is_503_naming_only_the_failed_checks_and_logs_why(
    tmp_path: Path, variable: str, broken: set[str]
) -> None:
    closed = free_port()  # nothing listens there
    url = {
        "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed}/test",
    }[variable]
    with serve_portal(tmp_path, **{variable: url}) as portal:
        started = time.monotonic()
        status, raw = http_get(portal.port, "/readyz")
        elapsed = time.monotonic() - started
        body = json.loads(raw)
        assert status == 503
        assert body == {
            "status": "unavailable",
            "checks": {name: "fail" if name in broken else "ok" for name in ALL_OK},
        }
        assert elapsed < 5, elapsed  # each check gives up after about 1 s
        # The detail is in the log, not in the anonymous answer.
        text = raw.decode()
        for leak in ("Error", "refused", str(closed), "127.0.0.1"):
            assert leak not in text
        deadline = time.monotonic() + 5
        while "readiness check" not in portal.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        for name in broken:
            assert f"readiness check {name} failed" in portal.log()
