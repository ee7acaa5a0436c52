"""Access-change events: how writes in one app reach the gateways app without importing it.

Services call :func:`publish` inside their transaction; handlers run only after the commit
(``transaction.on_commit``), so nothing is pushed for a rolled-back change. The gateways app
registers the handlers that recompute access and push ``reject_access`` / ``resource_updated``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import transaction

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AccessChanged:
    """Something that can change who reaches what.

    ``narrowed`` is True when the change can only remove access or may remove some (the handler
    must revoke); ``filters_only`` when nothing but resource filters changed (push an update).
    The id sets say what to recompute; empty sets mean "not affected".
    """

    account_id: uuid.UUID
    reason: str
    narrowed: bool = True
    filters_only: bool = False
    resource_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    actor_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    group_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    device_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    policy_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    token_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)
    # Authorizations the service already revoked in its transaction (push reject_access for them).
    authorization_ids: frozenset[uuid.UUID] = field(default_factory=frozenset)


Handler = Callable[[AccessChanged], None]
_handlers: list[Handler] = []


def subscribe(handler: Handler) -> None:
    if handler not in _handlers:
        _handlers.append(handler)


def unsubscribe(handler: Handler) -> None:
    if handler in _handlers:
        _handlers.remove(handler)


def _dispatch(event: AccessChanged) -> None:
    for handler in list(_handlers):
        try:
            handler(event)
        except Exception:  # one failing handler must not stop the others or the request
            log.exception("access event handler %s failed for %s", handler, event.reason)


def publish(event: AccessChanged) -> None:
    """Deliver ``event`` to every handler after the current transaction commits."""
    transaction.on_commit(lambda: _dispatch(event))
