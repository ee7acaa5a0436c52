"""Parsing policy conditions: what admins may write, the canonical form, and the errors."""

from __future__ import annotations

from typing import Any

import pytest

from policies.evaluation import Condition, conditions_to_json, parse_condition, parse_conditions
from policies.validation import InvalidInput

PROVIDER = "6f1c1b3e-8a7b-4c1d-9e4f-0123456789ab"


def cond(prop: str, op: str, *values: Any) -> dict[str, Any]:
    return {"property": prop, "operator": op, "values": list(values)}


def test_it_parses_every_property_and_operator() -> None:
    raw = [
        cond("remote_ip", "is_in_cidr", "10.0.0.0/8"),
        cond("remote_ip_location_region", "is_not_in", "de"),
        cond("provider_id", "is_in", PROVIDER),
        cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "M/true/UTC"),
        cond("client_verified", "is", "true"),
    ]
    parsed = parse_conditions(raw)
    assert [(c.property, c.operator) for c in parsed] == [
        (r["property"], r["operator"]) for r in raw
    ]
    assert parse_conditions([cond("remote_ip", "is_not_in_cidr", "::/0")])[0].values == ("::/0",)
    assert parse_conditions([]) == ()


def test_it_stores_canonical_values() -> None:
    raw = [
        cond("remote_ip", "is_in_cidr", " 10.1.2.3/8", "2001:DB8::/32", "10.0.0.0/8", "1.2.3.4"),
        cond("remote_ip_location_region", "is_in", "de", " Fr ", "DE"),
        cond("provider_id", "is_not_in", PROVIDER.upper(), "legacy-provider"),
        cond(
            "current_utc_datetime",
            "is_in_day_of_week_time_ranges",
            "fmtwr/13:00-17:00, 9:00-12:30,12:00-12:45/Europe/Berlin",
            "U/00:00-24:00/UTC",
        ),
        cond("client_verified", "is", "TRUE"),
    ]
    assert conditions_to_json(parse_conditions(raw)) == [
        cond("remote_ip", "is_in_cidr", "10.0.0.0/8", "2001:db8::/32", "1.2.3.4/32"),
        cond("remote_ip_location_region", "is_in", "DE", "FR"),
        cond("provider_id", "is_not_in", PROVIDER, "legacy-provider"),
        cond(
            "current_utc_datetime",
            "is_in_day_of_week_time_ranges",
            "MTWRF/09:00-12:45,13:00-17:00/Europe/Berlin",
            "U/true/UTC",
        ),
        cond("client_verified", "is", "true"),
    ]


def test_ipv4_mapped_ranges_are_stored_as_ipv4() -> None:
    (c,) = parse_conditions([cond("remote_ip", "is_in_cidr", "::ffff:10.0.0.0/104")])
    assert c.values == ("10.0.0.0/8",)


def test_the_canonical_form_parses_back_to_equal_conditions() -> None:
    raw = [
        cond("remote_ip", "is_in_cidr", "10.1.2.3/8"),
        cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "RM/9:00-10:00/UTC"),
    ]
    parsed = parse_conditions(raw)
    again = parse_conditions(conditions_to_json(parsed))
    assert again == parsed
    assert conditions_to_json(again) == conditions_to_json(parsed)


