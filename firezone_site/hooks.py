"""Hooks: how a lower layer calls into the layer above it, inside its own transaction.

The portal's layers are ``firezone_site`` <- ``accounts`` <- ``policies`` <- ``gateways``; an
app imports only apps below it (``lint-imports`` enforces it). Some writes in a lower layer must
still change rows an upper layer owns, atomically: deleting a policy ends its flows (authorizations,
kept by ``gateways``), deleting an actor deletes its devices. The lower layer declares what it
needs as a hook (a typed stub, in its own ``hooks`` module); the upper layer provides the one
implementation in its ``AppConfig.ready()``.

Unlike :mod:`firezone_site.events` (after commit, any number of handlers, fire and forget), a
hook has exactly one provider, runs in the caller's transaction and returns a result. Calling a
hook that nobody provided is an error, never a silent no-op: a deleted policy whose flows stay
open would be a security bug.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

from django.core.exceptions import ImproperlyConfigured

P = ParamSpec("P")
R = TypeVar("R")


class Hook(Generic[P, R]):
    def __init__(self, stub: Callable[P, R]) -> None:
        self.name = f"{stub.__module__}.{stub.__qualname__}"
        self.__doc__ = stub.__doc__
        self._provider: Callable[P, R] | None = None

    def provide(self, provider: Callable[P, R]) -> None:
        """Install the implementation (once; the same one again is a no-op)."""
        if self._provider is not None and self._provider is not provider:
            raise ImproperlyConfigured(f"hook {self.name} is already provided by {self._provider}")
        self._provider = provider

    @property
    def provided(self) -> bool:
        return self._provider is not None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if self._provider is None:
            raise ImproperlyConfigured(f"hook {self.name} has no provider (is its app installed?)")
        return self._provider(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Hook {self.name}>"


def hook(stub: Callable[P, R]) -> Hook[P, R]:
    """Declare a hook from a stub whose signature and docstring are the contract."""
    return Hook(stub)
