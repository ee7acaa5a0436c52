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


# --- the vendor fakes over HTTP ----------------------------------------------------------------

from collections.abc import Iterator  # noqa: E402

from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

from .fakes import DirectoryData, FakeState, serve  # noqa: E402


def _key_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture(scope="session")
def google_keys() -> tuple[str, str]:
    return _key_pair()


@pytest.fixture(scope="session")
def okta_keys() -> tuple[str, str]:
    return _key_pair()


def sample_data() -> DirectoryData:
    data = DirectoryData()
    data.user("u1", "ann@acme.test", "Ann Archer", ou="/Eng")
    data.user("u2", "ben@acme.test", "Ben Baker", ou="/Eng")
    data.user("u3", "cat@acme.test", "Cat Cole", ou="/Sales")
    data.user("u4", "dan@acme.test", "Dan Dunn", active=False)
    data.user("u5", "eve@acme.test", "Eve Evans")
    data.group("g1", "Engineering", "u1", "u2", "u3", "u5")
    data.group("g2", "Sales", "u3")
    data.group("g3", "Everyone at Acme", "u1", "u2", "u3", "u4", "u5")
    data.org_units = {"/Eng": "Eng", "/Sales": "Sales"}
    return data


@pytest.fixture
def fake(
    google_keys: tuple[str, str], okta_keys: tuple[str, str]
) -> Iterator[tuple[FakeState, str]]:
    state = FakeState(
        data=sample_data(), google_public_key=google_keys[1], okta_public_key=okta_keys[1]
    )
    with serve(state) as base:
        yield state, base


def vendor_config(
    kind: str, base: str, google_keys: tuple[str, str], okta_keys: tuple[str, str]
) -> dict[str, object]:
    if kind == "google":
        return {
            "api_base": f"{base}/google",
            "token_uri": f"{base}/google/token",
            "service_account_email": "sync@acme-project.iam.gserviceaccount.test",
            "private_key": google_keys[0],
            "admin_email": "admin@acme.test",
            "page_size": 2,
        }
    if kind == "okta":
        return {
            "org_url": f"{base}/okta",
            "client_id": "0oaFakeClient",
            "private_key": okta_keys[0],
            "key_id": "k1",
            "page_size": 2,
        }
    return {
        "tenant_id": "acme-tenant",
        "client_id": "graph-client",
        "client_secret": "graph-secret",
        "graph_base": f"{base}/graph",
        "login_base": f"{base}/login",
        "page_size": 2,
    }
