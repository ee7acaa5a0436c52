"""The policy evaluator: a pure function of memberships, policies and client context.

Theory of operation
-------------------
Access is denied unless a policy grants it. `evaluate` walks the resource's policies
(`PolicyRule`) in the order given; a policy *applies* when its group is one of the actor's groups,
and *grants* when every one of its conditions passes for the `ClientContext`. Unknown facts never
pass: with no remote IP both ``is_in_cidr`` and ``is_not_in_cidr`` fail (nothing proves the client
is, or is not, somewhere), and the same holds for an unknown country or auth provider.

A grant lasts until ``expires_at``: the earlier of the end of the current time window (when the
policy has a time condition) and the client session expiry; ``None`` means no limit. When several
policies grant, the one whose access lasts longest wins (``None`` beats any time); among equals the
earliest in the given order wins, so callers pass policies in a stable order (e.g. by id). A grant
that lasts as long as the session itself cannot be beaten, so evaluation stops there; in
particular a policy without conditions ends the walk at once.

A denial carries the conditions that failed, across every applying policy (each condition once,
in order), so the client can say why; a denial because no policy applies carries none.

Disabled policies, deleted groups and the like are the caller's business: `PolicyRule` only holds
what is enabled. A remote IP that is IPv4-mapped IPv6 (``::ffff:10.0.0.1``, as dual-stack sockets
report it) is treated as the IPv4 address, and IPv4-mapped condition ranges are stored as IPv4.

Speed: everything is compiled when a `Condition` is built (`parse_conditions` or the
constructor): networks to integer pairs, lists to frozensets, time windows to per-zone weekly
schedules. `evaluate` does no parsing and allocates little beyond the `Decision`. A time
condition remembers the last open window and the last closed stretch it found, so while either
lasts its check is a couple of comparisons. Compiling costs tens of microseconds, so the request
path should keep compiled rules (or call `parse_conditions_cached`, which hands out the same
objects for equal input).

Time windows (``current_utc_datetime`` / ``is_in_day_of_week_time_ranges``)
----------------------------------------------------------------------------
Each value is ``DAYS/RANGES/ZONE``:

* ``DAYS``: one or more day letters ``M T W R F S U`` (Monday..Sunday), each at most once,
  e.g. ``MTWRF``;
* ``RANGES``: ``true`` (the whole day) or comma-separated ``HH:MM-HH:MM`` ranges, start
  inclusive, end exclusive; the end may be ``24:00``; the end must be after the start: a window
  across midnight is written as two days (``M/22:00-24:00`` and ``T/00:00-02:00``), which join
  seamlessly;
* ``ZONE``: an IANA time zone name (``Europe/Berlin``, ``UTC``); unknown names are refused.

Example: ``MTWRF/09:00-12:00,13:00-17:00/Europe/Berlin``. The condition passes when *any* value's
window contains now. Windows are wall-clock times in their zone: on a daylight-saving day a window
is as long as the clock says (``01:00-03:00`` lasts one real hour when clocks spring forward at
02:00 and three when they fall back at 03:00), and a window that starts in the skipped hour opens
when the clock jumps past its start. The end of a window is the first instant at which no value
covers the clock any more; windows that touch or overlap (also across days, zones and the end of
the week) count as one. If the values together cover every moment, access has no time limit
(``None``); a union that stays open for more than eight days in a row (possible only with several
zones) is cut there, which merely makes the client ask again.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import json
import math
import uuid
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from typing import Any, Final, Literal, cast, get_args
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from policies.validation import InvalidInput

__all__ = [
    "OPERATORS",
    "ClientContext",
    "Condition",
    "Decision",
    "Operator",
    "PolicyRule",
    "Property",
    "conditions_to_json",
    "evaluate",
    "parse_condition",
    "parse_conditions",
    "parse_conditions_cached",
]

Property = Literal[
    "remote_ip",
    "remote_ip_location_region",
    "provider_id",
    "current_utc_datetime",
    "client_verified",
]
Operator = Literal[
    "is_in_cidr",
    "is_not_in_cidr",
    "is_in",
    "is_not_in",
    "is_in_day_of_week_time_ranges",
    "is",
]

#: The operators each property accepts.
OPERATORS: Final[dict[str, tuple[str, ...]]] = {
    "remote_ip": ("is_in_cidr", "is_not_in_cidr"),
    "remote_ip_location_region": ("is_in", "is_not_in"),
    "provider_id": ("is_in", "is_not_in"),
    "current_utc_datetime": ("is_in_day_of_week_time_ranges",),
    "client_verified": ("is",),
}
assert set(OPERATORS) == set(get_args(Property))

# Compiled condition kinds; evaluate() dispatches on these small ints.
_IP_IN: Final = 1
_IP_NOT_IN: Final = 2
_REGION_IN: Final = 3
_REGION_NOT_IN: Final = 4
_PROVIDER_IN: Final = 5
_PROVIDER_NOT_IN: Final = 6
_TIME: Final = 7
_VERIFIED: Final = 8

_KINDS: Final[dict[tuple[str, str], int]] = {
    ("remote_ip", "is_in_cidr"): _IP_IN,
    ("remote_ip", "is_not_in_cidr"): _IP_NOT_IN,
    ("remote_ip_location_region", "is_in"): _REGION_IN,
    ("remote_ip_location_region", "is_not_in"): _REGION_NOT_IN,
    ("provider_id", "is_in"): _PROVIDER_IN,
    ("provider_id", "is_not_in"): _PROVIDER_NOT_IN,
    ("current_utc_datetime", "is_in_day_of_week_time_ranges"): _TIME,
    ("client_verified", "is"): _VERIFIED,
}

_DAY = 86_400
_WEEK = 7 * _DAY
_DAY_LETTERS = "MTWRFSU"
# How far a union of windows in several zones is followed before access is cut (see docstring).
_MAX_SPAN = timedelta(days=8)


# --- context, rules, decisions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientContext:
    """What is known about the client asking. `now` must be timezone-aware."""

    remote_ip: IPv4Address | IPv6Address | None
    country: str | None  # ISO 3166-1 alpha-2, upper case
    auth_provider_id: str | None  # str(UUID) of the provider the session signed in with
    verified: bool
    now: datetime
    session_expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("ClientContext.now must be timezone-aware")
        if self.session_expires_at is not None and self.session_expires_at.utcoffset() is None:
            raise ValueError("ClientContext.session_expires_at must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy_id: UUID | None  # the policy that granted access
    violated: tuple[Condition, ...]  # when denied: the failed conditions of applying policies
    expires_at: datetime | None  # earlier of time-window end and session expiry; None = no limit


# --- time windows ------------------------------------------------------------------------------


class _ZoneWeek:
    """The union of one zone's windows as merged [start, end) seconds since Monday 00:00."""

    __slots__ = ("always", "ends", "starts", "wraps", "zone")

    def __init__(self, zone: ZoneInfo, intervals: list[tuple[int, int]]) -> None:
        merged = _merge_intervals(intervals)
        self.zone = zone
        self.starts = tuple(s for s, _ in merged)
        self.ends = tuple(e for _, e in merged)
        self.always = merged == [(0, _WEEK)]
        # Sunday 24:00 touches Monday 00:00: a window ending the week continues into the next.
        self.wraps = bool(merged) and merged[0][0] == 0 and merged[-1][1] == _WEEK

    def _interval_at(self, local: datetime) -> tuple[int, int]:
        """(index of the interval covering the local wall time or -1, seconds of the week)."""
        sow = local.weekday() * _DAY + local.hour * 3600 + local.minute * 60 + local.second
        i = bisect.bisect_right(self.starts, sow) - 1
        if i >= 0 and sow < self.ends[i]:
            return i, sow
        return -1, sow

    def covers(self, at: datetime) -> bool:
        if self.always:
            return True
        return self._interval_at(at.astimezone(self.zone))[0] >= 0

    def segment_end(self, at: datetime) -> datetime | None:
        """When the window covering `at` ends (None: never), or the zone's next UTC-offset change
        if that comes first: past one, wall time no longer maps to instants by one offset, so the
        caller re-checks coverage there. Precondition: `covers(at)`."""
        if self.always:
            return None
        local = at.astimezone(self.zone)
        i, sow = self._interval_at(local)
        end = self.ends[i]
        if end == _WEEK and self.wraps:
            end = _WEEK + self.ends[0]
        offset = cast(timedelta, local.utcoffset())
        wall_end = local.replace(tzinfo=None, microsecond=0) + timedelta(seconds=end - sow)
        candidate = (wall_end - offset).replace(tzinfo=UTC)
        if candidate.astimezone(self.zone).utcoffset() == offset:
            return candidate
        return _next_offset_change(self.zone, at, candidate, offset)

    def next_start(self, at: datetime) -> datetime:
        """When the next window opens after `at`, or the zone's next UTC-offset change if that
        comes first (the caller re-checks there). Precondition: not `covers(at)`."""
        local = at.astimezone(self.zone)
        _, sow = self._interval_at(local)
        j = bisect.bisect_right(self.starts, sow)
        start = self.starts[j] if j < len(self.starts) else _WEEK + self.starts[0]
        offset = cast(timedelta, local.utcoffset())
        wall_start = local.replace(tzinfo=None, microsecond=0) + timedelta(seconds=start - sow)
        candidate = (wall_start - offset).replace(tzinfo=UTC)
        if candidate.astimezone(self.zone).utcoffset() == offset:
            return candidate
        return _next_offset_change(self.zone, at, candidate, offset)


