"""Shared fixtures: three fixed people (house style).

alice: admin of account "acme"; bob: member (user) of "acme"; charlie: admin of another account
"globex". Passwords are PASSWORD. Integration tests use the real PostgreSQL (pytest-django creates a
per-process test database) and Redis.
"""

from __future__ import annotations

import pytest

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def static_sync_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """The account-wide static-device recomputation runs in Celery; tests run it inline at the
    moment it is enqueued (after the commit), so nothing is left in the shared broker.
    tests/integration/gateways/test_static_sync_task.py checks the queued path itself."""
    try:
        from gateways import tasks
    except Exception:  # unit tests without Django settings
        return
    task = tasks.sync_account_static_devices
    monkeypatch.setattr(task, "delay", lambda account_id: task(account_id))


@pytest.fixture
def acme(db: None):  # type: ignore[no-untyped-def]
    from accounts import services

    return services.create_account(name="Acme", slug="acme")


@pytest.fixture
def globex(db: None):  # type: ignore[no-untyped-def]
    from accounts import services

    return services.create_account(name="Globex", slug="globex")


@pytest.fixture
def alice(acme):  # type: ignore[no-untyped-def]
    from accounts import services
    from accounts.models import Actor

    return services.create_actor(
        acme, email="alice@acme.test", name="Alice", type=Actor.Type.ADMIN, password=PASSWORD
    )


@pytest.fixture
def bob(acme):  # type: ignore[no-untyped-def]
    from accounts import services
    from accounts.models import Actor

    return services.create_actor(
        acme, email="bob@acme.test", name="Bob", type=Actor.Type.USER, password=PASSWORD
    )


@pytest.fixture
def charlie(globex):  # type: ignore[no-untyped-def]
    from accounts import services
    from accounts.models import Actor

    return services.create_actor(
        globex,
        email="charlie@globex.test",
        name="Charlie",
        type=Actor.Type.ADMIN,
        password=PASSWORD,
    )
