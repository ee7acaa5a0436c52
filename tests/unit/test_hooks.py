"""firezone_site.hooks: one provider, called with the stub's arguments; never a silent no-op."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from firezone_site.hooks import hook


def _declare():  # type: ignore[no-untyped-def]
    @hook
    def double(value: int, *, offset: int = 0) -> int:
        """Twice ``value`` plus ``offset``."""
        raise NotImplementedError

    return double


def test_a_hook_nobody_provided_refuses_to_run() -> None:
    double = _declare()
    assert not double.provided
    with pytest.raises(ImproperlyConfigured, match="has no provider"):
        double(2)


def test_a_provided_hook_runs_its_provider_with_the_callers_arguments() -> None:
    double = _declare()
    double.provide(lambda value, *, offset=0: 2 * value + offset)
    assert double.provided
    assert double(3, offset=1) == 7
    assert double.__doc__ == "Twice ``value`` plus ``offset``."


def test_a_second_different_provider_is_refused_and_the_same_one_again_is_not() -> None:
    double = _declare()

    def provider(value: int, *, offset: int = 0) -> int:
        return 2 * value + offset

    double.provide(provider)
    double.provide(provider)  # AppConfig.ready() twice is harmless
    with pytest.raises(ImproperlyConfigured, match="already provided"):
        double.provide(lambda value, *, offset=0: 0)
    assert double(1) == 2