def _next_offset_change(zone: ZoneInfo, lo: datetime, hi: datetime, offset: timedelta) -> datetime:
    """First whole second in (lo, hi] whose UTC offset in `zone` differs from `offset` (the offset
    at lo; it differs at hi). Offsets only change on whole seconds, so bisecting them is exact."""
    low = math.floor(lo.timestamp())
    high = math.ceil(hi.timestamp())
    while high - low > 1:
        mid = (low + high) // 2
        if datetime.fromtimestamp(mid, zone).utcoffset() == offset:
            low = mid
        else:
            high = mid
    return datetime.fromtimestamp(high, UTC)


def _merge_intervals(intervals: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


class _Windows:
    """A time condition's windows, grouped by zone, with memos of the last window found open
    and the last stretch found closed.

    The memos make repeated evaluations a couple of comparisons: every instant in
    [found at, window end) is covered and has the same end, and none in [found at, next opening)
    is covered, so the answer cannot differ there. They cache a pure function (any `now`, in
    any order, gets the same answer as without them); replacing a tuple is atomic, so threads
    sharing a condition are safe.
    """

    __slots__ = ("_closed", "_memo", "weeks")

    def __init__(self, weeks: tuple[_ZoneWeek, ...]) -> None:
        self.weeks = weeks
        # (from, until or None = forever, window end); valid for from <= now < until.
        self._memo: tuple[datetime, datetime | None, datetime | None] | None = None
        # (from, until): no window is open for from <= now < until.
        self._closed: tuple[datetime, datetime] | None = None

    def _memo_hit(self, now: datetime) -> bool:
        memo = self._memo
        return memo is not None and memo[0] <= now and (memo[1] is None or now < memo[1])

    def covers(self, at: datetime) -> bool:
        memo = self._memo  # _memo_hit, inlined: this is the hot path of a timed grant
        if memo is not None and memo[0] <= at and (memo[1] is None or at < memo[1]):
            return True
        closed = self._closed
        if closed is not None and closed[0] <= at < closed[1]:
            return False
        for week in self.weeks:
            if week.covers(at):
                # Finding the end now fills the memo, so later calls in this window are cheap.
                self.end(at)
                return True
        self._closed = (at, self._next_open(at))
        return False

    def _next_open(self, now: datetime) -> datetime:
        """First instant after `now` that a window covers, or a bound (eight days on) up to
        which none does. Precondition: no window covers `now`. Walks the events (window starts,
        offset changes) of all zones in time order, so nothing opens between two of them."""
        at = now
        limit = now + _MAX_SPAN
        while at < limit:
            at = min(week.next_start(at) for week in self.weeks)
            if self._covers_uncached(at):
                return at
        return at

    def _covers_uncached(self, at: datetime) -> bool:
        for week in self.weeks:  # noqa: SIM110 - hot path: a plain loop skips any()'s generator
            if week.covers(at):
                return True
        return False

    def end(self, now: datetime) -> datetime | None:
        """First instant after `now` that no window covers (None: always covered).
        Precondition: `covers(now)`."""
        if self._memo_hit(now):
            return cast("tuple[datetime, datetime | None, datetime | None]", self._memo)[2]
        weeks = self.weeks
        at = now
        limit = now + _MAX_SPAN
        while True:
            furthest = at
            for week in weeks:
                if week.covers(at):
                    end = week.segment_end(at)
                    if end is None:
                        self._memo = (now, None, None)
                        return None
                    if end > furthest:
                        furthest = end
            at = furthest
            if at >= limit:
                # Not the first uncovered instant, so not memoized (see module docstring).
                return at
            if not self._covers_uncached(at):
                self._memo = (now, at, at)
                return at


def _parse_clock(text: str, *, allow_24: bool) -> int:
    """``HH:MM`` as seconds since midnight."""
    hh, sep, mm = text.strip().partition(":")
    if (
        not sep
        or not (1 <= len(hh) <= 2 and hh.isascii() and hh.isdigit())
        or not (len(mm) == 2 and mm.isascii() and mm.isdigit())
    ):
        raise ValueError(f"{text.strip()!r} is not a time like 09:30")
    hours, minutes = int(hh), int(mm)
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f"{text.strip()!r} is not a time of day (00:00-23:59, or 24:00 as an end)")
    return hours * 3600 + minutes * 60


