"""Fixtures shared by the portal end-to-end modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .portal_lab import Portal


@pytest.fixture(scope="module")
def portal(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Portal]:
    """daphne serving the test database, one per module (started once, stopped at its end)."""
    from django.db import connection

    # Imported here: modules that use no portal (the data plane ones) skip the portal helpers.
    from .portal_lab import running_portal

    with running_portal(
        tmp_path_factory.mktemp("portal"), connection.settings_dict["NAME"]
    ) as server:
        yield server
