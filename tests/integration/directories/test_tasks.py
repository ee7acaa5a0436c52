"""Which directories beat queues, and the sync task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from accounts import services
from accounts import tasks as account_tasks
from accounts.directories import queries
from accounts.directories import services as directory_services
from accounts.models import Account, Directory

from .conftest import vendor_config
from .fakes import FakeState

pytestmark = pytest.mark.django_db


def test_beat_queues_the_directories_that_are_due_on_their_own_interval(
    acme: Account, globex: Account
) -> None:
    now = timezone.now()
    never = services.create_directory(acme, name="never", kind="okta")
    overdue = services.create_directory(globex, name="overdue", kind="google")
    recent = services.create_directory(acme, name="recent", kind="entra")
    slow = services.create_directory(acme, name="slow", kind="entra")
    disabled = services.create_directory(acme, name="off", kind="okta")
    leased = services.create_directory(acme, name="leased", kind="okta")
    scim = services.create_directory(acme, name="scim", kind="scim")
    Directory.objects.filter(pk=overdue.pk).update(
        last_synced_at=now - timedelta(hours=2, seconds=1)
    )
    Directory.objects.filter(pk=recent.pk).update(last_synced_at=now - timedelta(minutes=30))
    Directory.objects.filter(pk=slow.pk).update(
        last_synced_at=now - timedelta(hours=3), sync_interval=timedelta(hours=6)
    )
    directory_services.set_directory_enabled(disabled, enabled=False)
    Directory.objects.filter(pk=leased.pk).update(
        lease_owner="w", lease_until=now + timedelta(minutes=5)
    )
    assert set(queries.due_directories(now)) == {never.pk, overdue.pk}
    assert queries.is_due(never.pk, now) and not queries.is_due(recent.pk, now)
    assert scim.pk not in queries.due_directories(now)


def test_the_sync_task_syncs_and_skips_what_is_not_due(
    acme: Account,
    fake: tuple[FakeState, str],
    google_keys: tuple[str, str],
    okta_keys: tuple[str, str],
) -> None:
    directory = services.create_directory(acme, name="Okta", kind="okta")
    directory_services.update_directory(
        directory, config=vendor_config("okta", fake[1], google_keys, okta_keys)
    )
    assert account_tasks.sync_directory(str(directory.pk), only_if_due=True) == "succeeded"
    assert account_tasks.sync_directory(str(directory.pk), only_if_due=True) == "not_due"
    assert account_tasks.sync_directory(str(directory.pk)) == "succeeded"  # "sync now"


def test_schedule_task_is_in_beat() -> None:
    tasks: list[Any] = [e["task"] for e in settings.CELERY_BEAT_SCHEDULE.values()]
    assert "accounts.schedule_directory_syncs" in tasks
