from __future__ import annotations

import pytest

from accounts import services
from accounts.models import Account, Directory

from .memory import MemoryDirectory


@pytest.fixture
def okta_dir(acme: Account) -> Directory:
    return services.create_directory(acme, name="Okta", kind=Directory.Kind.OKTA)


@pytest.fixture
def remote() -> MemoryDirectory:
    idp = MemoryDirectory()
    idp.user("u1", "ann@acme.test", "Ann")
    idp.user("u2", "ben@acme.test", "Ben")
    idp.user("u3", "cat@acme.test", "Cat")
    idp.group("g1", "Engineering", "u1", "u2", "u3")
    idp.group("g2", "Sales", "u3")
    return idp