def _format_clock(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


def _parse_window(value: str) -> tuple[str, list[tuple[int, int]], ZoneInfo]:
    """One time-window value -> (day letters, merged day ranges in seconds, zone)."""
    parts = value.strip().split("/", 2)
    if len(parts) != 3:
        raise ValueError(f"{value!r} is not DAYS/RANGES/ZONE, like MTWRF/09:00-17:00/Europe/Berlin")
    days_raw, ranges_raw, zone_name = (p.strip() for p in parts)
    days = days_raw.upper()
    if not days or any(d not in _DAY_LETTERS for d in days):
        raise ValueError(f"days {days_raw!r} must be letters from M T W R F S U (Monday..Sunday)")
    if len(set(days)) != len(days):
        raise ValueError(f"days {days_raw!r} repeat a day")
    if ranges_raw.lower() == "true":
        ranges = [(0, _DAY)]
    else:
        ranges = []
        for piece in ranges_raw.split(","):
            start_raw, dash, end_raw = piece.partition("-")
            if not dash:
                raise ValueError(f"{piece.strip()!r} is not a range like 09:00-17:00")
            start = _parse_clock(start_raw, allow_24=False)
            end = _parse_clock(end_raw, allow_24=True)
            if end <= start:
                raise ValueError(
                    f"range {piece.strip()!r} must end after it starts; "
                    "split a window across midnight over two days"
                )
            ranges.append((start, end))
    if not zone_name:
        raise ValueError("a time zone is required, like Europe/Berlin or UTC")
    zone = _zone(zone_name)
    ordered = "".join(d for d in _DAY_LETTERS if d in days)
    return ordered, _merge_intervals(ranges), zone


@functools.cache
def _zone_names_by_folded_name() -> dict[str, str]:
    return {name.casefold(): name for name in zoneinfo.available_timezones()}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    # Only on this error path: accept "europe/berlin" for "Europe/Berlin" (stored canonical).
    known = _zone_names_by_folded_name().get(name.casefold())
    if known is None:
        raise ValueError(f"unknown time zone {name!r}") from None
    return ZoneInfo(known)


def _canonical_window(days: str, ranges: list[tuple[int, int]], zone: ZoneInfo) -> str:
    if ranges == [(0, _DAY)]:
        text = "true"
    else:
        text = ",".join(f"{_format_clock(s)}-{_format_clock(e)}" for s, e in ranges)
    return f"{days}/{text}/{zone.key}"


# --- conditions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """One compiled, immutable condition. The constructor validates (raising `InvalidInput` with
    `field` relative to the condition, e.g. ``values[2]``) and canonicalizes `values`: networks
    in CIDR form, region codes upper case, provider UUIDs in canonical form, windows normalized."""

    property: Property
    operator: Operator
    values: tuple[str, ...]
    _kind: int = field(default=0, init=False, compare=False, repr=False)
    _data: Any = field(default=None, init=False, compare=False, repr=False)
    _hash: int = field(default=0, init=False, compare=False, repr=False)

    def __hash__(self) -> int:
        # Denials dedupe violated conditions through a dict; a stored hash keeps that cheap.
        return self._hash

    def __post_init__(self) -> None:
        if self.property not in OPERATORS:
            raise InvalidInput(
                "property",
                f"unknown property {self.property!r}; use one of {', '.join(OPERATORS)}",
            )
        if self.operator not in OPERATORS[self.property]:
            raise InvalidInput(
                "operator",
                f"operator {self.operator!r} does not apply to {self.property}; "
                f"use {' or '.join(OPERATORS[self.property])}",
            )
        raw = self.values
        if isinstance(raw, str) or not isinstance(raw, list | tuple):
            raise InvalidInput("values", "values must be a list of strings")
        if not raw:
            raise InvalidInput("values", "at least one value is required")
        for i, v in enumerate(raw):
            if not isinstance(v, str):
                raise InvalidInput(f"values[{i}]", f"value {i + 1} must be a string, not {v!r}")
        kind = _KINDS[(self.property, self.operator)]
        values, data = _COMPILERS[self.property](tuple(raw))
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_hash", hash((self.property, self.operator, values)))

    def to_json(self) -> dict[str, Any]:
        return {"property": self.property, "operator": self.operator, "values": list(self.values)}


def _dedupe(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


_MAPPED_V4: Final = IPv6Network("::ffff:0:0/96")


def _compile_ip(values: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    v4: list[tuple[int, int]] = []
    v6: list[tuple[int, int]] = []
    canonical = []
    for i, value in enumerate(values):
        text = value.strip()
        try:
            if "%" in text:
                raise ValueError
            net = ip_network(text, strict=False)
        except ValueError:
            raise InvalidInput(
                f"values[{i}]", f"{value!r} is not an IP address or CIDR range"
            ) from None
        if net.version == 6 and net.subnet_of(_MAPPED_V4):
            # evaluate() sees IPv4-mapped clients as IPv4, so the range must be IPv4 too.
            net = IPv4Network((int(net.network_address) & 0xFFFFFFFF, net.prefixlen - 96))
        canonical.append(str(net))
        # int(address) & mask == network: one AND and one compare per network at evaluation.
        (v4 if net.version == 4 else v6).append((int(net.network_address), int(net.netmask)))
    return _dedupe(canonical), (tuple(dict.fromkeys(v4)), tuple(dict.fromkeys(v6)))


def _compile_regions(values: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    canonical = []
    for i, value in enumerate(values):
        code = value.strip().upper()
        if len(code) != 2 or not (code.isascii() and code.isalpha()):
            raise InvalidInput(
                f"values[{i}]", f"{value!r} is not a two-letter country code like DE"
            )
        canonical.append(code)
    result = _dedupe(canonical)
    return result, frozenset(result)


def _compile_providers(values: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    canonical = []
    for i, value in enumerate(values):
        text = value.strip()
        if not text:
            raise InvalidInput(f"values[{i}]", f"value {i + 1} is empty")
        # Providers are keyed by UUID; spell them one way so "ABC..." matches "abc...".
        with contextlib.suppress(ValueError):
            text = str(uuid.UUID(text))
        canonical.append(text)
    result = _dedupe(canonical)
    return result, frozenset(result)


def _compile_windows(values: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    canonical = []
    by_zone: dict[str, tuple[ZoneInfo, list[tuple[int, int]]]] = {}
    for i, value in enumerate(values):
        try:
            days, ranges, zone = _parse_window(value)
        except ValueError as exc:
            raise InvalidInput(f"values[{i}]", f"value {i + 1}: {exc}") from None
        canonical.append(_canonical_window(days, ranges, zone))
        intervals = by_zone.setdefault(zone.key, (zone, []))[1]
        for d in days:
            base = _DAY_LETTERS.index(d) * _DAY
            intervals.extend((base + s, base + e) for s, e in ranges)
    weeks = tuple(_ZoneWeek(zone, intervals) for zone, intervals in by_zone.values())
    return _dedupe(canonical), _Windows(weeks)


def _compile_verified(values: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    if tuple(v.strip().lower() for v in values) != ("true",):
        raise InvalidInput("values", 'client_verified takes exactly one value, "true"')
    return ("true",), None


_COMPILERS: Final = {
    "remote_ip": _compile_ip,
    "remote_ip_location_region": _compile_regions,
    "provider_id": _compile_providers,
    "current_utc_datetime": _compile_windows,
    "client_verified": _compile_verified,
}


def parse_condition(raw: Any, index: int = 0) -> Condition:
    """``{"property": ..., "operator": ..., "values": [...]}`` -> Condition. Errors name
    ``conditions[index].<field>`` and say ``Condition <index+1>``."""
    where = f"conditions[{index}]"
    if not isinstance(raw, dict):
        raise InvalidInput(where, f"Condition {index + 1} must be an object.")
    unknown = sorted(str(k) for k in raw if k not in ("property", "operator", "values"))
    if unknown:
        raise InvalidInput(where, f"Condition {index + 1} has unknown keys: {', '.join(unknown)}.")
    for key in ("property", "operator", "values"):
        if key not in raw:
            raise InvalidInput(f"{where}.{key}", f"Condition {index + 1} needs {key!r}.")
    prop, op = raw["property"], raw["operator"]
    label = prop if isinstance(prop, str) and prop in OPERATORS else "?"
    if not isinstance(prop, str) or not isinstance(op, str):
        raise InvalidInput(where, f"Condition {index + 1}: property and operator must be strings.")
    try:
        return Condition(cast(Property, prop), cast(Operator, op), raw["values"])
    except InvalidInput as exc:
        raise InvalidInput(
            f"{where}.{exc.field}", f"Condition {index + 1} ({label}): {exc.message}."
        ) from None


def parse_conditions(raw: Any) -> tuple[Condition, ...]:
    """A policy's conditions; at most one per property."""
    if not isinstance(raw, list):
        raise InvalidInput("conditions", "Conditions must be a list.")
    seen: dict[str, int] = {}
    out = []
    for index, item in enumerate(raw):
        cond = parse_condition(item, index)
        if cond.property in seen:
            raise InvalidInput(
                f"conditions[{index}].property",
                f"Condition {index + 1}: {cond.property} is already used by condition "
                f"{seen[cond.property] + 1}; a policy has at most one condition per property.",
            )
        seen[cond.property] = index
        out.append(cond)
    return tuple(out)


