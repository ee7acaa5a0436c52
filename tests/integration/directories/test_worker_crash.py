"""A Celery worker killed mid-sync leaves a consistent state; the next run resumes and completes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connection

from accounts import services
from accounts import tasks as account_tasks
from accounts.directories import services as directory_services
from accounts.directories.adapters.http import RetryPolicy
from accounts.directories.models import SyncRun
from accounts.models import Account, Group, Identity, Membership

from .conftest import vendor_config
from .fakes import FakeState, _offset

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[3]
LEASE_S = 2


def start_worker(queue: str) -> subprocess.Popen[bytes]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "firezone_site.settings",
        "FZ_DIRECTORY_SYNC_LEASE_S": str(LEASE_S),
    }
    return subprocess.Popen(
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


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_worker_killed_mid_sync_leaves_a_consistent_state_and_the_next_run_completes(
    acme: Account,
    fake: tuple[FakeState, str],
    google_keys: tuple[str, str],
    okta_keys: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs the Redis broker")
    state, base = fake
    for i in range(40):
        state.data.user(f"x{i:02d}", f"user{i:02d}@acme.test", f"User {i:02d}")
    state.data.group("g4", "Big", *[f"x{i:02d}" for i in range(40)])
    state.delay_s = 0.15  # each page takes a while, so the kill lands mid-run
    directory = services.create_directory(acme, name="Entra", kind="entra")
    directory = directory_services.update_directory(
        directory, config=vendor_config("entra", base, google_keys, okta_keys)
    )
    queue = f"fztest-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    worker = start_worker(queue)
    try:
        account_tasks.sync_directory.apply_async((str(directory.pk),), queue=queue)
        # Kill it while the users phase is half done.
        # A worker starting on a loaded machine can take a while; the kill must still land mid-run.
        wait_for(lambda: Identity.objects.filter(directory=directory).count() >= 10, timeout=180)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=10)

    # Consistent: every committed page is whole and the cursor points just past the last one.
    run = SyncRun.objects.get(directory=directory)
    assert run.status == SyncRun.Status.RUNNING and run.phase == "users"
    seen = Identity.objects.filter(directory=directory).count()
    skiptoken = parse_qs(urlsplit(run.cursor["token"]).query)["$skiptoken"][0]
    assert seen == _offset(skiptoken) and seen % 2 == 0
    directory.refresh_from_db()
    assert directory.last_synced_at is None and directory.lease_owner != ""
    assert not Group.objects.filter(directory=directory).exists()

    # The dead worker's lease holds the directory until it runs out; then a run resumes it.
    state.delay_s = 0
    quick = RetryPolicy(base_delay=0.01)
    assert directory_services.sync_directory(directory.pk, retry=quick).status == "busy"
    time.sleep(LEASE_S + 0.5)
    before = len(state.requests("/graph/v1.0/users"))
    monkeypatch.setattr(settings, "FZ_DIRECTORY_SYNC_LEASE_S", 60)
    outcome = directory_services.sync_directory(directory.pk, retry=quick)
    assert outcome.status == "succeeded", outcome.error
    resumed = state.requests("/graph/v1.0/users")[before:]
    total_pages = (5 + 40 + 1) // 2
    assert len(resumed) == total_pages - seen // 2  # the committed pages were not fetched again
    assert SyncRun.objects.filter(directory=directory).count() == 1
    assert Identity.objects.filter(directory=directory).count() == 45
    big = Group.objects.get(directory=directory, provider_id="g4")
    assert Membership.objects.filter(group=big).count() == 40
