"""One task through a real Celery worker process (Redis broker, the test database)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from accounts.models import Account, Actor
from gateways.models import Authorization
from gateways.tasks import expire_authorizations

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]


def test_a_worker_expires_authorizations(acme: Account, bob: Actor) -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs the Redis broker")
    past = Authorization.objects.create(
        account=acme,
        actor=bob,
        actor_email=bob.email,
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    current = Authorization.objects.create(
        account=acme, actor=bob, expires_at=timezone.now() + timedelta(hours=1)
    )
    queue = f"fztest-{os.getpid()}-{uuid.uuid4().hex[:8]}"  # no other worker consumes it
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "firezone_site.settings",
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "firezone_site",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        expire_authorizations.apply_async(queue=queue)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            past.refresh_from_db()
            if past.revoked_at is not None:
                break
            time.sleep(0.2)
        assert past.revoked_at is not None, "the worker did not run the task"
        assert past.revoke_reason == "expired"
        current.refresh_from_db()
        assert current.revoked_at is None
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        # kombu keeps the queue's bindings in Redis; a per-run queue must not leave them behind.
        import redis

        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        for key in client.scan_iter(match=f"*{queue}*"):
            client.delete(key)
        client.delete(queue)
