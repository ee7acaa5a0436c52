"""Tunnel address allocation under concurrency, and constraint violations as clear errors."""

from __future__ import annotations

import ipaddress
import threading
from typing import Any

import pytest
from django.db import connection, transaction

from accounts import services as accounts
from accounts.models import Actor
from firezone_site.errors import ValidationFailed
from gateways import services as gateways
from gateways.models import TunnelAddress
from policies import services as policies


def _in_threads(n: int, fn: Any) -> tuple[list[Any], list[BaseException]]:
    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)
    lock = threading.Lock()

    def run() -> None:
        try:
            barrier.wait()
            value = fn()
            with lock:
                results.append(value)
        except BaseException as exc:
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


class _FixedSlots:
    """Forces every allocator onto the same few slots, so the race is guaranteed to happen."""

    def __init__(self) -> None:
        self.n = 0
        self.lock = threading.Lock()

    def randint(self, a: int, b: int) -> int:
        with self.lock:
            self.n += 1
            return a + (self.n % 25)


@pytest.mark.django_db(transaction=True)
def test_20_concurrent_allocations_give_20_distinct_addresses(acme) -> None:  # type: ignore[no-untyped-def]
    assert connection.vendor == "postgresql"
    rng = _FixedSlots()

    def allocate() -> tuple[str, str]:
        with transaction.atomic():
            got = gateways.allocate_tunnel_address(acme, rng=rng)  # type: ignore[arg-type]
            return got.ipv4, got.ipv6

    results, errors = _in_threads(20, allocate)
    assert errors == []
    assert len(results) == 20
    assert len({r[0] for r in results}) == 20
    assert len({r[1] for r in results}) == 20
    for v4, v6 in results:
        assert ipaddress.ip_address(v4) in ipaddress.ip_network("100.64.0.0/11")
        assert ipaddress.ip_address(v6) in ipaddress.ip_network("fd00:2021:1111::/107")
    assert TunnelAddress.objects.for_account(acme).count() == 20


@pytest.mark.django_db
def test_the_same_slot_is_free_in_another_account(acme, globex) -> None:  # type: ignore[no-untyped-def]
    class One:
        def randint(self, a: int, b: int) -> int:
            return 7

    a = gateways.allocate_tunnel_address(acme, rng=One())  # type: ignore[arg-type]
    b = gateways.allocate_tunnel_address(globex, rng=One())  # type: ignore[arg-type]
    assert a.ipv4 == b.ipv4 == "100.64.0.7"
    with pytest.raises(gateways.PoolExhausted):
        gateways.allocate_tunnel_address(acme, rng=One())  # type: ignore[arg-type]


@pytest.mark.django_db(transaction=True)
def test_racing_duplicate_site_names_give_a_validation_error_not_integrity_error(acme) -> None:  # type: ignore[no-untyped-def]
    results, errors = _in_threads(6, lambda: gateways.create_site(acme, name="Racy"))
    assert len(results) == 1
    assert len(errors) == 5
    for exc in errors:
        assert isinstance(exc, ValidationFailed), repr(exc)
        assert exc.errors == {"name": ["A site with this name already exists."]}


