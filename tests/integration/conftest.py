"""Integration-wide fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _fresh_signin_counters() -> Iterator[None]:
    """Brute-force counters live in the (shared, per-process-prefixed) cache: every test starts
    with none, so one test's failed sign-ins cannot lock another's people."""
    from accounts.signin import throttle

    throttle.forget_all()
    yield
    throttle.forget_all()