def test_conditions_compare_and_hash_by_canonical_values() -> None:
    a = Condition("remote_ip_location_region", "is_in", ("de",))
    b = parse_condition(cond("remote_ip_location_region", "is_in", "DE"))
    c = Condition("remote_ip_location_region", "is_in", ("FR",))
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert "_data" not in repr(a)


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        ("nope", "conditions", "must be a list"),
        ({"property": "remote_ip"}, "conditions", "must be a list"),
        (["x"], "conditions[0]", "must be an object"),
        ([{**cond("client_verified", "is", "true"), "extra": 1}], "conditions[0]", "extra"),
        ([{"operator": "is", "values": ["true"]}], "conditions[0].property", "'property'"),
        ([{"property": "client_verified", "values": ["true"]}], "conditions[0].operator", "needs"),
        ([{"property": "client_verified", "operator": "is"}], "conditions[0].values", "needs"),
        ([cond("device_os", "is", "linux")], "conditions[0].property", "unknown property"),
        ([{"property": 5, "operator": "is", "values": []}], "conditions[0]", "strings"),
        ([cond("remote_ip", "is_in", "10.0.0.0/8")], "conditions[0].operator", "is_in_cidr"),
        (
            [cond("remote_ip_location_region", "is_in_cidr", "DE")],
            "conditions[0].operator",
            "is_in",
        ),
        ([cond("provider_id", "is", PROVIDER)], "conditions[0].operator", "is_not_in"),
        ([cond("client_verified", "is_in", "true")], "conditions[0].operator", "does not apply"),
        (
            [cond("current_utc_datetime", "is_in", "M/true/UTC")],
            "conditions[0].operator",
            "is_in_day_of_week_time_ranges",
        ),
        ([cond("remote_ip", "is_in_cidr")], "conditions[0].values", "at least one"),
        (
            [{"property": "remote_ip", "operator": "is_in_cidr", "values": "10.0.0.0/8"}],
            "conditions[0].values",
            "list of strings",
        ),
        ([cond("remote_ip", "is_in_cidr", 10)], "conditions[0].values[0]", "must be a string"),
        ([cond("remote_ip", "is_in_cidr", "10.0.0.0/33")], "conditions[0].values[0]", "CIDR"),
        ([cond("remote_ip", "is_in_cidr", "1.2.3.4", "x")], "conditions[0].values[1]", "'x'"),
        ([cond("remote_ip", "is_in_cidr", "fe80::1%eth0")], "conditions[0].values[0]", "CIDR"),
        ([cond("remote_ip_location_region", "is_in", "DEU")], "conditions[0].values[0]", "two"),
        ([cond("remote_ip_location_region", "is_in", "D1")], "conditions[0].values[0]", "two"),
        ([cond("remote_ip_location_region", "is_in", "")], "conditions[0].values[0]", "two"),
        ([cond("provider_id", "is_in", " ")], "conditions[0].values[0]", "empty"),
        ([cond("client_verified", "is", "false")], "conditions[0].values", '"true"'),
        ([cond("client_verified", "is", "true", "true")], "conditions[0].values", '"true"'),
        (
            [cond("client_verified", "is", "true"), cond("client_verified", "is", "true")],
            "conditions[1].property",
            "at most one condition per property",
        ),
        (
            [
                cond("remote_ip", "is_in_cidr", "10.0.0.0/8"),
                cond("remote_ip", "is_not_in_cidr", "10.1.0.0/16"),
            ],
            "conditions[1].property",
            "already used by condition 1",
        ),
    ],
)
def test_it_refuses_bad_conditions_naming_where(raw: Any, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_conditions(raw)
    assert info.value.field == field
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("M/09:00-17:00", "DAYS/RANGES/ZONE"),
        ("M", "DAYS/RANGES/ZONE"),
        ("/09:00-17:00/UTC", "letters from M T W R F S U"),
        ("X/09:00-17:00/UTC", "letters from M T W R F S U"),
        ("Mon/09:00-17:00/UTC", "letters from M T W R F S U"),
        ("MM/09:00-17:00/UTC", "repeat"),
        ("M/09:00/UTC", "range like"),
        ("M//UTC", "range like"),
        ("M/9-17/UTC", "time like"),
        ("M/09:0-17:00/UTC", "time like"),
        ("M/09:00-17:60/UTC", "time of day"),
        ("M/25:00-26:00/UTC", "time of day"),
        ("M/24:00-24:00/UTC", "time of day"),
        ("M/09:00-24:01/UTC", "time of day"),
        ("M/17:00-09:00/UTC", "across midnight"),
        ("M/09:00-09:00/UTC", "end after"),
        ("M/09:00-17:00,/UTC", "range like"),
        ("M/09:00-17:00/", "time zone is required"),
        ("M/09:00-17:00/Mars/Olympus", "unknown time zone"),
        ("M/09:00-17:00/../../etc/passwd", "unknown time zone"),
        ("M/09:00-17:00//etc/passwd", "unknown time zone"),
        ("M/09:00-17:00/America", "unknown time zone"),
        ("M/٠٩:00-17:00/UTC", "time like"),
    ],
)
def test_it_refuses_bad_time_windows(value: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_conditions(
            [
                cond("client_verified", "is", "true"),
                cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "M/true/UTC", value),
            ]
        )
    assert info.value.field == "conditions[1].values[1]"
    assert fragment in str(info.value)
    assert str(info.value).startswith("Condition 2 (current_utc_datetime): value 2:")


def test_time_windows_accept_24_00_as_the_end_of_the_day() -> None:
    (c,) = parse_conditions(
        [cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "S/18:00-24:00/UTC")]
    )
    assert c.values == ("S/18:00-24:00/UTC",)


def test_cached_parsing_returns_the_same_compiled_conditions() -> None:
    from policies.evaluation import parse_conditions_cached

    raw = [cond("remote_ip", "is_in_cidr", "10.0.0.0/8"), cond("client_verified", "is", "true")]
    first = parse_conditions_cached(raw)
    again = parse_conditions_cached([dict(c) for c in raw])
    assert first is again
    assert first == parse_conditions(raw)
    assert parse_conditions_cached([cond("client_verified", "is", "true")]) != first
    with pytest.raises(InvalidInput):
        parse_conditions_cached([cond("client_verified", "is", "false")])
    with pytest.raises(InvalidInput):
        parse_conditions_cached([cond("remote_ip", "is_in_cidr", object())])


def test_time_zone_names_are_stored_in_their_canonical_spelling() -> None:
    (c,) = parse_conditions(
        [cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "M/true/europe/berlin")]
    )
    assert c.values == ("M/true/Europe/Berlin",)
    with pytest.raises(InvalidInput, match="unknown time zone"):
        parse_conditions(
            [cond("current_utc_datetime", "is_in_day_of_week_time_ranges", "M/true/europe/berlinx")]
        )
