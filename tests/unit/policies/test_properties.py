"""Property tests: the evaluator, the wildcard matcher and the filter parser against small,
slow, obviously correct reference implementations written here from the raw inputs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from policies.evaluation import (
    ClientContext,
    Condition,
    PolicyRule,
    conditions_to_json,
    evaluate,
    parse_condition,
    parse_conditions,
)
from policies.validation import (
    dns_pattern_matches,
    filters_allow,
    filters_to_json,
    most_specific_pattern,
    parse_filters,
)

FAST = settings(max_examples=200, deadline=None, database=None)
SLOW = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- the evaluator -----------------------------------------------------------------------------

GROUPS = [UUID(int=i) for i in range(1, 5)]
PROVIDERS = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222", "x"]
COUNTRIES = ["DE", "FR", "US", "CN"]
# Lord Howe shifts by 30 minutes, Santiago changes at midnight, Kolkata has no DST.
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Asia/Kolkata",
]
# Instants near 2026's transitions in those zones, so that windows often meet one.
NEAR = [
    datetime(2026, 3, 29, 1, tzinfo=UTC),  # Berlin spring
    datetime(2026, 10, 25, 1, tzinfo=UTC),  # Berlin autumn
    datetime(2026, 3, 8, 7, tzinfo=UTC),  # New York spring
    datetime(2026, 11, 1, 6, tzinfo=UTC),  # New York autumn
    datetime(2026, 4, 4, 15, tzinfo=UTC),  # Lord Howe autumn
    datetime(2026, 10, 3, 16, tzinfo=UTC),  # Lord Howe spring
    datetime(2026, 4, 5, 3, tzinfo=UTC),  # Santiago autumn
    datetime(2026, 9, 6, 4, tzinfo=UTC),  # Santiago spring
    datetime(2026, 6, 15, 12, tzinfo=UTC),
]

v4_addresses = st.builds(
    lambda base, low: IPv4Address(base + low),
    st.sampled_from([0x0A000000, 0xC0000200]),  # 10.0.0.0, 192.0.2.0
    st.integers(0, 1023),
)
v6_addresses = st.builds(lambda low: IPv6Address((0x20010DB8 << 96) + low), st.integers(0, 1023))


@st.composite
def networks(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return str(ip_network(f"{draw(v4_addresses)}/{draw(st.integers(20, 32))}", strict=False))
    return str(ip_network(f"{draw(v6_addresses)}/{draw(st.integers(116, 128))}", strict=False))


@st.composite
def remote_ips(draw: st.DrawFn) -> IPv4Address | IPv6Address | None:
    kind = draw(st.sampled_from(["v4", "v6", "mapped", "none"]))
    if kind == "none":
        return None
    if kind == "v6":
        return draw(v6_addresses)
    v4 = draw(v4_addresses)
    return IPv6Address(f"::ffff:{v4}") if kind == "mapped" else v4


@st.composite
def window_values(draw: st.DrawFn) -> str:
    days = "".join(d for d in "MTWRFSU" if draw(st.integers(0, 2)) > 0) or "M"
    if draw(st.integers(0, 4)) == 0:
        ranges = "true"
    else:
        # quarter-hour edges, sometimes touching, sometimes overlapping
        edges = sorted(draw(st.lists(st.integers(0, 96), min_size=2, max_size=4, unique=True)))
        pairs = [(edges[i], edges[i + 1]) for i in range(0, len(edges) - 1, 2)]
        ranges = ",".join(
            f"{s // 4:02d}:{s % 4 * 15:02d}-{e // 4:02d}:{e % 4 * 15:02d}" for s, e in pairs
        )
    return f"{days}/{ranges}/{draw(st.sampled_from(ZONES))}"


def unique_lists(
    elements: st.SearchStrategy[str], max_size: int = 3
) -> st.SearchStrategy[list[str]]:
    return st.lists(elements, min_size=1, max_size=max_size, unique=True)


CONDITION_STRATEGIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "remote_ip": st.fixed_dictionaries(
        {
            "property": st.just("remote_ip"),
            "operator": st.sampled_from(["is_in_cidr", "is_not_in_cidr"]),
            "values": unique_lists(networks()),
        }
    ),
    "remote_ip_location_region": st.fixed_dictionaries(
        {
            "property": st.just("remote_ip_location_region"),
            "operator": st.sampled_from(["is_in", "is_not_in"]),
            "values": unique_lists(st.sampled_from(COUNTRIES)),
        }
    ),
    "provider_id": st.fixed_dictionaries(
        {
            "property": st.just("provider_id"),
            "operator": st.sampled_from(["is_in", "is_not_in"]),
            "values": unique_lists(st.sampled_from(PROVIDERS), 2),
        }
    ),
    "current_utc_datetime": st.fixed_dictionaries(
        {
            "property": st.just("current_utc_datetime"),
            "operator": st.just("is_in_day_of_week_time_ranges"),
            "values": unique_lists(window_values()),
        }
    ),
    "client_verified": st.just(
        {"property": "client_verified", "operator": "is", "values": ["true"]}
    ),
}


@st.composite
def raw_conditions(draw: st.DrawFn) -> list[dict[str, Any]]:
    props = draw(st.lists(st.sampled_from(sorted(CONDITION_STRATEGIES)), max_size=3, unique=True))
    return [draw(CONDITION_STRATEGIES[p]) for p in props]


@dataclass
class RawPolicy:
    policy_id: UUID
    group_id: UUID
    conditions: list[dict[str, Any]]


@st.composite
def raw_policies(draw: st.DrawFn) -> list[RawPolicy]:
    count = draw(st.integers(0, 5))
    return [
        RawPolicy(UUID(int=1000 + i), draw(st.sampled_from(GROUPS)), draw(raw_conditions()))
        for i in range(count)
    ]


@st.composite
def contexts(draw: st.DrawFn) -> ClientContext:
    base = draw(st.sampled_from(NEAR))
    now = base + timedelta(seconds=draw(st.integers(-4 * 86400, 4 * 86400)))
    now = now.astimezone(ZoneInfo(draw(st.sampled_from(ZONES))))  # any zone: same instant
    if draw(st.integers(0, 4)) == 0:
        session = None
    else:
        session = now + timedelta(minutes=draw(st.integers(1, 2880)))
    return ClientContext(
        draw(remote_ips()),
        draw(st.none() | st.sampled_from(COUNTRIES)),
        draw(st.none() | st.sampled_from(PROVIDERS)),
        draw(st.booleans()),
        now,
        session,
    )


# The reference: straight from the raw dicts, no precompilation, loops over everything.


def ref_covered(values: list[str], t: datetime) -> bool:
    for value in values:
        days, ranges, zone = value.split("/", 2)
        local = t.astimezone(ZoneInfo(zone))
        if "MTWRFSU"[local.weekday()] not in days:
            continue
        second = local.hour * 3600 + local.minute * 60 + local.second
        if ranges == "true":
            return True
        for piece in ranges.split(","):
            start, end = piece.split("-")
            sh, sm = start.split(":")
            eh, em = end.split(":")
            if int(sh) * 3600 + int(sm) * 60 <= second < int(eh) * 3600 + int(em) * 60:
                return True
    return False


def ref_passes(raw: dict[str, Any], ctx: ClientContext) -> bool:
    prop, op, values = raw["property"], raw["operator"], raw["values"]
    if prop == "remote_ip":
        ip = ctx.remote_ip
        if ip is None:
            return False
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        inside = any(ip in ip_network(v) for v in values if ip_network(v).version == ip.version)
        return inside if op == "is_in_cidr" else not inside
    if prop == "remote_ip_location_region":
        if ctx.country is None:
            return False
        return bool((ctx.country in values) == (op == "is_in"))
    if prop == "provider_id":
        if ctx.auth_provider_id is None:
            return False
        return bool((ctx.auth_provider_id in values) == (op == "is_in"))
    if prop == "current_utc_datetime":
        return ref_covered(values, ctx.now)
    if prop == "client_verified":
        return ctx.verified
    raise AssertionError(prop)


BEYOND = "beyond the scanned horizon"
HORIZON = timedelta(days=2, minutes=1)


def ref_window_end(values: list[str], now: datetime, until: datetime) -> datetime | str:
    """Every window edge and offset change falls on a whole UTC minute for these zones, so
    coverage is constant within a minute: scan minute by minute."""
    t = now.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    while t <= until:
        if not ref_covered(values, t):
            return t
        t += timedelta(minutes=1)
    return BEYOND


def ref_evaluate(
    groups: set[UUID], policies: list[RawPolicy], ctx: ClientContext
) -> tuple[bool, list[UUID], datetime | str | None, list[dict[str, Any]]]:
    """(allowed, acceptable winners, expiry, violated raw conditions)."""
    grants: list[tuple[RawPolicy, datetime | str | None]] = []
    violated: list[dict[str, Any]] = []
    for policy in policies:
        if policy.group_id not in groups:
            continue
        failed = [c for c in policy.conditions if not ref_passes(c, ctx)]
        if failed:
            violated.extend(failed)
            continue
        expiry: datetime | str | None = ctx.session_expires_at
        for c in policy.conditions:
            if c["property"] == "current_utc_datetime":
                until = ctx.session_expires_at or ctx.now + HORIZON
                end = ref_window_end(c["values"], ctx.now, until)
                if end != BEYOND:
                    expiry = end  # before the session (or the horizon), so the earlier
                elif ctx.session_expires_at is None:
                    expiry = BEYOND
        grants.append((policy, expiry))
    if not grants:
        return False, [], None, violated

    def rank(e: datetime | str | None) -> tuple[int, datetime]:
        if e is None:
            return (2, ctx.now)
        if e == BEYOND:
            return (1, ctx.now)
        assert isinstance(e, datetime)
        return (0, e)

    if any(e == BEYOND for _, e in grants):
        # Unlimited or just long: any grant that may be unlimited could win.
        return True, [p.policy_id for p, e in grants if e is None or e == BEYOND], BEYOND, []
    best = max(rank(e) for _, e in grants)
    winner = next((p, e) for p, e in grants if rank(e) == best)
    return True, [winner[0].policy_id], winner[1], []


@SLOW
@given(
    groups=st.sets(st.sampled_from(GROUPS)),
    policies=raw_policies(),
    ctx=contexts(),
)
def test_the_evaluator_agrees_with_the_reference(
    groups: set[UUID], policies: list[RawPolicy], ctx: ClientContext
) -> None:
    rules = [
        PolicyRule(p.policy_id, p.group_id, UUID(int=7), parse_conditions(p.conditions))
        for p in policies
    ]
    decision = evaluate(frozenset(groups), rules, ctx)
    allowed, winners, expiry, violated = ref_evaluate(groups, policies, ctx)
    timed = allowed and any(
        c["property"] == "current_utc_datetime"
        for p in policies
        if p.policy_id == decision.policy_id
        for c in p.conditions
    )
    event("denied" if not allowed else "granted in a time window" if timed else "granted")
    assert decision.allowed is allowed
    if not allowed:
        assert decision.policy_id is None
        assert decision.expires_at is None
        expected: list[Condition] = []
        for raw in violated:
            c = parse_condition(raw)
            if c not in expected:
                expected.append(c)
        assert list(decision.violated) == expected
        return
    assert decision.violated == ()
    assert decision.policy_id in winners
    if expiry == BEYOND:
        assert decision.expires_at is None or decision.expires_at > ctx.now + HORIZON
    else:
        assert decision.expires_at == expiry


@FAST
@given(raw=raw_conditions())
def test_canonical_conditions_parse_back_to_themselves(raw: list[dict[str, Any]]) -> None:
    parsed = parse_conditions(raw)
    again = parse_conditions(conditions_to_json(parsed))
    assert again == parsed
    assert conditions_to_json(again) == conditions_to_json(parsed)


@SLOW
@given(
    values=unique_lists(window_values()),
    base=st.sampled_from(NEAR),
    offset=st.integers(-86400, 86400),
    zone=st.sampled_from(ZONES),
)
def test_time_windows_agree_with_the_reference(
    values: list[str], base: datetime, offset: int, zone: str
) -> None:
    now = (base + timedelta(seconds=offset)).astimezone(ZoneInfo(zone))
    session = now + HORIZON
    raw = {"property": "current_utc_datetime", "operator": "is_in_day_of_week_time_ranges"}
    rule = PolicyRule(
        UUID(int=1), GROUPS[0], UUID(int=2), parse_conditions([{**raw, "values": values}])
    )
    decision = evaluate({GROUPS[0]}, [rule], ClientContext(None, None, None, False, now, session))
    covered = ref_covered(values, now)
    assert decision.allowed is covered
    event("open" if covered else "closed")
    if covered:
        end = ref_window_end(values, now, session)
        assert decision.expires_at == (session if end == BEYOND else end)
        assert decision.expires_at is not None
        if decision.expires_at < session:
            event("window ends before the session")


@SLOW
@given(
    values=unique_lists(window_values()),
    base=st.sampled_from(NEAR),
    offsets=st.lists(st.integers(-2 * 86400, 2 * 86400), min_size=2, max_size=12),
)
def test_one_condition_asked_many_times_answers_like_the_reference(
    values: list[str], base: datetime, offsets: list[int]
) -> None:
    # The same compiled condition across calls, as the portal keeps it: its memos of open and
    # closed stretches must never change an answer, whatever order the instants come in.
    raw = {"property": "current_utc_datetime", "operator": "is_in_day_of_week_time_ranges"}
    rule = PolicyRule(
        UUID(int=1), GROUPS[0], UUID(int=2), parse_conditions([{**raw, "values": values}])
    )
    for offset in offsets + sorted(offsets):
        now = base + timedelta(seconds=offset)
        session = now + timedelta(hours=6)
        decision = evaluate(
            {GROUPS[0]}, [rule], ClientContext(None, None, None, False, now, session)
        )
        assert decision.allowed is ref_covered(values, now), now
        if decision.allowed:
            end = ref_window_end(values, now, session)
            assert decision.expires_at == (session if end == BEYOND else end), now


@st.composite
def timed_policies(draw: st.DrawFn) -> list[RawPolicy]:
    out = []
    for i in range(draw(st.integers(1, 4))):
        conditions = []
        if draw(st.integers(0, 4)) > 0:
            values = draw(unique_lists(window_values(), 2))
            conditions.append({**TIME_RAW, "values": values})
        out.append(RawPolicy(UUID(int=2000 + i), GROUPS[i % 2], conditions))
    return out


TIME_RAW = {"property": "current_utc_datetime", "operator": "is_in_day_of_week_time_ranges"}


@SLOW
@given(
    policies=timed_policies(),
    base=st.sampled_from(NEAR),
    offset=st.integers(-86400, 86400),
    session_minutes=st.none() | st.integers(1, 2880),
)
def test_the_longest_grant_wins_like_the_reference(
    policies: list[RawPolicy], base: datetime, offset: int, session_minutes: int | None
) -> None:
    now = base + timedelta(seconds=offset)
    session = None if session_minutes is None else now + timedelta(minutes=session_minutes)
    ctx = ClientContext(None, None, None, False, now, session)
    rules = [
        PolicyRule(p.policy_id, p.group_id, UUID(int=7), parse_conditions(p.conditions))
        for p in policies
    ]
    decision = evaluate(frozenset(GROUPS[:2]), rules, ctx)
    allowed, winners, expiry, _ = ref_evaluate(set(GROUPS[:2]), policies, ctx)
    assert decision.allowed is allowed
    if not allowed:
        return
    assert decision.policy_id in winners
    granted = sum(
        1 for p in policies if all(ref_passes(c, ctx) for c in p.conditions) and p.conditions
    )
    event(f"{min(granted, 2)}{'+' if granted >= 2 else ''} timed grants")
    if expiry == BEYOND:
        assert decision.expires_at is None or decision.expires_at > now + HORIZON
    else:
        assert decision.expires_at == expiry


# --- wildcards ---------------------------------------------------------------------------------

name_labels = st.text(alphabet="abAB-", min_size=1, max_size=4)
pattern_labels = st.one_of(
    st.text(alphabet="ab-*?", min_size=1, max_size=4).filter(lambda s: "**" not in s),
    st.just("**"),
    st.just("*"),
)


def ref_matches(pattern: str, name: str) -> bool:
    """Translate the pattern into one regular expression over the name plus a final dot."""
    labels = pattern.lower().rstrip(".").split(".")
    parts = []
    for i, label in enumerate(labels):
        if label == "**":
            parts.append(r"(?:[^.]+\.)*")
        elif i == 0 and label == "*":
            parts.append(r"(?:[^.]*\.)?")
        else:
            glob = "".join(
                "[^.]*" if c == "*" else "[^.]" if c == "?" else re.escape(c) for c in label
            )
            parts.append(glob + r"\.")
    return re.fullmatch("".join(parts), name.lower().rstrip(".") + ".") is not None


def ref_rank(pattern: str) -> int:
    labels = pattern.lower().rstrip(".").split(".")
    if "**" in labels:
        return 3
    if "*" in pattern:
        return 2
    return 1 if "?" in pattern else 0


@FAST
@given(
    pattern=st.lists(pattern_labels, min_size=1, max_size=4).map(".".join),
    name=st.lists(name_labels, min_size=1, max_size=5).map(".".join),
    dot=st.booleans(),
)
def test_wildcard_matching_agrees_with_a_regex(pattern: str, name: str, dot: bool) -> None:
    assert dns_pattern_matches(pattern, name + ("." if dot else "")) is ref_matches(pattern, name)


@FAST
@given(
    patterns=st.lists(st.lists(pattern_labels, min_size=1, max_size=3).map(".".join), max_size=6),
    name=st.lists(name_labels, min_size=1, max_size=4).map(".".join),
)
def test_the_most_specific_pattern_matches_and_no_stricter_kind_does(
    patterns: list[str], name: str
) -> None:
    best = most_specific_pattern(patterns, name)
    matching = [p for p in patterns if ref_matches(p, name)]
    if not matching:
        assert best is None
        return
    assert best in matching
    assert ref_rank(best) == min(ref_rank(p) for p in matching)
    assert most_specific_pattern(list(reversed(patterns)), name) == best


# --- filters -----------------------------------------------------------------------------------


@st.composite
def raw_filters(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for protocol in draw(st.permutations(["tcp", "udp", "icmp"]))[: draw(st.integers(0, 3))]:
        ports: list[Any] = []
        if protocol != "icmp":
            for _ in range(draw(st.integers(0, 4))):
                start = draw(st.integers(1, 65535))
                end = draw(
                    st.integers(start, min(65535, start + draw(st.sampled_from([0, 5, 70000]))))
                )
                if start == end and draw(st.booleans()):
                    ports.append(start if draw(st.booleans()) else str(start))
                else:
                    ports.append(f"{start}-{end}")
        item: dict[str, Any] = {"protocol": protocol.upper() if draw(st.booleans()) else protocol}
        write_empty: bool = draw(st.booleans())
        if ports or write_empty:
            item["ports"] = ports
        out.append(item)
    return out


def ref_allows(raw: list[dict[str, Any]], protocol: str, port: int) -> bool:
    if not raw:
        return True
    for item in raw:
        if item["protocol"].lower() != protocol:
            continue
        ports = item.get("ports") or []
        if not ports:
            return True
        for p in ports:
            start, _, end = str(p).partition("-")
            if int(start) <= port <= int(end or start):
                return True
    return False


@FAST
@given(raw=raw_filters(), probes=st.lists(st.integers(1, 65535), min_size=1, max_size=10))
def test_filters_round_trip_and_keep_their_meaning(
    raw: list[dict[str, Any]], probes: list[int]
) -> None:
    parsed = parse_filters(raw)
    stored = filters_to_json(parsed)
    assert parse_filters(stored) == parsed
    assert filters_to_json(parse_filters(stored)) == stored
    for port in probes:
        for protocol in ("tcp", "udp"):
            assert filters_allow(parsed, protocol, port) is ref_allows(raw, protocol, port)
    assert filters_allow(parsed, "icmp", None) is (
        not raw or any(item["protocol"].lower() == "icmp" for item in raw)
    )


def test_reference_sanity() -> None:
    # The references themselves must be able to say no.
    assert not ref_matches("*.example.com", "a.b.example.com")
    assert ref_matches("**.example.com", "a.b.example.com")
    assert not ref_allows([{"protocol": "tcp", "ports": ["80"]}], "tcp", 81)
    assert not ref_covered(["M/09:00-17:00/UTC"], datetime(2026, 5, 11, 17, tzinfo=UTC))
    assert ref_covered(["M/09:00-17:00/UTC"], datetime(2026, 5, 11, 16, 59, tzinfo=UTC))
    assert isinstance(ip_address("::ffff:10.0.0.1"), IPv6Address)


# --- resource addresses ------------------------------------------------------------------------

RESERVED = [
    ip_network(n)
    for n in (
        "100.64.0.0/11",
        "100.96.0.0/11",
        "fd00:2021:1111::/107",
        "fd00:2021:1111:8000::/107",
        "127.0.0.0/8",
        "::1/128",
    )
]


def ref_acceptable(net: Any) -> bool:
    """What a cidr resource may be, stated directly from the product rules."""
    if net.prefixlen == 0 or net.is_multicast:
        return False
    if net.num_addresses == 1 and net.network_address.is_unspecified:
        return False
    # IPv4-mapped IPv6 addresses are IPv4 addresses: check the IPv4 part of the range as well.
    candidates = [net]
    mapped = ip_network("::ffff:0:0/96")
    if net.version == 6 and net.subnet_of(mapped):
        v4 = IPv4Address(int(net.network_address) & 0xFFFFFFFF)
        candidates.append(ip_network(f"{v4}/{net.prefixlen - 96}"))
    elif net.version == 6 and net.supernet_of(mapped):
        candidates.append(ip_network("0.0.0.0/0"))
    return not any(c.version == r.version and c.overlaps(r) for c in candidates for r in RESERVED)


interesting_v4 = st.sampled_from(
    [0x64400000, 0x64600000, 0x7F000001, 0x0A000000, 0xE0000001, 0, 0x647FFFFF, 0x643FFFFF]
).flatmap(lambda base: st.integers(max(0, base - 4096), min(2**32 - 1, base + 4096)))
interesting_v6 = st.sampled_from(
    [
        int(IPv6Address("fd00:2021:1111::")),
        int(IPv6Address("fd00:2021:1111:8000::")),
        int(IPv6Address("::1")),
        int(IPv6Address("::ffff:100.64.0.0")),
        int(IPv6Address("2001:db8::")),
    ]
).flatmap(lambda base: st.integers(max(0, base - 2**24), base + 2**24))


@FAST
@given(
    address=st.one_of(
        st.tuples(interesting_v4, st.integers(0, 32)).map(lambda t: f"{IPv4Address(t[0])}/{t[1]}"),
        st.tuples(interesting_v6, st.integers(0, 128)).map(lambda t: f"{IPv6Address(t[0])}/{t[1]}"),
    )
)
def test_cidr_validation_agrees_with_the_rules(address: str) -> None:
    from policies.validation import InvalidInput, normalize_resource_address

    net = ip_network(address, strict=False)
    try:
        stored = normalize_resource_address("cidr", address)
    except InvalidInput:
        event("refused")
        assert not ref_acceptable(net)
        return
    event("accepted")
    assert ref_acceptable(net)
    assert stored == str(net)
    assert normalize_resource_address("cidr", stored) == stored
