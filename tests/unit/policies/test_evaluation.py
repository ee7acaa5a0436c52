"""The policy evaluator: default deny, each condition both ways, and which grant wins.

Disabled policies never reach the evaluator: `PolicyRule` has no disabled flag, the caller
(policies.queries) leaves them out, so there is nothing to test here about them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any
from uuid import UUID, uuid4

import pytest

from policies.evaluation import (
    ClientContext,
    Condition,
    Decision,
    PolicyRule,
    evaluate,
    parse_conditions,
)

NOW = datetime(2026, 5, 13, 10, 30, tzinfo=UTC)  # a Wednesday
PROVIDER = "6f1c1b3e-8a7b-4c1d-9e4f-0123456789ab"
OTHER_PROVIDER = "0b5e9a50-31f2-4f55-9d2c-6a4c53c7a001"
ENGINEERING = UUID("00000000-0000-0000-0000-0000000000e1")
SALES = UUID("00000000-0000-0000-0000-0000000000e2")
RESOURCE = uuid4()


def ctx(
    ip: str | None = "10.1.2.3",
    country: str | None = "DE",
    provider: str | None = PROVIDER,
    verified: bool = True,
    now: datetime = NOW,
    session_expires_at: datetime | None = None,
) -> ClientContext:
    return ClientContext(
        ip_address(ip) if ip is not None else None,
        country,
        provider,
        verified,
        now,
        session_expires_at,
    )


def rule(group: UUID = ENGINEERING, *conditions: dict[str, Any]) -> PolicyRule:
    return PolicyRule(uuid4(), group, RESOURCE, parse_conditions(list(conditions)))


def cond(prop: str, op: str, *values: str) -> dict[str, Any]:
    return {"property": prop, "operator": op, "values": list(values)}


def test_no_policy_means_no_access() -> None:
    assert evaluate({ENGINEERING}, [], ctx()) == Decision(False, None, (), None)


def test_a_policy_for_another_group_grants_nothing() -> None:
    decision = evaluate({ENGINEERING}, [rule(SALES)], ctx())
    assert not decision.allowed
    assert decision.policy_id is None
    assert decision.violated == ()


def test_a_policy_without_conditions_grants_until_the_session_ends() -> None:
    policy = rule(ENGINEERING)
    expiry = NOW + timedelta(days=7)
    decision = evaluate(frozenset({SALES, ENGINEERING}), [policy], ctx(session_expires_at=expiry))
    assert decision == Decision(True, policy.policy_id, (), expiry)
    assert evaluate({ENGINEERING}, [policy], ctx()).expires_at is None


def test_no_groups_no_access() -> None:
    assert not evaluate(frozenset(), [rule(ENGINEERING)], ctx()).allowed


# One row per (condition, context) with the expected outcome; every operator both ways.
CASES = [
    (cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), {"ip": "10.1.2.3"}, True),
    (cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), {"ip": "11.1.2.3"}, False),
    (cond("remote_ip", "is_in_cidr", "192.0.2.0/24", "10.0.0.0/8"), {"ip": "10.0.0.1"}, True),
    (cond("remote_ip", "is_in_cidr", "2001:db8::/32"), {"ip": "2001:db8::5"}, True),
    (cond("remote_ip", "is_in_cidr", "2001:db8::/32"), {"ip": "2001:db9::5"}, False),
    (cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), {"ip": "::ffff:10.9.9.9"}, True),
    (cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), {"ip": "2001:db8::a00:1"}, False),
    (cond("remote_ip", "is_in_cidr", "0.0.0.0/0"), {"ip": "2001:db8::1"}, False),
    (cond("remote_ip", "is_not_in_cidr", "10.0.0.0/8"), {"ip": "11.1.2.3"}, True),
    (cond("remote_ip", "is_not_in_cidr", "10.0.0.0/8"), {"ip": "10.1.2.3"}, False),
    (cond("remote_ip", "is_not_in_cidr", "10.0.0.0/8"), {"ip": "2001:db8::1"}, True),
    (cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), {"ip": None}, False),
    (cond("remote_ip", "is_not_in_cidr", "10.0.0.0/8"), {"ip": None}, False),
    (cond("remote_ip_location_region", "is_in", "DE", "FR"), {"country": "FR"}, True),
    (cond("remote_ip_location_region", "is_in", "DE", "FR"), {"country": "US"}, False),
    (cond("remote_ip_location_region", "is_not_in", "RU"), {"country": "DE"}, True),
    (cond("remote_ip_location_region", "is_not_in", "RU"), {"country": "RU"}, False),
    (cond("remote_ip_location_region", "is_in", "DE"), {"country": None}, False),
    (cond("remote_ip_location_region", "is_not_in", "RU"), {"country": None}, False),
    (cond("provider_id", "is_in", PROVIDER), {"provider": PROVIDER}, True),
    (cond("provider_id", "is_in", PROVIDER), {"provider": OTHER_PROVIDER}, False),
    (cond("provider_id", "is_not_in", PROVIDER), {"provider": OTHER_PROVIDER}, True),
    (cond("provider_id", "is_not_in", PROVIDER), {"provider": PROVIDER}, False),
    (cond("provider_id", "is_in", PROVIDER.upper()), {"provider": PROVIDER}, True),
    (cond("provider_id", "is_in", PROVIDER), {"provider": None}, False),
    (cond("provider_id", "is_not_in", PROVIDER), {"provider": None}, False),
    (cond("client_verified", "is", "true"), {"verified": True}, True),
    (cond("client_verified", "is", "true"), {"verified": False}, False),
    (
        cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "W/10:00-11:00/UTC"),
        {"now": NOW},
        True,
    ),
    (
        cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "MTRFSU/true/UTC"),
        {"now": NOW},
        False,
    ),
    (
        cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "W/11:00-12:00/UTC"),
        {"now": NOW},
        False,
    ),
    (
        # 10:30 UTC is 12:30 in Berlin (CEST) on that Wednesday
        cond(
            "current_utc_datetime", "is_in_day_of_week_time_ranges", "W/12:00-13:00/Europe/Berlin"
        ),
        {"now": NOW},
        True,
    ),
    (
        cond(
            "current_utc_datetime", "is_in_day_of_week_time_ranges", "W/10:00-11:00/Europe/Berlin"
        ),
        {"now": NOW},
        False,
    ),
]


@pytest.mark.parametrize(("condition", "context", "allowed"), CASES)
def test_each_condition_decides(
    condition: dict[str, Any], context: dict[str, Any], allowed: bool
) -> None:
    policy = rule(ENGINEERING, condition)
    decision = evaluate({ENGINEERING}, [policy], ctx(**context))
    assert decision.allowed is allowed
    if allowed:
        assert decision.policy_id == policy.policy_id
        assert decision.violated == ()
    else:
        assert decision.policy_id is None
        assert decision.violated == policy.conditions


def test_all_conditions_of_a_policy_must_pass() -> None:
    policy = rule(
        ENGINEERING,
        cond("remote_ip", "is_in_cidr", "10.0.0.0/8"),
        cond("remote_ip_location_region", "is_in", "DE"),
        cond("client_verified", "is", "true"),
    )
    assert evaluate({ENGINEERING}, [policy], ctx()).allowed
    decision = evaluate({ENGINEERING}, [policy], ctx(country="US", verified=False))
    assert not decision.allowed
    assert decision.violated == (policy.conditions[1], policy.conditions[2])


def test_a_denial_lists_the_failed_conditions_of_every_applying_policy_once() -> None:
    verified = cond("client_verified", "is", "true")
    first = rule(ENGINEERING, verified, cond("remote_ip_location_region", "is_in", "FR"))
    second = rule(SALES, verified)
    not_mine = rule(uuid4(), cond("remote_ip", "is_in_cidr", "192.0.2.0/24"))
    decision = evaluate({ENGINEERING, SALES}, [first, not_mine, second], ctx(verified=False))
    assert not decision.allowed
    assert decision.violated == first.conditions  # verified (once) and the region
    assert not_mine.conditions[0] not in decision.violated


def test_one_granting_policy_is_enough() -> None:
    failing = rule(ENGINEERING, cond("client_verified", "is", "true"))
    granting = rule(SALES, cond("remote_ip_location_region", "is_in", "DE"))
    decision = evaluate({ENGINEERING, SALES}, [failing, granting], ctx(verified=False))
    assert decision.allowed
    assert decision.policy_id == granting.policy_id
    assert decision.violated == ()


def window(value: str) -> dict[str, Any]:
    return cond("current_utc_datetime", "is_in_day_of_week_time_ranges", value)


def test_the_grant_expires_at_the_end_of_the_time_window() -> None:
    policy = rule(ENGINEERING, window("W/09:00-17:00/UTC"))
    decision = evaluate({ENGINEERING}, [policy], ctx())
    assert decision.expires_at == datetime(2026, 5, 13, 17, 0, tzinfo=UTC)


def test_the_grant_expires_with_the_session_when_that_comes_first() -> None:
    policy = rule(ENGINEERING, window("W/09:00-17:00/UTC"))
    early = NOW + timedelta(hours=1)
    late = NOW + timedelta(hours=10)
    assert evaluate({ENGINEERING}, [policy], ctx(session_expires_at=early)).expires_at == early
    assert evaluate({ENGINEERING}, [policy], ctx(session_expires_at=late)).expires_at == datetime(
        2026, 5, 13, 17, 0, tzinfo=UTC
    )


def test_the_longest_lasting_grant_wins() -> None:
    noon = rule(ENGINEERING, window("W/09:00-12:00/UTC"))
    five = rule(SALES, window("W/10:00-17:00/UTC"))
    denied = rule(SALES, cond("client_verified", "is", "true"), window("W/true/UTC"))
    for order in ([noon, five, denied], [denied, five, noon], [five, noon]):
        decision = evaluate({ENGINEERING, SALES}, order, ctx(verified=False))
        assert decision.policy_id == five.policy_id
        assert decision.expires_at == datetime(2026, 5, 13, 17, 0, tzinfo=UTC)
    unlimited = rule(ENGINEERING)
    decision = evaluate({ENGINEERING, SALES}, [noon, five, unlimited], ctx())
    assert decision.policy_id == unlimited.policy_id
    assert decision.expires_at is None


def test_when_the_session_caps_every_grant_the_first_in_order_wins() -> None:
    noon = rule(ENGINEERING, window("W/09:00-12:00/UTC"))
    five = rule(SALES, window("W/10:00-17:00/UTC"))
    session = NOW + timedelta(minutes=5)
    for order in ([noon, five], [five, noon]):
        decision = evaluate({ENGINEERING, SALES}, order, ctx(session_expires_at=session))
        assert decision.policy_id == order[0].policy_id
        assert decision.expires_at == session


def test_equal_window_ends_go_to_the_first_in_order() -> None:
    a = rule(ENGINEERING, window("W/09:00-17:00/UTC"))
    b = rule(SALES, window("W/10:00-17:00/UTC"))
    assert evaluate({ENGINEERING, SALES}, [a, b], ctx()).policy_id == a.policy_id
    assert evaluate({ENGINEERING, SALES}, [b, a], ctx()).policy_id == b.policy_id


def test_a_condition_built_directly_behaves_like_a_parsed_one() -> None:
    direct = Condition("remote_ip", "is_in_cidr", ("10.0.0.0/8",))
    policy = PolicyRule(uuid4(), ENGINEERING, RESOURCE, (direct,))
    assert evaluate({ENGINEERING}, [policy], ctx(ip="10.0.0.1")).allowed
    assert not evaluate({ENGINEERING}, [policy], ctx(ip="11.0.0.1")).allowed


def test_the_context_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ctx(now=datetime(2026, 5, 13, 10, 30))
    with pytest.raises(ValueError, match="timezone-aware"):
        ctx(session_expires_at=datetime(2026, 5, 13, 10, 30))
