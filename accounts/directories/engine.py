"""The directory sync engine: one engine above every pull adapter.

Theory of operation. A run has a *generation* (the directory's counter, plus one). It walks three
phases, each a sequence of pages fetched from the adapter: users, groups, then the members of every
group the run saw. Every page is upserted in bulk in its own transaction, which stamps the rows it
saw (identities, groups, memberships) with the generation and stores the resume cursor (phase and
vendor page token) with them: a worker killed mid-page loses that page's transaction and nothing
else, and the next run picks up the unfinished run at its cursor. The *sweep* then deletes, in one
transaction, what carries an older generation: memberships first, then identities (and the actors
the directory created for them), then groups. The circuit breaker refuses a sweep that would
delete every user or every group (except on a first sync).

Only one run per directory at a time: a run holds a lease on the directory row (a conditional
UPDATE claims it, every page renews it); a crashed worker's lease runs out and the next run takes
over. Errors: a 4xx from the provider (except 408/429) disables the directory at once and mails the
account's admins; other failures leave the run resumable and disable the directory only after
24 hours of failing.

Access: membership additions publish a widening event per page; the sweep publishes narrowing
events, which the gateways layer turns into revocations of the flows that lost their policy.
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from django.conf import settings
from django.core.mail import send_mail
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from accounts import hooks, services
from accounts.directories.models import SyncRun
from accounts.models import Actor, Directory, Group, Identity, Membership
from firezone_site.errors import ValidationFailed
from firezone_site.events import AccessChanged, publish

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_LEASE = timedelta(minutes=10)
FAILING_DISABLES_AFTER = timedelta(hours=24)
MEMBER_BATCH = 5000


@dataclass(frozen=True, slots=True)
class RemoteUser:
    id: str
    email: str
    name: str
    active: bool = True


@dataclass(frozen=True, slots=True)
class RemoteGroup:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_token: str | None = None


class Adapter(Protocol):
    """What the engine needs from a provider: pages of users, groups and a group's member ids."""

    issuer: str

    def users_page(self, token: str | None) -> Page[RemoteUser]: ...

    def groups_page(self, token: str | None) -> Page[RemoteGroup]: ...

    def members_page(self, group_id: str, token: str | None) -> Page[str]: ...


