"""DNS resource wildcards: what each pattern covers and which pattern wins."""

from __future__ import annotations

import pytest

from policies.validation import dns_pattern_matches, most_specific_pattern, pattern_specificity


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        # exact
        ("example.com", "example.com", True),
        ("example.com", "EXAMPLE.com.", True),
        ("Example.COM.", "example.com", True),
        ("example.com", "www.example.com", False),
        ("www.example.com", "example.com", False),
        ("example.com", "example.co", False),
        # ? is exactly one character
        ("web-?.example.com", "web-1.example.com", True),
        ("web-?.example.com", "web-.example.com", False),
        ("web-?.example.com", "web-12.example.com", False),
        ("??.example.com", "ab.example.com", True),
        ("??.example.com", "abc.example.com", False),
        ("?.example.com", "example.com", False),
        # * is any run of characters inside one label
        ("*.example.com", "www.example.com", True),
        ("*.example.com", "example.com", True),  # a leading * also matches no label
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "wwwexample.com", False),
        ("*.example.com", "www.example.org", False),
        ("web*.example.com", "web.example.com", True),
        ("web*.example.com", "web-01.example.com", True),
        ("web*.example.com", "api.example.com", False),
        ("*-prod.example.com", "db-prod.example.com", True),
        ("*-prod.example.com", "db-prod2.example.com", False),
        ("a*b*c.example.com", "axxbyyc.example.com", True),
        ("a*b*c.example.com", "axxbyy.example.com", False),
        ("w*b.example.com", "wb.example.com", True),
        ("*a.example.com", "aaaa.example.com", True),
        ("x.*.example.com", "x.y.example.com", True),
        ("x.*.example.com", "x.example.com", False),  # only a leading * may match no label
        ("x.*.example.com", "x.y.z.example.com", False),
        ("*.*.example.com", "a.b.example.com", True),
        ("*.*.example.com", "b.example.com", True),
        ("*.*.example.com", "example.com", False),
        # ** is zero or more whole labels
        ("**.example.com", "example.com", True),
        ("**.example.com", "a.example.com", True),
        ("**.example.com", "a.b.c.example.com", True),
        ("**.example.com", "a.b.c.example.org", False),
        ("**.example.com", "badexample.com", False),
        ("a.**.example.com", "a.example.com", True),
        ("a.**.example.com", "a.x.y.example.com", True),
        ("a.**.example.com", "b.x.example.com", False),
        ("**.a.**.example.com", "x.a.y.example.com", True),
        ("**.a.**.example.com", "x.b.y.example.com", False),
        ("?.**.example.com", "a.b.example.com", True),
        ("?.**.example.com", "ab.example.com", False),
    ],
)
def test_wildcard_matching(pattern: str, name: str, matches: bool) -> None:
    assert dns_pattern_matches(pattern, name) is matches


def test_most_specific_pattern_prefers_exact_then_question_then_star_then_double_star() -> None:
    patterns = ["**.example.com", "*.example.com", "ap?.example.com", "api.example.com"]
    assert most_specific_pattern(patterns, "api.example.com") == "api.example.com"
    assert most_specific_pattern(patterns, "apx.example.com") == "ap?.example.com"
    assert most_specific_pattern(patterns, "web.example.com") == "*.example.com"
    assert most_specific_pattern(patterns, "a.web.example.com") == "**.example.com"
    assert most_specific_pattern(patterns, "example.org") is None
    assert most_specific_pattern([], "example.com") is None


def test_order_of_the_input_does_not_change_the_winner() -> None:
    patterns = ["**.example.com", "*.example.com", "ap?.example.com", "api.example.com"]
    for name in ("api.example.com", "apx.example.com", "web.example.com", "x.y.example.com"):
        assert most_specific_pattern(patterns, name) == most_specific_pattern(
            list(reversed(patterns)), name
        )


def test_among_equal_kinds_more_literal_characters_win() -> None:
    # Both are *-patterns; the longer literal part is more specific.
    assert (
        most_specific_pattern(["*.example.com", "*.eu.example.com"], "x.eu.example.com")
        == "*.eu.example.com"
    )
    assert (
        most_specific_pattern(["**.example.com", "**.eu.example.com"], "a.b.eu.example.com")
        == "**.eu.example.com"
    )
    assert most_specific_pattern(["web*.example.com", "*.example.com"], "web1.example.com") == (
        "web*.example.com"
    )
    # A ?-pattern beats a *-pattern even with fewer literal characters.
    assert most_specific_pattern(["*.example.com", "?.example.com"], "a.example.com") == (
        "?.example.com"
    )
    # An exact pattern beats everything, and a *-pattern beats any **-pattern.
    assert most_specific_pattern(["**.a.example.com", "*.example.com"], "a.example.com") == (
        "*.example.com"
    )


def test_ties_fall_back_to_fewer_wildcards_then_the_pattern_text() -> None:
    assert pattern_specificity("a?.example.com") < pattern_specificity("??.example.com")
    # Same kind, literal count and wildcard count: the smaller text wins ("?" sorts before "a").
    assert most_specific_pattern(["?b.example.com", "a?.example.com"], "ab.example.com") == (
        "?b.example.com"
    )
    assert most_specific_pattern(["a?.example.com", "?b.example.com"], "ab.example.com") == (
        "?b.example.com"
    )


def test_most_specific_pattern_returns_the_pattern_as_given() -> None:
    assert most_specific_pattern(["*.Example.COM."], "www.example.com") == "*.Example.COM."
