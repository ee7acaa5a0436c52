"""Celery tasks of the gateways app: thin wrappers around services (idempotent, safe to repeat)."""

from __future__ import annotations

from celery import shared_task

from gateways import services


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
    """Recompute every static device (time-window policies, missed events)."""
    return services.resync_all_static_devices()


@shared_task(name="gateways.expire_authorizations")
def expire_authorizations() -> int:
    """Revoke authorizations past their expiry (reason "expired"); gateways get reject_access."""
    return services.expire_authorizations()
