"""Celery tasks, run as plain functions (they are thin wrappers around services)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts import services as account_services
from accounts import tasks as account_tasks
from accounts.models import Account, Token
from gateways import services
from gateways import tasks as gateway_tasks
from gateways.models import Gateway, Site
from policies import tasks as policy_tasks

from .conftest import db, open_gateway

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_beat_schedule_names_existing_tasks() -> None:
    from firezone_site.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_expire_authorizations_task_runs_and_is_idempotent(acme: Account) -> None:
    assert policy_tasks.expire_authorizations() == 0
    assert policy_tasks.expire_authorizations() == 0


def test_delete_expired_tokens_task_deletes_old_revoked_tokens(acme: Account, site: Site) -> None:
    issued = services.issue_gateway_token(site)
    keep = services.issue_gateway_token(site)
    account_services.revoke_token(issued.token)
    Token.objects.filter(pk=issued.token.pk).update(revoked_at=timezone.now() - timedelta(days=2))
    assert account_tasks.delete_expired_tokens() == 1
    assert not Token.objects.for_account(acme).filter(pk=issued.token.pk).exists()
    assert Token.objects.for_account(acme).filter(pk=keep.token.pk).exists()


def test_rotation_task_leaves_tokens_nobody_is_connected_with(acme: Account, site: Site) -> None:
    issued = services.issue_gateway_token(site)
    Token.objects.filter(pk=issued.token.pk).update(created_at=timezone.now() - timedelta(days=60))
    assert gateway_tasks.rotate_gateway_tokens() == 0
    assert Token.objects.for_account(acme).get(pk=issued.token.pk).replaced_by_id is None


async def test_the_sweep_marks_gateways_of_a_dead_portal_offline(acme: Account, token: str) -> None:
    gateway, init = await open_gateway(token)
    assert init is not None
    assert await db(gateway_tasks.sweep_stale_gateways)() == 0  # fresh heartbeat
    await db(
        lambda: Gateway.objects.filter(pk=init["gateway_id"]).update(
            last_seen_at=timezone.now() - timedelta(minutes=10)
        )
    )()
    assert await db(gateway_tasks.sweep_stale_gateways)() == 1
    row = await db(lambda: Gateway.objects.for_account(acme).get())()
    assert not row.online and row.channel_name == ""
    await gateway.disconnect()


def test_resync_task_runs(acme: Account, bob: object) -> None:
    assert gateway_tasks.resync_static_devices() == 0
