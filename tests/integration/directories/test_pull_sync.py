"""The three adapters against the vendor fakes over real HTTP, through the sync engine."""

from __future__ import annotations

import time
from typing import Any

import pytest

from accounts import services
from accounts.directories import services as directory_services
from accounts.directories.adapters.http import RetryPolicy
from accounts.models import Account, Actor, Directory, Group, Identity

from .conftest import vendor_config
from .fakes import FakeState

pytestmark = pytest.mark.django_db

KINDS = ["google", "okta", "entra"]
LIST_PATH = {
    "google": "/google/admin/directory/v1/users",
    "okta": "/okta/api/v1/users",
    "entra": "/graph/v1.0/users",
}
TOKEN_PATH = {"google": "/google/token", "okta": "/okta/oauth2/v1/token", "entra": "/login/"}


@pytest.fixture
def make_dir(
    acme: Account,
    fake: tuple[FakeState, str],
    google_keys: tuple[str, str],
    okta_keys: tuple[str, str],
) -> Any:
    def make(kind: str, **extra: object) -> Directory:
        directory = services.create_directory(acme, name=f"{kind} dir", kind=kind)
        config = {**vendor_config(kind, fake[1], google_keys, okta_keys), **extra}
        return directory_services.update_directory(directory, config=config)

    return make


def quick() -> RetryPolicy:
    return RetryPolicy(base_delay=0.01, max_delay=5.0)


