"""Writes for directories: SCIM tokens, enabling/disabling, settings. Each is one transaction."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts import services
from accounts.models import Directory, Token
from accounts.services import IssuedToken
from firezone_site.errors import ValidationFailed
from firezone_site.events import AccessChanged, publish


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
    Directory.objects.for_account(directory.account_id).filter(pk=directory.pk).update(
        disabled_at=None if enabled else timezone.now(),
        failing_since=None,
        **({"last_error": ""} if enabled else {}),
    )
    if not enabled:
        publish(
            AccessChanged(
                account_id=directory.account_id, reason="directory_disabled", narrowed=False
            )
        )


@transaction.atomic
def update_directory(
    directory: Directory,
    *,
    sync_interval: timedelta | None = None,
    config: dict[str, object] | None = None,
) -> Directory:
    directory = Directory.objects.select_for_update().get(
        pk=directory.pk, account_id=directory.account_id
    )
    if sync_interval is not None:
        if not timedelta(minutes=5) <= sync_interval <= timedelta(days=7):
            raise ValidationFailed({"sync_interval": "Use between 5 minutes and 7 days."})
        directory.sync_interval = sync_interval
    if config is not None:
        directory.config = {**directory.config, **config}
    directory.save(update_fields=["sync_interval", "config"])
    return directory