@functools.lru_cache(maxsize=4096)
def _parse_conditions_text(text: str) -> tuple[Condition, ...]:
    return parse_conditions(json.loads(text))


def parse_conditions_cached(raw: Any) -> tuple[Condition, ...]:
    """`parse_conditions`, memoized on the JSON text of `raw`: for stored conditions on the
    request path. Equal inputs get the very same Condition objects back, so the time-window
    memo carries over between requests and nothing is compiled twice."""
    try:
        # Key order only changes the hit rate; valid conditions are str/list data, which JSON
        # text represents exactly.
        text = json.dumps(raw)
    except (TypeError, ValueError):
        return parse_conditions(raw)  # not JSON (so never stored): parse to raise the error
    return _parse_conditions_text(text)


def conditions_to_json(conds: Iterable[Condition]) -> list[dict[str, Any]]:
    """The canonical stored form; `parse_conditions` reads it back to equal conditions."""
    return [c.to_json() for c in conds]


# --- rules and evaluation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """An enabled policy as the evaluator sees it (the caller leaves disabled ones out)."""

    policy_id: UUID
    group_id: UUID
    resource_id: UUID
    conditions: tuple[Condition, ...] = ()


def _remote_ip(context: ClientContext) -> tuple[int, int] | None:
    ip = context.remote_ip
    if ip is None:
        return None
    if isinstance(ip, IPv4Address):  # cheaper than the .version property
        return 4, int(ip)
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return 4, int(mapped)
    return 6, int(ip)


