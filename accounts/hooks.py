"""What accounts needs from the layers above it (see :mod:`firezone_site.hooks`).

Provided by ``gateways`` (flows and devices) and ``policies`` (policy conditions) in their
``AppConfig.ready()``. Each runs in the caller's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from accounts.models import Actor
from firezone_site.hooks import hook


@hook
def revoke_flows(
    account_id: uuid.UUID,
    *,
    reason: str,
    resource_ids: Iterable[uuid.UUID] | None = None,
    policy_ids: Iterable[uuid.UUID] | None = None,
    actor_ids: Iterable[uuid.UUID] | None = None,
    device_ids: Iterable[uuid.UUID] | None = None,
) -> frozenset[uuid.UUID]:
    """End the account's active flows matching every given filter (the rows stay as the audit
    trail); returns their ids so the caller's ``AccessChanged`` event can tell the gateways."""
    raise NotImplementedError


@hook
def delete_actor_devices(actor: Actor) -> None:
    """Delete the devices of an actor about to be deleted, telling their gateways, and free their
    tunnel addresses."""
    raise NotImplementedError


@hook
def policies_requiring_provider(
    account_id: uuid.UUID, provider_id: uuid.UUID
) -> frozenset[uuid.UUID]:
    """The account's policies whose conditions require signing in through ``provider_id``."""
    raise NotImplementedError


@hook
def actor_page_context(account_id: uuid.UUID, actor: Actor) -> dict[str, Any]:
    """Extra template context for an actor's page (``devices``: the actor's devices)."""
    raise NotImplementedError
