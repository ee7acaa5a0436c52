"""Celery tasks of the gateways app: thin wrappers around services (idempotent, safe to repeat)."""

from __future__ import annotations

import logging
import uuid
from functools import cache

import redis
from celery import shared_task
from django.conf import settings

from gateways import queries, services

log = logging.getLogger(__name__)

#: A queued account recomputation older than this no longer blocks a new one (a lost task,
#: a killed worker); the periodic resync covers the gap meanwhile.
PENDING_TTL_S = 600


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _pending_key(account_id: uuid.UUID) -> str:
    return f"fz:static-sync:{settings.CELERY_TASK_DEFAULT_QUEUE}:{account_id.hex}"


def _mark_pending(account_id: uuid.UUID) -> bool:
    """True if no recomputation of this account is queued yet (and mark one queued)."""
    if not settings.REDIS_URL:  # embedded mode: no shared store, every request enqueues
        return True
    try:
        return bool(
            _redis(settings.REDIS_URL).set(_pending_key(account_id), 1, nx=True, ex=PENDING_TTL_S)
        )
    except redis.RedisError:
        return True  # better a duplicate run than none


def _clear_pending(account_id: uuid.UUID) -> None:
    if settings.REDIS_URL:
        try:
            _redis(settings.REDIS_URL).delete(_pending_key(account_id))
        except redis.RedisError:
            log.warning("could not clear the static-sync marker of account %s", account_id)


def request_static_sync(account_id: uuid.UUID) -> None:
    """Recompute every static device of the account in the background, once per burst of
    changes: while a run is queued and not started, further requests add nothing (the run
    reads the state when it starts). Called after the commit (event handlers)."""
    if not _mark_pending(account_id):
        return
    try:
        sync_account_static_devices.delay(str(account_id))
    except Exception:  # broker down: the next change or the periodic resync catches up
        _clear_pending(account_id)
        log.exception("could not enqueue the static-device sync of account %s", account_id)


@shared_task(name="gateways.sync_account_static_devices")
def sync_account_static_devices(account_id: str) -> int:
    """Bring every static device of the account in line with its policies (configs, gateway
    peers); returns how many changed. The marker is cleared first, so a change committed while
    this runs queues another run."""
    account = uuid.UUID(account_id)
    _clear_pending(account)
    return services.sync_static_devices(
        account, queries.affected_static_devices(account, everything=True)
    )


@shared_task(name="gateways.rotate_gateway_tokens")
def rotate_gateway_tokens() -> int:
    """Rotate gateway tokens older than 30 days that connected gateways use (4 h grace)."""
    return services.rotate_gateway_tokens()


@shared_task(name="gateways.sweep_stale_gateways")
def sweep_stale_gateways() -> int:
    """Mark gateways offline whose portal process died without closing their sockets."""
    return services.sweep_stale_gateways()


@shared_task(name="gateways.remove_offline_gateways")
def remove_offline_gateways() -> int:
    """Delete gateways offline longer than FZ_GATEWAY_RETENTION_DAYS (their addresses freed)."""
    return services.remove_offline_gateways()


@shared_task(name="gateways.resync_static_devices")
def resync_static_devices() -> int:
    """Re-evaluate every static device's policies now (time-window conditions change access
    without any event; a recomputation whose task was lost). Gateways that missed a push are
    not this job's business: their state digest brings them in line with the database."""
    return services.resync_all_static_devices()


@shared_task(name="gateways.expire_authorizations")
def expire_authorizations() -> int:
    """Revoke authorizations past their expiry (reason "expired"); gateways get reject_access."""
    return services.expire_authorizations()
