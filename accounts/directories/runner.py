"""Which directories are due, and one sync of one directory (what the Celery tasks call)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db.models import F, Q
from django.utils import timezone

from accounts.directories.adapters import adapter_for
from accounts.directories.adapters.http import RetryPolicy
from accounts.directories.engine import (
    Outcome,
    ProviderError,
    claim,
    current_run,
    record_failure,
    release,
    run_sync,
)
from accounts.models import Directory

PULLED = (Directory.Kind.GOOGLE, Directory.Kind.OKTA, Directory.Kind.ENTRA)


def due_directories(now: datetime | None = None) -> list[uuid.UUID]:
    """Enabled pull directories whose interval has passed (or that never synced), not leased."""
    now = now or timezone.now()
    qs = (
        Directory.objects.filter(kind__in=PULLED, disabled_at__isnull=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(last_synced_at__isnull=True) | Q(last_synced_at__lte=now - F("sync_interval")))
    )
    return list(qs.values_list("pk", flat=True))


def sync_directory(
    directory_id: uuid.UUID | str, *, retry: RetryPolicy | None = None, owner: str | None = None
) -> Outcome:
    directory = Directory.objects.filter(pk=directory_id, kind__in=PULLED).first()
    if directory is None:
        return Outcome(run=None, status="missing")
    try:
        adapter = adapter_for(directory, retry=retry)
    except ProviderError as exc:  # unusable settings: the same path as a 4xx from the provider
        owner = owner or uuid.uuid4().hex
        if not claim(directory, owner, now=timezone.now(), lease=timedelta(minutes=1)):
            return Outcome(run=None, status="busy")
        try:
            run = current_run(directory, timezone.now())
            return record_failure(directory, run, exc, timezone.now())
        finally:
            release(directory, owner)
    return run_sync(directory, adapter, owner=owner)
