"""The sync engine against an in-memory directory: upserts, deletions, circuit breaker, errors,
lease and resume."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from accounts import services
from accounts.directories import engine
from accounts.directories.engine import ProviderError, run_sync
from accounts.directories.models import SyncRun
from accounts.models import Account, Actor, Directory, Group, Identity, Membership
from firezone_site.errors import PermissionDenied

from .memory import MemoryDirectory

pytestmark = pytest.mark.django_db


def members(directory: Directory, group_provider_id: str) -> set[str]:
    group = Group.objects.get(directory=directory, provider_id=group_provider_id)
    return set(
        Identity.objects.filter(directory=directory, actor__memberships__group=group).values_list(
            "subject", flat=True
        )
    )


def synced_actors(directory: Directory) -> dict[str, Actor]:
    return {a.provider_id: a for a in Actor.objects.filter(directory=directory)}


def test_first_sync_creates_actors_groups_and_memberships(
    okta_dir: Directory, remote: MemoryDirectory, acme: Account
) -> None:
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "succeeded"
    actors = synced_actors(okta_dir)
    assert {k: (a.email, a.name) for k, a in actors.items()} == {
        "u1": ("ann@acme.test", "Ann"),
        "u2": ("ben@acme.test", "Ben"),
        "u3": ("cat@acme.test", "Cat"),
    }
    assert all(a.type == Actor.Type.USER and a.disabled_at is None for a in actors.values())
    groups = {g.provider_id: g for g in Group.objects.filter(directory=okta_dir)}
    assert {k: (g.name, g.kind) for k, g in groups.items()} == {
        "g1": ("Engineering", Group.Kind.SYNCED),
        "g2": ("Sales", Group.Kind.SYNCED),
    }
    assert members(okta_dir, "g1") == {"u1", "u2", "u3"}
    assert members(okta_dir, "g2") == {"u3"}
    everyone = services.everyone_group(acme)
    assert set(everyone.members.values_list("email", flat=True)) >= {
        "ann@acme.test",
        "ben@acme.test",
        "cat@acme.test",
    }
    assert outcome.run is not None
    assert outcome.run.stats["users_seen"] == 3
    assert outcome.run.stats["created"] == 3 + 2 + 4
    assert outcome.run.stats["deleted"] == 0
    okta_dir.refresh_from_db()
    assert okta_dir.last_synced_at is not None and okta_dir.last_error == ""
    # Pages were followed: 3 users at 2 per page is two user pages.
    assert [t for k, t in remote.calls if k == "users"] == [None, "2"]


def test_a_noop_resync_changes_nothing(okta_dir: Directory, remote: MemoryDirectory) -> None:
    run_sync(okta_dir, remote)
    before = set(Membership.objects.filter(group__directory=okta_dir).values_list("pk", flat=True))
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "succeeded"
    assert outcome.stats["created"] == 0 and outcome.stats["deleted"] == 0
    assert outcome.stats["updated"] == 0
    after = set(Membership.objects.filter(group__directory=okta_dir).values_list("pk", flat=True))
    assert before == after


def test_incremental_changes_are_applied(okta_dir: Directory, remote: MemoryDirectory) -> None:
    run_sync(okta_dir, remote)
    ann = synced_actors(okta_dir)["u1"]
    remote.user("u1", "ann.new@acme.test", "Ann Smith")
    remote.user("u4", "dan@acme.test", "Dan")
    remote.group("g1", "Platform", "u1", "u4")  # renamed; u2, u3 left; u4 joined
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "succeeded"
    actors = synced_actors(okta_dir)
    assert actors["u1"].pk == ann.pk  # the same actor, updated in place
    assert (actors["u1"].email, actors["u1"].name) == ("ann.new@acme.test", "Ann Smith")
    assert "u4" in actors
    assert Group.objects.get(directory=okta_dir, provider_id="g1").name == "Platform"
    assert members(okta_dir, "g1") == {"u1", "u4"}
    assert members(okta_dir, "g2") == {"u3"}
    assert outcome.stats["deleted"] == 2  # the two memberships of g1 that went


def test_what_the_run_did_not_see_is_deleted(okta_dir: Directory, remote: MemoryDirectory) -> None:
    run_sync(okta_dir, remote)
    del remote.users["u2"]
    remote.members["g1"].remove("u2")
    del remote.groups["g2"]
    del remote.members["g2"]
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "succeeded"
    assert set(synced_actors(okta_dir)) == {"u1", "u3"}
    assert not Identity.objects.filter(subject="u2").exists()
    assert set(Group.objects.filter(directory=okta_dir).values_list("provider_id", flat=True)) == {
        "g1"
    }
    assert members(okta_dir, "g1") == {"u1", "u3"}


def test_an_existing_actor_is_linked_by_email_and_never_deleted_by_the_directory(
    okta_dir: Directory, remote: MemoryDirectory, bob: Actor
) -> None:
    remote.user("ub", "BOB@acme.test", "Robert")
    remote.members["g1"].append("ub")
    run_sync(okta_dir, remote)
    identity = Identity.objects.get(directory=okta_dir, subject="ub")
    assert identity.actor_id == bob.pk
    bob.refresh_from_db()
    assert bob.directory_id is None and bob.name == "Bob"  # linked, not taken over
    assert "ub" in members(okta_dir, "g1")
    del remote.users["ub"]
    remote.members["g1"].remove("ub")
    run_sync(okta_dir, remote)
    assert Actor.objects.filter(pk=bob.pk).exists()
    assert "ub" not in members(okta_dir, "g1")


def test_a_sync_never_touches_another_account(
    okta_dir: Directory, remote: MemoryDirectory, charlie: Actor, globex: Account
) -> None:
    remote.user("uc", "charlie@globex.test", "Charlie in Acme's IdP")
    run_sync(okta_dir, remote)
    identity = Identity.objects.get(directory=okta_dir, subject="uc")
    assert identity.actor_id != charlie.pk
    assert identity.actor.account_id == okta_dir.account_id
    assert not Membership.objects.filter(account=globex, group__directory=okta_dir).exists()
    charlie.refresh_from_db()
    assert charlie.name == "Charlie"


def test_inactive_users_are_disabled_and_enabled_again(
    okta_dir: Directory, remote: MemoryDirectory
) -> None:
    run_sync(okta_dir, remote)
    remote.user("u2", "ben@acme.test", "Ben", active=False)
    run_sync(okta_dir, remote)
    assert synced_actors(okta_dir)["u2"].disabled_at is not None
    remote.user("u2", "ben@acme.test", "Ben", active=True)
    run_sync(okta_dir, remote)
    assert synced_actors(okta_dir)["u2"].disabled_at is None


def test_synced_groups_cannot_be_changed_by_hand(
    okta_dir: Directory, remote: MemoryDirectory, bob: Actor
) -> None:
    run_sync(okta_dir, remote)
    group = Group.objects.get(directory=okta_dir, provider_id="g1")
    with pytest.raises(PermissionDenied):
        services.add_member(group, bob)
    with pytest.raises(PermissionDenied):
        services.delete_group(group)
    # A hand-made group may share a directory group's name.
    assert services.create_group(group.account, name="Engineering").kind == Group.Kind.STATIC


# --- circuit breaker -------------------------------------------------------------------------


def test_a_first_sync_of_an_empty_directory_is_not_a_circuit_break(
    okta_dir: Directory,
) -> None:
    outcome = run_sync(okta_dir, MemoryDirectory())
    assert outcome.status == "succeeded"


def test_the_circuit_breaker_refuses_to_delete_every_user(
    okta_dir: Directory, remote: MemoryDirectory
) -> None:
    run_sync(okta_dir, remote)
    remote.users.clear()
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "aborted"
    assert "every user" in outcome.error
    assert set(synced_actors(okta_dir)) == {"u1", "u2", "u3"}
    assert members(okta_dir, "g1") == {"u1", "u2", "u3"}
    okta_dir.refresh_from_db()
    assert "circuit breaker" in okta_dir.last_error
    assert okta_dir.disabled_at is None
    assert SyncRun.objects.filter(directory=okta_dir).latest("generation").status == "aborted"


def test_the_circuit_breaker_refuses_to_delete_every_group(
    okta_dir: Directory, remote: MemoryDirectory
) -> None:
    run_sync(okta_dir, remote)
    remote.groups.clear()
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "aborted" and "every group" in outcome.error
    assert Group.objects.filter(directory=okta_dir).count() == 2
    # Once the provider answers again, the next run works.
    remote.group("g1", "Engineering", "u1")
    assert run_sync(okta_dir, remote).status == "succeeded"
    assert members(okta_dir, "g1") == {"u1"}


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_4xx_disables_the_directory_and_mails_the_admins(
    okta_dir: Directory,
    remote: MemoryDirectory,
    alice: Actor,
    bob: Actor,
    status: int,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    remote.fail[("groups", 1)] = ProviderError("Invalid token", status=status)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = run_sync(okta_dir, remote)
    assert outcome.status == "disabled"
    okta_dir.refresh_from_db()
    assert okta_dir.disabled_at is not None
    assert f"HTTP {status}" in okta_dir.last_error
    assert [m.to for m in mailoutbox] == [["alice@acme.test"]]  # admins only, not bob
    assert "Okta" in mailoutbox[0].subject and "Invalid token" in mailoutbox[0].body
    # A disabled directory does not run.
    assert run_sync(okta_dir, remote).status == "busy"


@pytest.mark.parametrize("status", [408, 429, 500, 503, None])
def test_a_transient_error_keeps_the_directory_and_the_next_run_resumes(
    okta_dir: Directory, remote: MemoryDirectory, status: int | None, mailoutbox: list[Any]
) -> None:
    remote.fail[("members", 2)] = ProviderError("Try later", status=status)
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "failed"
    okta_dir.refresh_from_db()
    assert okta_dir.disabled_at is None and okta_dir.failing_since is not None
    assert "Try later" in okta_dir.last_error
    assert mailoutbox == []
    calls_before = len(remote.calls)
    outcome = run_sync(okta_dir, remote)
    assert outcome.status == "succeeded"
    resumed = remote.calls[calls_before:]
    # Users and groups were not fetched again; the members phase went on at the page that failed
    # (g1's second page), then g2.
    assert resumed == [("members", "2"), ("members", None)]
    assert members(okta_dir, "g1") == {"u1", "u2", "u3"}
    assert members(okta_dir, "g2") == {"u3"}
    okta_dir.refresh_from_db()
    assert okta_dir.failing_since is None and okta_dir.last_error == ""
    assert SyncRun.objects.filter(directory=okta_dir).count() == 1


def test_transient_errors_for_24_hours_disable_the_directory(
    okta_dir: Directory, remote: MemoryDirectory, alice: Actor
) -> None:
    start = timezone.now()
    remote.fail[("users", 1)] = ProviderError("down", status=503)
    assert run_sync(okta_dir, remote, now=lambda: start).status == "failed"
    remote.fail[("users", 2)] = ProviderError("down", status=503)
    later = start + timedelta(hours=23)
    assert run_sync(okta_dir, remote, now=lambda: later).status == "failed"
    remote.fail[("users", 3)] = ProviderError("down", status=503)
    day = start + timedelta(hours=24, minutes=1)
    assert run_sync(okta_dir, remote, now=lambda: day).status == "disabled"
    okta_dir.refresh_from_db()
    assert okta_dir.disabled_at is not None


# --- lease -----------------------------------------------------------------------------------


def test_never_two_runs_at_once_but_a_crashed_runs_lease_runs_out(
    okta_dir: Directory, remote: MemoryDirectory
) -> None:
    now = timezone.now()
    assert engine.claim(okta_dir, "worker-a", now=now, lease=timedelta(minutes=10))
    assert run_sync(okta_dir, remote, owner="worker-b").status == "busy"
    assert remote.calls == []
    # worker-a dies without releasing; once its lease is over, another worker runs.
    later = now + timedelta(minutes=11)
    assert run_sync(okta_dir, remote, owner="worker-b", now=lambda: later).status == "succeeded"


def test_a_run_that_lost_its_lease_stops_writing(
    okta_dir: Directory, remote: MemoryDirectory
) -> None:
    class Stealing(MemoryDirectory):
        def groups_page(self, token: str | None) -> engine.Page[engine.RemoteGroup]:
            Directory.objects.filter(pk=okta_dir.pk).update(lease_owner="thief")
            return super().groups_page(token)

    thief = Stealing(users=remote.users, groups=remote.groups, members=remote.members)
    outcome = run_sync(okta_dir, thief)
    assert outcome.status == "lease_lost"
    assert not Group.objects.filter(directory=okta_dir).exists()
