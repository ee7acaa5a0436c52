"""Celery tasks, run as plain functions (they are thin wrappers around services)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from accounts import services as account_services
from accounts import tasks as account_tasks
from accounts.models import Account, Actor, Token
from gateways import services
from gateways import tasks as gateway_tasks
from gateways.models import Authorization, Gateway, StaticDeviceAssignment
from policies.models import Site

from .conftest import authorize, db, new_key, open_gateway, setup_access

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_beat_schedule_names_existing_tasks() -> None:
    from firezone_site.celery import app

    app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in app.tasks, entry["task"]


def test_expire_authorizations_task_revokes_only_due_ones_and_is_idempotent(
    acme: Account, site: Site, bob: Actor
) -> None:
    _, _, policy = setup_access(acme, site, bob)
    due = authorize(policy, bob, None)
    current = authorize(policy, bob, None)
    Authorization.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert gateway_tasks.expire_authorizations() == 1
    assert gateway_tasks.expire_authorizations() == 0
    revoked = Authorization.objects.for_account(acme).filter(revoked_at__isnull=False)
    assert list(revoked.values_list("pk", "revoke_reason")) == [(due.pk, "expired")]
    assert Authorization.objects.get(pk=current.pk).revoked_at is None


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


def test_resync_task_restores_a_lost_assignment_and_then_changes_nothing(
    acme: Account, site: Site, bob: Actor, token: str
) -> None:
    gateway = services.connect_gateway(
        secret=token,
        params=services.GatewayParams(
            external_id="gw-1", name="gw-1", public_key=new_key(), version="0.1.0"
        ),
        remote_ip="203.0.113.7",
        channel_name="test.resync!1",
    )
    setup_access(acme, site, bob)
    device = services.register_static_device(bob, name="phone").device
    assert gateway_tasks.resync_static_devices() == 0  # already in line
    StaticDeviceAssignment.objects.filter(device=device).delete()
    assert gateway_tasks.resync_static_devices() == 1
    restored = StaticDeviceAssignment.objects.get(device=device)
    assert (restored.site_id, restored.gateway_id) == (site.pk, gateway.pk)
    assert gateway_tasks.resync_static_devices() == 0
