"""Celery tasks of the accounts app: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(name="accounts.delete_expired_tokens")
def delete_expired_tokens() -> int:
    """Delete tokens a day past their expiry, revocation or rotation grace period."""
    return services.delete_expired_tokens()