@pytest.mark.django_db
def test_every_duplicate_gives_a_clear_validation_error(acme, alice) -> None:  # type: ignore[no-untyped-def]
    site = gateways.create_site(acme, name="HQ")
    resource = policies.create_resource(acme, name="DB", kind="ip", address="10.0.0.5", site=site)
    group = accounts.create_group(acme, name="Ops")
    policies.create_policy(acme, group=group, resource=resource)
    cases = [
        (lambda: gateways.create_site(acme, name="HQ"), "name"),
        (
            lambda: policies.create_resource(
                acme, name="DB", kind="ip", address="10.0.0.6", site=site
            ),
            "name",
        ),
        (lambda: accounts.create_group(acme, name="Ops"), "name"),
        (lambda: accounts.create_group(acme, name="Everyone"), "name"),
        (lambda: accounts.create_actor(acme, email="ALICE@acme.test", name="A2"), "email"),
        (lambda: policies.create_policy(acme, group=group, resource=resource), "group"),
        (lambda: accounts.create_account(name="Acme 2", slug="acme"), "slug"),
        (
            lambda: policies.create_resource(
                acme, name="Bad", kind="cidr", address="0.0.0.0/0", site=site
            ),
            "address",
        ),
        (
            lambda: policies.create_resource(
                acme, name="Bad", kind="ip", address="10.0.0.1:80", site=site
            ),
            "address",
        ),
        (
            lambda: policies.create_resource(
                acme, name="Bad", kind="ip", address="100.64.0.9", site=site
            ),
            "address",
        ),
        (
            lambda: policies.create_resource(
                acme, name="Bad", kind="dns", address="*.*", site=site
            ),
            "address",
        ),
        (
            lambda: policies.create_resource(
                acme,
                name="Bad",
                kind="ip",
                address="10.0.0.1",
                site=site,
                filters=[{"protocol": "tcp", "ports": ["70000"]}],
            ),
            "filters",
        ),
        (
            lambda: policies.create_policy(
                acme,
                group=accounts.everyone_group(acme),
                resource=resource,
                conditions=[
                    {"property": "remote_ip", "operator": "is_in_cidr", "values": ["nonsense"]}
                ],
            ),
            "conditions",
        ),
        (lambda: accounts.create_actor(acme, email="not-an-email", name="X"), "email"),
        (lambda: accounts.create_actor(acme, email="x@acme.test", name=""), "name"),
    ]
    for fn, field in cases:
        with pytest.raises(ValidationFailed) as exc:
            fn()
        assert field in exc.value.errors, (field, exc.value.errors)
        assert all(isinstance(m, str) and m for m in exc.value.errors[field])


@pytest.mark.django_db
def test_a_failed_write_leaves_nothing_behind(acme) -> None:  # type: ignore[no-untyped-def]
    from accounts.models import Account, Group

    with pytest.raises(ValidationFailed):
        accounts.bootstrap(account_name="X", slug="x-co", admin_email="bad email")
    assert not Account.objects.filter(slug="x-co").exists()
    assert not Group.objects.filter(account__slug="x-co").exists()


@pytest.mark.django_db
def test_everyone_group_tracks_users_and_admins(acme, alice) -> None:  # type: ignore[no-untyped-def]
    everyone = accounts.everyone_group(acme)
    user = accounts.create_actor(acme, email="u@acme.test", name="U")
    svc = accounts.create_actor(acme, email="", name="CI", type=Actor.Type.SERVICE_ACCOUNT)
    members = set(everyone.memberships.values_list("actor_id", flat=True))
    assert members == {alice.pk, user.pk}
    assert svc.pk not in members
    accounts.disable_actor(user)
    assert not everyone.memberships.filter(actor=user).exists()
    accounts.enable_actor(user)
    assert everyone.memberships.filter(actor=user).exists()
    accounts.update_actor(user, type=Actor.Type.SERVICE_ACCOUNT)
    assert not everyone.memberships.filter(actor=user).exists()
    from firezone_site.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        accounts.add_member(everyone, svc)
    with pytest.raises(PermissionDenied):
        accounts.delete_group(everyone)


@pytest.mark.django_db
def test_the_last_admin_cannot_be_disabled_or_demoted(acme, alice) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationFailed):
        accounts.disable_actor(alice)
    with pytest.raises(ValidationFailed):
        accounts.update_actor(alice, type=Actor.Type.USER)
    alice.refresh_from_db()
    assert alice.disabled_at is None and alice.type == Actor.Type.ADMIN


@pytest.mark.django_db
def test_renaming_an_account_validates_the_name(acme) -> None:  # type: ignore[no-untyped-def]
    from accounts.models import Account

    with pytest.raises(ValidationFailed):
        accounts.rename_account(acme, name="   ")
    assert Account.objects.get(pk=acme.pk).name == "Acme"
    accounts.rename_account(acme, name=" Acme Corp ")
    assert Account.objects.get(pk=acme.pk).name == "Acme Corp"
