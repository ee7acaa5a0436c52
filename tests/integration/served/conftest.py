"""A real served portal: ``manage.py serve --no-worker`` (daphne with the production options) on a
free loopback port, against this process's test database and Redis channel-layer prefix."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """One plain HTTP/1.1 GET; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@dataclass
class ServedPortal:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None


def _wait_healthy(portal: ServedPortal, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not portal.alive():
            raise RuntimeError(f"serve exited with {portal.process.returncode}:\n{portal.log()}")
        with contextlib.suppress(OSError, IndexError, ValueError):
            if http_get(portal.port, "/healthz", timeout=2)[0] == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the portal did not answer /healthz within {timeout} s:\n{portal.log()}")


@contextlib.contextmanager
def serve_portal(
    tmp: Path,
    environment: dict[str, str] | None = None,
    *,
    serve_args: Sequence[str] = (),
    **overrides: str,
) -> Iterator[ServedPortal]:
    """``manage.py serve --no-worker [serve_args]``; by default on this process's test database
    and Redis prefix. ``environment`` replaces that environment entirely; ``overrides`` change
    it."""
    from django.db import connection

    if environment is None:
        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
        environment = {
            **os.environ,
            "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"],
            "FZ_VAR_DIR": str(tmp / "var"),
            "FZ_TESTING": "1",
            "DJANGO_SETTINGS_MODULE": "firezone_site.settings",
            "PYTHONPATH": str(REPO_ROOT),
        }
    env = {**environment, **overrides}
    port = free_port()
    log_path = tmp / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(port), *serve_args],
            cwd=str(REPO_ROOT), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    portal = ServedPortal(port, process, log_path)
    try:
        _wait_healthy(portal, timeout=60)
        yield portal
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # serve stops its daphne child
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@pytest.fixture(scope="module")
def served_portal(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedPortal]:
    with serve_portal(tmp_path_factory.mktemp("served")) as portal:
        yield portal


async def settled(external_id: str, timeout: float = 15.0) -> None:
    """Wait until the served portal has marked the gateway offline after its socket closed: its
    disconnect transaction must not overlap the test's database flush (TRUNCATE deadlocks)."""
    import asyncio

    from channels.db import database_sync_to_async

    from gateways.models import Gateway

    def offline() -> bool:
        return not Gateway.objects.filter(external_id=external_id, online=True).exists()

    deadline = time.monotonic() + timeout
    while not await database_sync_to_async(offline)():
        if time.monotonic() > deadline:
            raise AssertionError(f"the portal never marked {external_id} offline")
        await asyncio.sleep(0.05)
