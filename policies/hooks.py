"""What policies needs from the layer above it (see :mod:`firezone_site.hooks`); provided by
``gateways`` in its ``AppConfig.ready()``. Ending flows goes through
:func:`accounts.hooks.revoke_flows`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from firezone_site.hooks import hook


@hook
def recent_authorizations_of_policy(
    account_id: uuid.UUID, policy_id: uuid.UUID, *, limit: int
) -> Sequence[Any]:
    """The newest ``limit`` authorizations (audit rows) a policy granted, newest first."""
    raise NotImplementedError
