"""Reads for directory sync. ``due_directories`` is the scheduler's one read across accounts (it
only yields ids; each sync then works inside its directory's account)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db.models import F, Q
from django.utils import timezone

from accounts.directories.models import SyncRun
from accounts.models import Account, Directory

PULLED = (Directory.Kind.GOOGLE, Directory.Kind.OKTA, Directory.Kind.ENTRA)


def _due(now: datetime) -> Any:
    return (
        Directory.objects.filter(kind__in=PULLED, disabled_at__isnull=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(last_synced_at__isnull=True) | Q(last_synced_at__lte=now - F("sync_interval")))
    )


def due_directories(now: datetime | None = None) -> list[uuid.UUID]:
    """Enabled pull directories whose interval has passed (or that never synced), not leased."""
    return list(_due(now or timezone.now()).values_list("pk", flat=True))


def is_due(directory_id: uuid.UUID | str, now: datetime | None = None) -> bool:
    return bool(_due(now or timezone.now()).filter(pk=directory_id).exists())


def directories(account: Account) -> list[Directory]:
    return list(Directory.objects.for_account(account).order_by("kind", "name"))


def get_directory(account: Account, directory_id: uuid.UUID | str) -> Directory | None:
    try:
        return Directory.objects.for_account(account).filter(pk=directory_id).first()
    except ValueError:  # not a UUID
        return None


def last_runs(directory: Directory, limit: int = 10) -> list[SyncRun]:
    return list(
        SyncRun.objects.for_account(directory.account_id)
        .filter(directory=directory)
        .order_by("-generation")[:limit]
    )
