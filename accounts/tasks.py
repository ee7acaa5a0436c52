"""Celery tasks of the accounts app: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from accounts import services


@shared_task(name="accounts.delete_expired_tokens")
def delete_expired_tokens() -> int:
    """Delete tokens a day past their expiry, revocation or rotation grace period."""
    return services.delete_expired_tokens()


@shared_task(name="accounts.delete_expired_sign_in_codes")
def delete_expired_sign_in_codes() -> int:
    """Delete one-time codes a day past their expiry."""
    from accounts.signin import services as signin_services

    return signin_services.delete_expired_codes()