class ProviderError(Exception):
    """The provider answered with an error (``status``) or could not be reached (None)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        return (
            self.status is not None and 400 <= self.status < 500 and self.status not in (408, 429)
        )


class LeaseLost(Exception):
    """Another run took the directory over (ours had run out): stop without writing more."""


@dataclass
class Outcome:
    run: SyncRun | None
    status: str
    error: str = ""
    stats: dict[str, int] = field(default_factory=dict)


# --- lease -------------------------------------------------------------------------------------


def claim(directory: Directory, owner: str, *, now: datetime, lease: timedelta) -> bool:
    claimed = (
        Directory.objects.for_account(directory.account_id)
        .filter(pk=directory.pk, disabled_at__isnull=True)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner))
        .update(lease_owner=owner, lease_until=now + lease)
    )
    return claimed == 1


def _renew(directory: Directory, owner: str, lease: timedelta) -> None:
    renewed = (
        Directory.objects.for_account(directory.account_id)
        .filter(pk=directory.pk, lease_owner=owner)
        .update(lease_until=timezone.now() + lease)
    )
    if renewed != 1:
        raise LeaseLost(str(directory.pk))


def release(directory: Directory, owner: str) -> None:
    Directory.objects.for_account(directory.account_id).filter(
        pk=directory.pk, lease_owner=owner
    ).update(lease_owner="", lease_until=None)


# --- the run -----------------------------------------------------------------------------------


def issuer_for(directory: Directory) -> str:
    return f"directory:{directory.pk}"


def current_run(directory: Directory, now: datetime) -> SyncRun:
    with transaction.atomic():
        run = (
            SyncRun.objects.for_account(directory.account_id)
            .filter(directory=directory, status=SyncRun.Status.RUNNING)
            .order_by("-generation")
            .first()
        )
        if run is not None:
            return run
        locked = (
            Directory.objects.for_account(directory.account_id)
            .select_for_update()
            .get(pk=directory.pk)
        )
        locked.sync_generation += 1
        locked.save(update_fields=["sync_generation"])
        directory.sync_generation = locked.sync_generation
        return SyncRun.objects.for_account(directory.account_id).create(
            account_id=directory.account_id,
            directory=directory,
            generation=locked.sync_generation,
            started_at=now,
            heartbeat_at=now,
            stats={},
        )


def run_sync(
    directory: Directory,
    adapter: Adapter,
    *,
    owner: str | None = None,
    lease: timedelta = DEFAULT_LEASE,
    now: Callable[[], datetime] = timezone.now,
) -> Outcome:
    """Run (or resume) one sync of ``directory`` from ``adapter``. Never two at once."""
    owner = owner or uuid.uuid4().hex
    if not claim(directory, owner, now=now(), lease=lease):
        return Outcome(run=None, status="busy")
    try:
        run = current_run(directory, now())
        sync = _Sync(directory, adapter, run, owner, lease)
        try:
            sync.walk()
            return sync.sweep(now())
        except ProviderError as exc:
            return record_failure(directory, run, exc, now())
        except LeaseLost:
            return Outcome(run=run, status="lease_lost")
    finally:
        release(directory, owner)


def record_failure(
    directory: Directory, run: SyncRun, exc: ProviderError, now: datetime
) -> Outcome:
    message = f"{exc} (HTTP {exc.status})" if exc.status else str(exc)
    with transaction.atomic():
        locked = (
            Directory.objects.for_account(directory.account_id)
            .select_for_update()
            .get(pk=directory.pk)
        )
        failing_since = locked.failing_since or now
        disable = exc.permanent or now - failing_since >= FAILING_DISABLES_AFTER
        locked.last_error = message
        locked.failing_since = failing_since
        fields = ["last_error", "failing_since"]
        if disable:
            locked.disabled_at = now
            fields.append("disabled_at")
        locked.save(update_fields=fields)
        SyncRun.objects.for_account(directory.account_id).filter(pk=run.pk).update(
            error=message,
            # A transient failure leaves the run resumable; a disabling one ends it.
            status=SyncRun.Status.FAILED if disable else SyncRun.Status.RUNNING,
            finished_at=now if disable else None,
        )
        if disable:
            _notify_admins(locked, message)
    directory.refresh_from_db()
    run.refresh_from_db()
    return Outcome(run=run, status="disabled" if disable else "failed", error=message)


def _notify_admins(directory: Directory, message: str) -> None:
    emails = list(
        Actor.objects.for_account(directory.account_id)
        .filter(type=Actor.Type.ADMIN, disabled_at__isnull=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
    if not emails:
        return
    subject = f"Directory sync disabled: {directory.name}"
    body = (
        f"The directory {directory.name!r} was disabled after a sync error:\n\n{message}\n\n"
        "Fix its settings or the provider's permissions, then enable it again on its page."
    )

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, emails)
        except Exception:  # a mail server that is down must not undo the disabling
            log.exception("could not mail the admins about directory %s", directory.pk)

    transaction.on_commit(send)


def _count(stats: dict[str, int], **add: int) -> None:
    for key, value in add.items():
        stats[key] = stats.get(key, 0) + value


class _Sync:
    def __init__(
        self, directory: Directory, adapter: Adapter, run: SyncRun, owner: str, lease: timedelta
    ) -> None:
        self.directory = directory
        self.account_id = directory.account_id
        self.adapter = adapter
        self.run = run
        self.gen = run.generation
        self.owner = owner
        self.lease = lease
        self.issuer = adapter.issuer

    # Each page: one transaction that writes the rows, the cursor and the lease together.
    def _save_run(self, phase: str, cursor: dict[str, str | None]) -> None:
        # A page's commit need not wait for the WAL flush: if the database crashes before it is
        # flushed, the page and its cursor are lost together and the next run fetches it again.
        with connection.cursor() as cursor_:
            cursor_.execute("SET LOCAL synchronous_commit TO OFF")
        self.run.phase = phase
        self.run.cursor = cursor
        self.run.heartbeat_at = timezone.now()
        SyncRun.objects.for_account(self.account_id).filter(pk=self.run.pk).update(
            phase=phase, cursor=cursor, stats=self.run.stats, heartbeat_at=self.run.heartbeat_at
        )
        _renew(self.directory, self.owner, self.lease)

    def walk(self) -> None:
        if self.run.phase == "users":
            token = self.run.cursor.get("token")
            while True:
                page = self.adapter.users_page(token)
                with transaction.atomic():
                    self._users(page.items)
                    token = page.next_token
                    if token:
                        self._save_run("users", {"token": token})
                    else:
                        self._save_run("groups", {})
                if not token:
                    break
        if self.run.phase == "groups":
            token = self.run.cursor.get("token")
            while True:
                gpage = self.adapter.groups_page(token)
                with transaction.atomic():
                    self._groups(gpage.items)
                    token = gpage.next_token
                    if token:
                        self._save_run("groups", {"token": token})
                    else:
                        self._save_run("members", {})
                if not token:
                    break
        if self.run.phase == "members":
            self._members()

    # --- users ---------------------------------------------------------------------------------

    def _users(self, users: Iterable[RemoteUser]) -> None:
        wanted = {u.id: u for u in users if u.id}
        if not wanted:
            return
        existing = {
            i.subject: i
            for i in Identity.objects.for_account(self.account_id)
            .filter(issuer=self.issuer, subject__in=list(wanted))
            .select_related("actor")
        }
        emails = {u.email.strip().lower() for u in wanted.values() if u.email}
        by_email = {
            a.email: a
            for a in Actor.objects.for_account(self.account_id).filter(email__in=list(emails))
        }
        new_actors: list[Actor] = []
        new_ids: set[uuid.UUID] = set()
        changed: list[Actor] = []
        disable: list[Actor] = []
        enable: list[Actor] = []
        identities: list[Identity] = []
        for uid, user in wanted.items():
            email = user.email.strip().lower()[:254]
            name = (user.name.strip() or email or uid)[:255]
            identity = existing.get(uid)
            if identity is not None:
                actor = identity.actor
                was_active = identity.claims.get("active", True)
            else:
                was_active = True
                found = by_email.get(email) if email else None
                if found is not None:
                    actor = found  # an actor the account already had: linked, not owned
                else:
                    actor = Actor(
                        account_id=self.account_id,
                        type=Actor.Type.USER,
                        email=email,
                        name=name,
                        directory=self.directory,
                        provider_id=uid,
                        disabled_at=None if user.active else timezone.now(),
                    )
                    new_actors.append(actor)
                    new_ids.add(actor.pk)
                    if email:
                        by_email[email] = actor
            if actor.directory_id == self.directory.pk and actor.pk not in new_ids:
                dirty = False
                if actor.name != name:
                    actor.name, dirty = name, True
                if email and actor.email != email and email not in by_email:
                    by_email.pop(actor.email, None)
                    actor.email, dirty = email, True
                    by_email[email] = actor
                if dirty:
                    changed.append(actor)
                if not user.active and actor.disabled_at is None:
                    disable.append(actor)
                elif user.active and actor.disabled_at is not None and not was_active:
                    enable.append(actor)
            identities.append(
                Identity(
                    account_id=self.account_id,
                    actor=actor,
                    issuer=self.issuer,
                    subject=uid,
                    email=email,
                    claims={"active": user.active, "name": name},
                    directory=self.directory,
                    sync_generation=self.gen,
                )
            )
        if new_actors:
            Actor.objects.for_account(self.account_id).bulk_create(new_actors)
            everyone = services.everyone_group(self.account_id)
            Membership.objects.for_account(self.account_id).bulk_create(
                [
                    Membership(account_id=self.account_id, group=everyone, actor=a)
                    for a in new_actors
                    if a.disabled_at is None
                ],
                ignore_conflicts=True,
            )
        if changed:
            Actor.objects.for_account(self.account_id).bulk_update(changed, ["name", "email"])
        Identity.objects.for_account(self.account_id).bulk_create(
            identities,
            update_conflicts=True,
            unique_fields=["account", "issuer", "subject"],
            update_fields=["email", "claims", "directory", "sync_generation"],
        )
        for actor in disable:
            try:
                services.disable_actor(actor)
            except ValidationFailed:  # the account's last admin stays enabled
                log.warning("directory %s: kept the last admin enabled", self.directory.pk)
        for actor in enable:
            services.enable_actor(actor)
        _count(
            self.run.stats,
            users_seen=len(wanted),
            created=len(new_actors),
            updated=len(changed) + len(disable) + len(enable),
        )

    # --- groups --------------------------------------------------------------------------------

    def _groups(self, groups: Iterable[RemoteGroup]) -> None:
        wanted = {g.id: g for g in groups if g.id}
        if not wanted:
            return
        before = dict(
            Group.objects.for_account(self.account_id)
            .filter(directory=self.directory, provider_id__in=list(wanted))
            .values_list("provider_id", "name")
        )
        Group.objects.for_account(self.account_id).bulk_create(
            [
                Group(
                    account_id=self.account_id,
                    directory=self.directory,
                    provider_id=gid,
                    name=(g.name.strip() or gid)[:255],
                    kind=Group.Kind.SYNCED,
                    sync_generation=self.gen,
                )
                for gid, g in wanted.items()
            ],
            update_conflicts=True,
            unique_fields=["directory", "provider_id"],
            update_fields=["name", "sync_generation"],
        )
        renamed = sum(
            1 for gid, g in wanted.items() if gid in before and before[gid] != g.name.strip()
        )
        _count(
            self.run.stats,
            groups_seen=len(wanted),
            created=len(wanted) - len(before),
            updated=renamed,
        )

    # --- members -------------------------------------------------------------------------------

    def _members(self) -> None:
        """Members of every group the run saw, in provider-id order.

        Groups whose members fit one page (most) are written in batches of up to
        ``MEMBER_BATCH`` memberships, one transaction and one cursor (``after``: the last group
        of the batch) each; a group with more pages is written page by page (cursor: the group
        and its page token). An adapter that allows it (``concurrency`` > 1) has the first pages
        of the next groups fetched ahead by a thread pool while this thread writes: the
        provider's latency then overlaps the database's. Only this thread touches the database.
        """
        actors = dict(
            Identity.objects.for_account(self.account_id)
            .filter(directory=self.directory, sync_generation=self.gen)
            .values_list("subject", "actor_id")
        )
        groups = list(
            Group.objects.for_account(self.account_id)
            .filter(directory=self.directory, sync_generation=self.gen)
            .order_by("provider_id")
            .values_list("provider_id", "pk")
        )
        after = self.run.cursor.get("after")
        resume_group = self.run.cursor.get("group")
        resume_token = self.run.cursor.get("token")
        todo = [(p, g) for p, g in groups if after is None or p > after]
        concurrency = max(int(getattr(self.adapter, "concurrency", 1)), 1)
        batch: list[tuple[uuid.UUID, set[uuid.UUID]]] = []
        batch_size = 0
        last_done: str | None = None

        def flush() -> None:
            nonlocal batch, batch_size
            if last_done is None:
                return
            with transaction.atomic():
                self._memberships(batch)
                self._save_run("members", {"after": last_done})
            batch, batch_size = [], 0

        def first_page(provider_id: str) -> Page[str]:
            token = resume_token if provider_id == resume_group else None
            return self.adapter.members_page(provider_id, token)

        pool = ThreadPoolExecutor(concurrency) if concurrency > 1 else None
        try:
            ahead: deque[tuple[str, uuid.UUID, Future[Page[str]] | None]] = deque()
            queue = iter(todo)

            def refill() -> None:
                while len(ahead) < concurrency * 4:
                    nxt = next(queue, None)
                    if nxt is None:
                        return
                    future = pool.submit(first_page, nxt[0]) if pool is not None else None
                    ahead.append((nxt[0], nxt[1], future))

            refill()
            while ahead:
                provider_id, group_pk, future = ahead.popleft()
                refill()
                page = future.result() if future is not None else first_page(provider_id)
                ids = {actors[m] for m in page.items if m in actors}
                if page.next_token is None:
                    batch.append((group_pk, ids))
                    batch_size += len(ids) + 1
                    last_done = provider_id
                    if batch_size >= MEMBER_BATCH:
                        flush()
                    continue
                # A big group: whatever is batched goes first, then this group page by page.
                flush()
                while True:
                    with transaction.atomic():
                        self._memberships([(group_pk, ids)])
                        if page.next_token:
                            cursor: dict[str, str | None] = {
                                "group": provider_id,
                                "token": page.next_token,
                            }
                            self._save_run("members", cursor)
                        else:
                            self._save_run("members", {"after": provider_id})
                    if not page.next_token:
                        break
                    page = self.adapter.members_page(provider_id, page.next_token)
                    ids = {actors[m] for m in page.items if m in actors}
                last_done = None
            flush()
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def _memberships(self, pages: list[tuple[uuid.UUID, set[uuid.UUID]]]) -> None:
        """Stamp the seen memberships of these groups with the run's generation, add the new."""
        wanted = {(g, a) for g, ids in pages for a in ids}
        if not wanted:
            return
        group_ids = {g for g, _ in pages}
        existing: dict[tuple[uuid.UUID, uuid.UUID], tuple[uuid.UUID, int | None]] = {
            (g, a): (pk, gen)
            for pk, g, a, gen in Membership.objects.for_account(self.account_id)
            .filter(group_id__in=group_ids)
            .values_list("pk", "group_id", "actor_id", "sync_generation")
        }
        stale = [existing[k][0] for k in wanted if k in existing and existing[k][1] != self.gen]
        if stale:
            Membership.objects.for_account(self.account_id).filter(pk__in=stale).update(
                sync_generation=self.gen
            )
        added = [k for k in wanted if k not in existing]
        if added:
            Membership.objects.for_account(self.account_id).bulk_create(
                [
                    Membership(
                        account_id=self.account_id,
                        group_id=g,
                        actor_id=a,
                        sync_generation=self.gen,
                    )
                    for g, a in added
                ],
                batch_size=MEMBER_BATCH,
            )
            publish(
                AccessChanged(
                    account_id=self.account_id,
                    reason="directory_memberships_added",
                    narrowed=False,
                    group_ids=frozenset(g for g, _ in added),
                    actor_ids=frozenset(a for _, a in added),
                )
            )
        _count(self.run.stats, memberships_seen=len(wanted), created=len(added))

    # --- sweep ---------------------------------------------------------------------------------

    @transaction.atomic
    def sweep(self, now: datetime) -> Outcome:
        _renew(self.directory, self.owner, self.lease)
        directory = (
            Directory.objects.for_account(self.account_id)
            .select_for_update()
            .get(pk=self.directory.pk)
        )
        identities = Identity.objects.for_account(self.account_id).filter(directory=directory)
        groups = Group.objects.for_account(self.account_id).filter(directory=directory)
        stale_identities = identities.exclude(sync_generation=self.gen)
        stale_groups = groups.exclude(sync_generation=self.gen)
        first = directory.last_synced_at is None
        if not first:
            seen_users = identities.filter(sync_generation=self.gen).exists()
            seen_groups = groups.filter(sync_generation=self.gen).exists()
            reason = ""
            if not seen_users and stale_identities.exists():
                reason = "it would delete every user"
            elif not seen_groups and stale_groups.exists():
                reason = "it would delete every group"
            if reason:
                message = f"Sync aborted by the circuit breaker: {reason}."
                SyncRun.objects.for_account(self.account_id).filter(pk=self.run.pk).update(
                    status=SyncRun.Status.ABORTED, error=message, finished_at=now
                )
                Directory.objects.for_account(self.account_id).filter(pk=directory.pk).update(
                    last_error=message
                )
                self.run.refresh_from_db()
                return Outcome(run=self.run, status="aborted", error=message)

        stats = self.run.stats
        # Memberships first: what the run did not see in a synced group.
        stale_members = Membership.objects.for_account(self.account_id).filter(
            group__directory=directory
        )
        stale_members = stale_members.exclude(sync_generation=self.gen)
        removed = list(stale_members.values_list("actor_id", "group_id"))
        if removed:
            Membership.objects.for_account(self.account_id).filter(
                pk__in=stale_members.values("pk")
            ).delete()
            publish(
                AccessChanged(
                    account_id=self.account_id,
                    reason="directory_memberships_removed",
                    actor_ids=frozenset(a for a, _ in removed),
                    group_ids=frozenset(g for _, g in removed),
                )
            )
        # Users: their identities, and the actors the directory itself created.
        gone = set(stale_identities.values_list("actor_id", flat=True))
        kept = set(
            identities.filter(sync_generation=self.gen, actor_id__in=gone).values_list(
                "actor_id", flat=True
            )
        )
        stale_identities.delete()
        owned = list(
            Actor.objects.for_account(self.account_id).filter(
                directory=directory, pk__in=gone - kept
            )
        )
        if owned:
            owned_ids = {a.pk for a in owned}
            for actor in owned:
                hooks.delete_actor_devices(actor)
            revoked = hooks.revoke_flows(
                self.account_id, actor_ids=owned_ids, reason="actor_deleted"
            )
            Actor.objects.for_account(self.account_id).filter(pk__in=owned_ids).delete()
            publish(
                AccessChanged(
                    account_id=self.account_id,
                    reason="actor_deleted",
                    actor_ids=frozenset(owned_ids),
                    authorization_ids=revoked,
                )
            )
        # Groups last (their policies go with them, as when a group is deleted by hand).
        group_ids = frozenset(stale_groups.values_list("pk", flat=True))
        if group_ids:
            policy_ids = frozenset(
                Group.objects.for_account(self.account_id)
                .filter(pk__in=group_ids)
                .values_list("policies__pk", flat=True)
            )
            stale_groups.delete()
            publish(
                AccessChanged(
                    account_id=self.account_id,
                    reason="group_deleted",
                    group_ids=group_ids,
                    policy_ids=frozenset(p for p in policy_ids if p is not None),
                )
            )
        _count(stats, deleted=len(removed) + len(gone) + len(group_ids))
        directory.last_synced_at = now
        directory.last_error = ""
        directory.failing_since = None
        directory.save(update_fields=["last_synced_at", "last_error", "failing_since"])
        SyncRun.objects.for_account(self.account_id).filter(pk=self.run.pk).update(
            status=SyncRun.Status.SUCCEEDED,
            phase="done",
            cursor={},
            stats=stats,
            error="",
            finished_at=now,
        )
        self.run.refresh_from_db()
        return Outcome(run=self.run, status="succeeded", stats=dict(stats))
