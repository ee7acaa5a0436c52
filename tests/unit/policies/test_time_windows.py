"""Time-window conditions in real zones: daylight-saving days, joined windows, window ends.

Transitions used (from the tz database):
- Europe/Berlin 2026-03-29 01:00 UTC: 02:00 CET -> 03:00 CEST (spring forward)
- Europe/Berlin 2026-10-25 01:00 UTC: 03:00 CEST -> 02:00 CET (fall back)
- America/New_York 2026-03-08 07:00 UTC: 02:00 EST -> 03:00 EDT
- America/New_York 2026-11-01 06:00 UTC: 02:00 EDT -> 01:00 EST
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from policies.evaluation import ClientContext, Decision, PolicyRule, evaluate, parse_conditions

GROUP = uuid4()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def decide(now: datetime, *values: str, session: datetime | None = None) -> Decision:
    conditions = parse_conditions(
        [
            {
                "property": "current_utc_datetime",
                "operator": "is_in_day_of_week_time_ranges",
                "values": list(values),
            }
        ]
    )
    policy = PolicyRule(uuid4(), GROUP, uuid4(), conditions)
    return evaluate({GROUP}, [policy], ClientContext(None, None, None, False, now, session))


def expires(now: str, *values: str) -> datetime | bool | None:
    """The window end, or False when denied."""
    decision = decide(at(now), *values)
    return decision.expires_at if decision.allowed else False


BERLIN_SPRING = "U/01:00-03:00/Europe/Berlin"


@pytest.mark.parametrize(
    ("now", "result"),
    [
        ("2026-03-28T23:59:59+00:00", False),  # 00:59:59 CET
        ("2026-03-29T00:00:00+00:00", at("2026-03-29T01:00:00+00:00")),  # 01:00 CET
        ("2026-03-29T00:59:59+00:00", at("2026-03-29T01:00:00+00:00")),  # 01:59:59 CET
        ("2026-03-29T01:00:00+00:00", False),  # 03:00 CEST: the window lasted one real hour
    ],
)
def test_berlin_spring_forward_shortens_a_window_to_one_real_hour(
    now: str, result: datetime | bool
) -> None:
    assert expires(now, BERLIN_SPRING) == result


BERLIN_AUTUMN = "U/01:00-03:00/Europe/Berlin"


@pytest.mark.parametrize(
    ("now", "result"),
    [
        ("2026-10-24T22:59:00+00:00", False),  # 00:59 CEST
        ("2026-10-24T23:00:00+00:00", at("2026-10-25T02:00:00+00:00")),  # 01:00 CEST
        ("2026-10-25T00:30:00+00:00", at("2026-10-25T02:00:00+00:00")),  # 02:30 CEST
        ("2026-10-25T01:30:00+00:00", at("2026-10-25T02:00:00+00:00")),  # 02:30 CET (again)
        ("2026-10-25T02:00:00+00:00", False),  # 03:00 CET: the window lasted three real hours
    ],
)
def test_berlin_fall_back_lengthens_a_window_to_three_real_hours(
    now: str, result: datetime | bool
) -> None:
    assert expires(now, BERLIN_AUTUMN) == result


def test_a_window_inside_the_repeated_hour_is_open_twice_and_ends_each_time() -> None:
    value = "U/02:10-02:40/Europe/Berlin"
    assert expires("2026-10-25T00:20:00+00:00", value) == at("2026-10-25T00:40:00+00:00")
    assert expires("2026-10-25T00:50:00+00:00", value) is False  # 02:50 CEST
    assert expires("2026-10-25T01:05:00+00:00", value) is False  # 02:05 CET
    assert expires("2026-10-25T01:20:00+00:00", value) == at("2026-10-25T01:40:00+00:00")


def test_falling_back_out_of_a_window_ends_it_at_the_transition() -> None:
    # 02:30 CEST is inside 02:15-04:00, but at 01:00 UTC the clock goes back to 02:00 CET,
    # before the window's start: access must end there, not at 04:00.
    value = "U/02:15-04:00/Europe/Berlin"
    assert expires("2026-10-25T00:30:00+00:00", value) == at("2026-10-25T01:00:00+00:00")
    assert expires("2026-10-25T01:05:00+00:00", value) is False
    assert expires("2026-10-25T01:15:00+00:00", value) == at("2026-10-25T03:00:00+00:00")


def test_a_window_touching_the_skipped_hour_is_continuous_across_it() -> None:
    # 01:00-02:15 and 02:45-05:00: the gap between them does not exist on this day.
    value = "U/01:00-02:15,02:45-05:00/Europe/Berlin"
    assert expires("2026-03-29T00:30:00+00:00", value) == at("2026-03-29T03:00:00+00:00")
    # On a normal Sunday the gap is real.
    assert expires("2026-03-22T00:30:00+00:00", value) == at("2026-03-22T01:15:00+00:00")


@pytest.mark.parametrize(
    ("now", "value", "result"),
    [
        # spring: 01:30-02:30 EST ends when the clock jumps to 03:00 EDT
        ("2026-03-08T06:45:00+00:00", "U/01:30-02:30/America/New_York", "2026-03-08T07:00:00"),
        ("2026-03-08T07:00:00+00:00", "U/01:30-02:30/America/New_York", None),
        # a window starting in the skipped hour opens when the clock jumps past its start
        ("2026-03-08T06:59:00+00:00", "U/02:30-04:00/America/New_York", None),
        ("2026-03-08T07:00:00+00:00", "U/02:30-04:00/America/New_York", "2026-03-08T08:00:00"),
        # autumn: 01:00-02:30 local is open 01:00-02:00 EDT, 01:00-02:30 EST (2.5 real hours)
        ("2026-11-01T05:00:00+00:00", "U/01:00-02:30/America/New_York", "2026-11-01T07:30:00"),
        ("2026-11-01T06:30:00+00:00", "U/01:00-02:30/America/New_York", "2026-11-01T07:30:00"),
        ("2026-11-01T07:30:00+00:00", "U/01:00-02:30/America/New_York", None),
        # a normal New York evening window in summer (EDT, UTC-4)
        ("2026-07-06T21:00:00+00:00", "M/09:00-17:30/America/New_York", "2026-07-06T21:30:00"),
    ],
)
def test_new_york_daylight_saving_days(now: str, value: str, result: str | None) -> None:
    expected = at(result + "+00:00") if result else False
    assert expires(now, value) == expected


def test_windows_that_touch_count_as_one() -> None:
    monday_10 = "2026-05-11T10:00:00+00:00"
    assert expires(monday_10, "M/09:00-12:00,12:00-17:00/UTC") == at("2026-05-11T17:00:00+00:00")
    assert expires(monday_10, "M/09:00-12:00/UTC", "M/11:00-13:00/UTC") == at(
        "2026-05-11T13:00:00+00:00"
    )
    # across midnight, written as two days
    assert expires("2026-05-11T23:00:00+00:00", "M/22:00-24:00/UTC", "T/00:00-02:00/UTC") == at(
        "2026-05-12T02:00:00+00:00"
    )
    # across the end of the week
    assert expires("2026-05-17T21:00:00+00:00", "U/20:00-24:00/UTC", "M/00:00-06:00/UTC") == at(
        "2026-05-18T06:00:00+00:00"
    )
    # whole days join: Monday to Friday all day ends on Saturday 00:00
    assert expires(monday_10, "MTWRF/true/UTC") == at("2026-05-16T00:00:00+00:00")
    # windows that do not touch: only the current one counts
    assert expires(monday_10, "M/09:00-12:00,12:01-17:00/UTC") == at("2026-05-11T12:00:00+00:00")


def test_windows_in_different_zones_join_too() -> None:
    # 09:00-17:00 Berlin (CEST) is 07:00-15:00 UTC; 15:00-18:00 UTC carries on.
    values = ("M/09:00-17:00/Europe/Berlin", "M/15:00-18:00/UTC")
    assert expires("2026-05-11T08:00:00+00:00", *values) == at("2026-05-11T18:00:00+00:00")
    assert expires("2026-05-11T16:00:00+00:00", *values) == at("2026-05-11T18:00:00+00:00")
    assert expires("2026-05-11T06:59:00+00:00", *values) is False


def test_a_window_covering_the_whole_week_has_no_end() -> None:
    assert expires("2026-05-11T08:00:00+00:00", "MTWRFSU/true/Europe/Berlin") is None
    assert expires("2026-10-25T01:30:00+00:00", "MTWRF/true/UTC", "SU/00:00-24:00/UTC") is None
    session = at("2026-05-12T00:00:00+00:00")
    decision = decide(at("2026-05-11T08:00:00+00:00"), "MTWRFSU/true/UTC", session=session)
    assert decision.expires_at == session


def test_an_endless_union_over_several_zones_is_cut_after_eight_days() -> None:
    # UTC covers Monday-Saturday, Berlin covers Sunday and early Monday: together, always.
    values = ("MTWRFS/true/UTC", "U/true/Europe/Berlin", "M/00:00-03:00/Europe/Berlin")
    now = at("2026-05-13T10:00:00+00:00")
    decision = decide(now, *values)
    assert decision.allowed
    assert decision.expires_at is not None
    assert decision.expires_at >= now + timedelta(days=8)


def test_the_window_end_does_not_depend_on_earlier_evaluations() -> None:
    # The evaluator memoizes the open window; asking out of order must not change answers.
    conditions = parse_conditions(
        [
            {
                "property": "current_utc_datetime",
                "operator": "is_in_day_of_week_time_ranges",
                "values": ["MW/09:00-17:00/UTC"],
            }
        ]
    )
    policy = PolicyRule(uuid4(), GROUP, uuid4(), conditions)

    def ends(now: str) -> datetime | bool | None:
        d = evaluate({GROUP}, [policy], ClientContext(None, None, None, False, at(now)))
        return d.expires_at if d.allowed else False

    wednesday = at("2026-05-13T17:00:00+00:00")
    monday = at("2026-05-11T17:00:00+00:00")
    assert ends("2026-05-13T10:00:00+00:00") == wednesday
    assert ends("2026-05-11T10:00:00+00:00") == monday
    assert ends("2026-05-13T16:59:59+00:00") == wednesday
    assert ends("2026-05-13T17:00:00+00:00") is False
    assert ends("2026-05-12T10:00:00+00:00") is False
    assert ends("2026-05-11T09:00:00+00:00") == monday
    assert ends("2026-05-11T08:59:59.999999+00:00") is False


def test_now_in_any_zone_is_the_same_instant() -> None:
    value = "W/12:00-13:00/Europe/Berlin"
    utc = expires("2026-05-13T10:30:00+00:00", value)
    tokyo = expires("2026-05-13T19:30:00+09:00", value)
    assert utc == tokyo == at("2026-05-13T11:00:00+00:00")


def test_santiago_changes_clocks_at_midnight() -> None:
    # 2026-09-06 04:00 UTC: Saturday 24:00 -04 becomes Sunday 01:00 -03 (midnight never happens).
    assert expires("2026-09-06T03:00:00+00:00", "S/22:00-24:00/America/Santiago") == at(
        "2026-09-06T04:00:00+00:00"
    )
    # Sunday's window from 00:00 is open from the jump on, and joins Saturday's.
    values = ("S/22:00-24:00/America/Santiago", "U/00:00-01:30/America/Santiago")
    assert expires("2026-09-06T03:00:00+00:00", *values) == at("2026-09-06T04:30:00+00:00")
    # 2026-04-05 03:00 UTC: Saturday 24:00 -03 becomes Saturday 23:00 -04 (the hour repeats).
    assert expires("2026-04-05T01:30:00+00:00", "S/22:00-24:00/America/Santiago") == at(
        "2026-04-05T04:00:00+00:00"
    )
    assert expires("2026-04-05T04:00:00+00:00", "S/22:00-24:00/America/Santiago") is False