_UNSET: Final[Any] = object()
_DENY_NO_POLICY: Final = Decision(False, None, (), None)

# Building a frozen dataclass goes through its generated __init__ and one object.__setattr__ per
# field, which is most of the cost of a simple decision. Filling the slots through their
# descriptors gives the identical object (Decision has no __post_init__) at a third of the cost.
_new_object = object.__new__
_set_allowed = Decision.__dict__["allowed"].__set__
_set_policy_id = Decision.__dict__["policy_id"].__set__
_set_violated = Decision.__dict__["violated"].__set__
_set_expires_at = Decision.__dict__["expires_at"].__set__


def _decision(
    allowed: bool,
    policy_id: UUID | None,
    violated: tuple[Condition, ...],
    expires_at: datetime | None,
) -> Decision:
    decision = _new_object(Decision)
    _set_allowed(decision, allowed)
    _set_policy_id(decision, policy_id)
    _set_violated(decision, violated)
    _set_expires_at(decision, expires_at)
    return decision


def evaluate(
    group_ids: frozenset[UUID] | set[UUID],
    policies: Sequence[PolicyRule],
    context: ClientContext,
) -> Decision:
    """Decide whether an actor in `group_ids` may reach the resource the `policies` point at."""
    session = context.session_expires_at
    best: PolicyRule | None = None
    best_expires: datetime | None = None
    violated: list[Condition] | None = None
    failing_policies = 0
    ip: Any = _UNSET
    for rule in policies:
        if rule.group_id not in group_ids:
            continue
        conditions = rule.conditions
        if not conditions:
            # Lasts as long as the session: nothing can last longer, and earlier wins ties.
            return _decision(True, rule.policy_id, (), session)
        granted = True
        timed = False
        for cond in conditions:
            # Inlined rather than a function per condition: calls were a fifth of the time.
            kind = cond._kind
            if kind == _VERIFIED:
                ok = context.verified is True
            elif kind <= _IP_NOT_IN:
                if ip is _UNSET:
                    ip = _remote_ip(context)
                if ip is None:
                    ok = False
                else:
                    inside = False
                    for network, mask in cond._data[ip[0] == 6]:
                        if ip[1] & mask == network:
                            inside = True
                            break
                    ok = inside if kind == _IP_IN else not inside
            elif kind == _TIME:
                ok = cond._data.covers(context.now)
                timed = True
            else:
                value = context.country if kind <= _REGION_NOT_IN else context.auth_provider_id
                ok = value is not None and (value in cond._data) is (
                    kind in (_REGION_IN, _PROVIDER_IN)
                )
            if not ok:
                granted = False
                if violated is None:
                    violated = [cond]
                else:
                    violated.append(cond)
        if not granted:
            failing_policies += 1
            continue
        expires = session
        if timed:
            for cond in conditions:
                if cond._kind == _TIME:
                    end = cast(_Windows, cond._data).end(context.now)
                    if end is not None and (expires is None or end < expires):
                        expires = end
        if expires == session:
            return _decision(True, rule.policy_id, (), expires)
        # expires < session here, so it is a datetime.
        if best is None or cast(datetime, expires) > cast(datetime, best_expires):
            best, best_expires = rule, expires
    if best is not None:
        return _decision(True, best.policy_id, (), best_expires)
    if violated is None:
        return _DENY_NO_POLICY
    if failing_policies == 1:
        # One policy has at most one condition per property: no duplicates to remove.
        return _decision(False, None, tuple(violated), None)
    return _decision(False, None, tuple(dict.fromkeys(violated)), None)
