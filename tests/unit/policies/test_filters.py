"""Resource filters: parsing user input into canonical protocol/port filters and back."""

from __future__ import annotations

from typing import Any

import pytest

from policies.validation import (
    Filter,
    InvalidInput,
    PortRange,
    filters_allow,
    filters_to_json,
    parse_filters,
)


def test_an_empty_list_means_no_filters() -> None:
    assert parse_filters([]) == ()
    assert filters_to_json(()) == []


def test_it_parses_single_ports_and_ranges() -> None:
    filters = parse_filters([{"protocol": "tcp", "ports": ["443", "1000-2000"]}])
    assert filters == (Filter("tcp", (PortRange(443, 443), PortRange(1000, 2000))),)
    assert filters_to_json(filters) == [{"protocol": "tcp", "ports": ["443", "1000-2000"]}]


def test_it_canonicalizes_order_case_spaces_ints_and_overlaps() -> None:
    filters = parse_filters(
        [
            {"protocol": "UDP", "ports": [53]},
            {"protocol": " tcp ", "ports": ["8080", " 80 - 90 ", "85-100", "101", "22"]},
            {"protocol": "icmp"},
        ]
    )
    assert filters_to_json(filters) == [
        {"protocol": "icmp", "ports": []},
        {"protocol": "tcp", "ports": ["22", "80-101", "8080"]},
        {"protocol": "udp", "ports": ["53"]},
    ]


def test_a_range_covering_every_port_is_stored_as_all_ports() -> None:
    assert parse_filters([{"protocol": "tcp", "ports": ["1-65535"]}]) == (Filter("tcp", ()),)
    assert parse_filters([{"protocol": "tcp", "ports": ["1-100", "101-65535"]}]) == (
        Filter("tcp", ()),
    )
    assert parse_filters([{"protocol": "tcp", "ports": ["2-65535"]}]) != (Filter("tcp", ()),)


def test_missing_or_null_ports_mean_all_ports() -> None:
    assert parse_filters([{"protocol": "udp"}]) == (Filter("udp", ()),)
    assert parse_filters([{"protocol": "udp", "ports": None}]) == (Filter("udp", ()),)


@pytest.mark.parametrize(
    ("raw", "field", "fragment"),
    [
        (None, "filters", "must be a list"),
        ({"protocol": "tcp"}, "filters", "must be a list"),
        (["tcp"], "filters[0]", "must be an object"),
        ([{"protocol": "tcp", "port": ["80"]}], "filters[0]", "unknown keys: port"),
        ([{"ports": ["80"]}], "filters[0].protocol", "tcp, udp or icmp"),
        ([{"protocol": "sctp"}], "filters[0].protocol", "tcp, udp or icmp"),
        ([{"protocol": 6}], "filters[0].protocol", "tcp, udp or icmp"),
        (
            [{"protocol": "tcp"}, {"protocol": "TCP", "ports": ["80"]}],
            "filters[1].protocol",
            "already",
        ),
        ([{"protocol": "icmp", "ports": ["8"]}], "filters[0].ports", "icmp has no ports"),
        ([{"protocol": "tcp", "ports": "80"}], "filters[0].ports", "must be a list"),
        ([{"protocol": "tcp", "ports": ["0"]}], "filters[0].ports[0]", "outside 1-65535"),
        ([{"protocol": "tcp", "ports": ["65536"]}], "filters[0].ports[0]", "outside 1-65535"),
        ([{"protocol": "tcp", "ports": ["80", "0-10"]}], "filters[0].ports[1]", "outside"),
        ([{"protocol": "udp", "ports": ["2000-1000"]}], "filters[0].ports[0]", "ends before"),
        ([{"protocol": "tcp", "ports": ["http"]}], "filters[0].ports[0]", "not a port"),
        ([{"protocol": "tcp", "ports": ["1-2-3"]}], "filters[0].ports[0]", "not a port"),
        ([{"protocol": "tcp", "ports": ["-5"]}], "filters[0].ports[0]", "not a port"),
        ([{"protocol": "tcp", "ports": ["+5"]}], "filters[0].ports[0]", "not a port"),
        ([{"protocol": "tcp", "ports": [""]}], "filters[0].ports[0]", "not a port"),
        ([{"protocol": "tcp", "ports": ["٣"]}], "filters[0].ports[0]", "not a port"),
        ([{"protocol": "tcp", "ports": [80.0]}], "filters[0].ports[0]", "must be text"),
        ([{"protocol": "tcp", "ports": [True]}], "filters[0].ports[0]", "must be text"),
        ([{"protocol": "tcp", "ports": [None]}], "filters[0].ports[0]", "must be text"),
        ([{"protocol": "tcp"}, {"protocol": "udp", "ports": ["x"]}], "filters[1].ports[0]", "2"),
    ],
)
def test_it_refuses_bad_filters_naming_where(raw: Any, field: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_filters(raw)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_port_ranges_refuse_bad_bounds_directly() -> None:
    with pytest.raises(InvalidInput):
        PortRange(0, 10)
    with pytest.raises(InvalidInput):
        PortRange(10, 9)
    assert 10 in PortRange(5, 10)
    assert 11 not in PortRange(5, 10)
    assert str(PortRange(7, 7)) == "7"


def test_filters_allow_matches_protocol_and_port() -> None:
    filters = parse_filters([{"protocol": "tcp", "ports": ["443"]}, {"protocol": "icmp"}])
    assert filters_allow(filters, "tcp", 443)
    assert not filters_allow(filters, "tcp", 80)
    assert not filters_allow(filters, "udp", 443)
    assert filters_allow(filters, "icmp", None)
    assert not filters_allow(filters, "tcp", None)
    assert filters_allow((), "udp", 9)  # no filters: everything
