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


@shared_task(name="accounts.sync_directory")
def sync_directory(directory_id: str, only_if_due: bool = False) -> str:
    """One sync (or its resumption) of a pull directory; a no-op while another run holds it."""
    from accounts.directories import queries
    from accounts.directories import services as directory_services

    if only_if_due and not queries.is_due(directory_id):
        return "not_due"
    return directory_services.sync_directory(directory_id).status


@shared_task(name="accounts.schedule_directory_syncs")
def schedule_directory_syncs() -> int:
    """Queue a sync for every directory whose own interval (default 2 h) has passed."""
    from accounts.directories import queries

    due = queries.due_directories()
    for directory_id in due:
        sync_directory.delay(str(directory_id), only_if_due=True)
    return len(due)
