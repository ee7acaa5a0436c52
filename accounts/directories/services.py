"""Writes for directories: SCIM tokens, enabling/disabling, settings. Each is one transaction."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts import services
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
from accounts.directories.queries import PULLED
from accounts.models import Account, Directory, Token
from accounts.services import IssuedToken
from accounts.signin import crypto
from firezone_site.errors import ValidationFailed, clean_name

SECRETS = ("private_key", "client_secret")


@transaction.atomic
def issue_scim_token(directory: Directory) -> IssuedToken:
    """Issue (or rotate) the directory's SCIM bearer token: the previous one stops at once."""
    directory = Directory.objects.select_for_update().get(
        pk=directory.pk, account_id=directory.account_id
    )
    if directory.kind != Directory.Kind.SCIM:
        raise ValidationFailed({"kind": "Only SCIM directories have a SCIM token."})
    issued = services.create_token(
        directory.account, kind=Token.Kind.SCIM, name=f"SCIM {directory.name}"[:255]
    )
    previous = directory.scim_token_id
    directory.scim_token = issued.token
    directory.save(update_fields=["scim_token"])
    if previous is not None:
        Token.objects.filter(pk=previous, account_id=directory.account_id).update(
            revoked_at=timezone.now()
        )
    return issued


@transaction.atomic
def set_directory_enabled(directory: Directory, *, enabled: bool) -> None:
    """Enable (clearing the last error, so the next beat tick syncs it) or disable a directory.
    Disabling stops syncing only: what it synced stays until the directory is deleted."""
    Directory.objects.for_account(directory.account_id).filter(pk=directory.pk).update(
        disabled_at=None if enabled else timezone.now(),
        failing_since=None,
        **({"last_error": ""} if enabled else {}),
    )


@transaction.atomic
def update_directory(
    directory: Directory,
    *,
    name: str | None = None,
    sync_interval: timedelta | None = None,
    config: dict[str, object] | None = None,
) -> Directory:
    directory = Directory.objects.select_for_update().get(
        pk=directory.pk, account_id=directory.account_id
    )
    if name is not None:
        name = clean_name(name)
        taken = Directory.objects.for_account(directory.account_id).filter(name=name)
        if taken.exclude(pk=directory.pk).exists():
            raise ValidationFailed({"name": "A directory with this name already exists."})
        directory.name = name
    if sync_interval is not None:
        if not timedelta(minutes=5) <= sync_interval <= timedelta(days=7):
            raise ValidationFailed({"sync_interval": "Use between 5 minutes and 7 days."})
        directory.sync_interval = sync_interval
    if config is not None:
        # Credentials are encrypted at rest (the sign-in's key derivation) and never shown again.
        merged = {**directory.config, **{k: v for k, v in config.items() if k not in SECRETS}}
        stored = dict(directory.config.get("secrets") or {})
        for name in SECRETS:
            value = config.get(name)
            if isinstance(value, str) and value:
                stored[name] = crypto.encrypt(value)
        merged["secrets"] = stored
        directory.config = merged
    directory.save(update_fields=["name", "sync_interval", "config"])
    return directory


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
    lease = timedelta(seconds=settings.FZ_DIRECTORY_SYNC_LEASE_S)
    return run_sync(directory, adapter, owner=owner, lease=lease)


@transaction.atomic
def create_directory(
    account: Account,
    *,
    name: str,
    kind: str,
    sync_interval: timedelta = timedelta(hours=2),
    config: dict[str, object] | None = None,
) -> Directory:
    directory = services.create_directory(account, name=name, kind=kind)
    return update_directory(directory, sync_interval=sync_interval, config=config or {})


def request_sync(directory: Directory) -> None:
    """ "Sync now": queue the directory's sync once the current transaction commits."""
    from accounts import tasks

    if directory.kind not in PULLED:
        raise ValidationFailed({"kind": "SCIM directories are pushed to, not pulled."})
    if directory.disabled_at is not None:
        raise ValidationFailed({"disabled_at": "Enable the directory first."})
    directory_id = str(directory.pk)
    transaction.on_commit(lambda: tasks.sync_directory.delay(directory_id))
