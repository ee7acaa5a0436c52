"""Celery tasks of the policies app: thin wrappers around services."""

from __future__ import annotations

from celery import shared_task

from gateways import services as gateway_services


@shared_task(name="policies.expire_authorizations")
def expire_authorizations() -> int:
    """Revoke authorizations past their expiry (reason "expired"); gateways get reject_access."""
    return gateway_services.expire_authorizations()