def state_of(directory: Directory) -> dict[str, Any]:
    actors = {a.provider_id: a for a in Actor.objects.filter(directory=directory)}
    groups = {}
    for g in Group.objects.filter(directory=directory):
        groups[g.provider_id] = (
            g.name,
            sorted(
                Identity.objects.filter(
                    directory=directory, actor__memberships__group=g
                ).values_list("subject", flat=True)
            ),
        )
    return {
        "actors": {k: (a.email, a.disabled_at is not None) for k, a in actors.items()},
        "groups": groups,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_first_sync_then_changes_then_deletions_over_http(
    kind: str, make_dir: Any, fake: tuple[FakeState, str]
) -> None:
    state, _ = fake
    directory = make_dir(kind)
    outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "succeeded", outcome.error
    assert state_of(directory) == {
        "actors": {
            "u1": ("ann@acme.test", False),
            "u2": ("ben@acme.test", False),
            "u3": ("cat@acme.test", False),
            "u4": ("dan@acme.test", True),  # suspended / deactivated at the provider
            "u5": ("eve@acme.test", False),
        },
        "groups": {
            "g1": ("Engineering", ["u1", "u2", "u3", "u5"]),
            "g2": ("Sales", ["u3"]),
            "g3": ("Everyone at Acme", ["u1", "u2", "u3", "u4", "u5"]),
        },
    }
    # Pages of 2 were followed: 5 users are three user pages.
    assert len(state.requests(LIST_PATH[kind])) == 3
    # The credentials were exchanged once for an access token.
    assert len(state.requests(TOKEN_PATH[kind])) == 1
    # The identity is what that vendor's sign-in will present.
    issuer = Identity.objects.filter(directory=directory).values_list("issuer", flat=True)[0]
    assert issuer.startswith(("https://accounts.google.com", "http://127.0.0.1", "https://login"))

    data = state.data
    data.user("u2", "ben@acme.test", "Ben Renamed")
    data.user("u6", "fay@acme.test", "Fay Ford")
    data.members["g1"] = ["u1", "u6"]
    del data.users["u5"]
    data.members["g3"].remove("u5")
    del data.groups["g2"]
    del data.members["g2"]
    outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "succeeded", outcome.error
    after = state_of(directory)
    assert set(after["actors"]) == {"u1", "u2", "u3", "u4", "u6"}
    assert Actor.objects.get(directory=directory, provider_id="u2").name == "Ben Renamed"
    assert after["groups"] == {
        "g1": ("Engineering", ["u1", "u6"]),
        "g3": ("Everyone at Acme", ["u1", "u2", "u3", "u4"]),
    }


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("status", [401, 403])
def test_401_403_disables_the_directory_and_mails_the_admins(
    kind: str,
    status: int,
    make_dir: Any,
    fake: tuple[FakeState, str],
    alice: Actor,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    state, _ = fake
    directory = make_dir(kind)
    state.fault(LIST_PATH[kind], status, times=10)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "disabled"
    directory.refresh_from_db()
    assert directory.disabled_at is not None and f"HTTP {status}" in directory.last_error
    assert "Fake" in directory.last_error  # the vendor's own error message is kept
    assert len(state.requests(LIST_PATH[kind])) == 1  # a 4xx is not retried
    assert [m.to for m in mailoutbox] == [["alice@acme.test"]]
    assert not Actor.objects.filter(directory=directory).exists()


@pytest.mark.parametrize("kind", KINDS)
def test_bad_credentials_disable_the_directory(
    kind: str, make_dir: Any, fake: tuple[FakeState, str], okta_keys: tuple[str, str]
) -> None:
    wrong = {"google": {"private_key": okta_keys[0]}, "okta": {"private_key": "x"}}
    directory = make_dir(kind, **wrong.get(kind, {"client_secret": "wrong"}))
    outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "disabled", outcome
    directory.refresh_from_db()
    assert directory.disabled_at is not None


@pytest.mark.parametrize("kind", KINDS)
def test_429_with_retry_after_is_respected(
    kind: str, make_dir: Any, fake: tuple[FakeState, str]
) -> None:
    state, _ = fake
    directory = make_dir(kind)
    if kind == "okta":  # Okta says when the window resets, in epoch seconds
        reset = str(int(time.time()) + 2)
        state.fault(
            LIST_PATH[kind],
            429,
            X_Rate_Limit_Limit="600",
            X_Rate_Limit_Remaining="0",
            X_Rate_Limit_Reset=reset,
        )
    else:
        state.fault(LIST_PATH[kind], 429, Retry_After="1")
    outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "succeeded", outcome.error
    first, second = state.requests(LIST_PATH[kind])[:2]
    waited = second[0] - first[0]
    assert waited >= 0.95, waited  # not retried before the provider allowed it
    assert waited < 30  # and not given up on


@pytest.mark.parametrize("kind", KINDS)
def test_transient_errors_are_retried_with_backoff(
    kind: str, make_dir: Any, fake: tuple[FakeState, str]
) -> None:
    state, _ = fake
    directory = make_dir(kind)
    state.fault(LIST_PATH[kind], 503, times=2)
    retry = quick()
    outcome = directory_services.sync_directory(directory.pk, retry=retry)
    assert outcome.status == "succeeded", outcome.error
    assert len(retry.waited) == 2 and retry.waited[1] > retry.waited[0] * 0.9


@pytest.mark.parametrize("kind", KINDS)
def test_transient_errors_that_outlast_the_retries_leave_the_directory_enabled(
    kind: str, make_dir: Any, fake: tuple[FakeState, str]
) -> None:
    state, _ = fake
    directory = make_dir(kind)
    state.fault(LIST_PATH[kind], 502, times=100)
    outcome = directory_services.sync_directory(
        directory.pk, retry=RetryPolicy(attempts=3, base_delay=0.01)
    )
    assert outcome.status == "failed"
    directory.refresh_from_db()
    assert directory.disabled_at is None and "HTTP 502" in directory.last_error


def test_google_rate_limit_403_is_throttling_not_a_permission_error(
    make_dir: Any, fake: tuple[FakeState, str]
) -> None:
    state, _ = fake
    directory = make_dir("google")
    body = {
        "error": {
            "code": 403,
            "message": "Quota exceeded",
            "errors": [{"reason": "userRateLimitExceeded", "domain": "usageLimits"}],
        }
    }
    state.fault(LIST_PATH["google"], 403)
    state.faults[-1].body = body
    outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "succeeded", outcome.error


def test_google_org_units_become_groups(make_dir: Any) -> None:
    directory = make_dir("google", org_unit_groups=True)
    outcome = directory_services.sync_directory(directory.pk, retry=quick())
    assert outcome.status == "succeeded", outcome.error
    groups = state_of(directory)["groups"]
    assert groups["ou:/Eng"] == ("OU Eng", ["u1", "u2"])
    assert groups["ou:/Sales"] == ("OU Sales", ["u3"])


def test_scim_directories_are_not_pulled(acme: Account) -> None:
    directory = services.create_directory(acme, name="scim", kind=Directory.Kind.SCIM)
    assert directory_services.sync_directory(directory.pk).status == "missing"


def test_credentials_are_encrypted_at_rest(make_dir: Any) -> None:
    directory = make_dir("entra")
    assert "client_secret" not in directory.config
    assert "graph-secret" not in str(directory.config)
