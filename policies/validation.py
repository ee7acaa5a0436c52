"""Validation and normalization of resource and policy input. Pure: no Django, no I/O, no clock.

Everything here raises `InvalidInput` (a `ValueError`) whose `field` names where the problem is
(``"address"``, ``"filters[1].ports[0]"``) and whose `str()` is a sentence fit to show an admin.
Successful calls return the canonical form that is stored, so equal inputs store equal values.

Decisions this module makes (the product spec leaves them open):

* **ip** accepts a single address, and also a full-length prefix (``/32``, ``/128``), which is
  stored as the bare address. A zone id (``fe80::1%eth0``) is refused: it means nothing on a
  gateway. **cidr** accepts host bits (``10.0.0.5/24``) and stores the network (``10.0.0.0/24``).
* Refused networks: 0.0.0.0/0 and ::/0 (that is the internet resource), the unspecified
  address, multicast, and anything overlapping loopback, the client tunnel ranges or the DNS proxy
  ranges, also when written as IPv4-mapped IPv6 (``::ffff:100.64.0.1``).
* **dns** names are ASCII (write IDNs in their ``xn--`` form: the codec Python ships implements
  IDNA 2003, which maps some names differently from today's resolvers), lower-cased, without the
  trailing dot. At least two labels; the top-level label *and* the label left of it must be
  literal. Without a public-suffix list we cannot tell ``corp`` from ``com``, and a pattern spanning
  a whole top-level domain would send every name under it (and its DNS queries) to one gateway.
  So ``*.example.com`` and ``**.corp.internal`` are fine; ``*.com``, ``*.corp`` and ``**`` are not.
  ``**`` must be a label on its own; ``*`` and ``?`` may appear anywhere inside a label.
* Wildcard semantics: ``?`` is exactly one character, ``*`` zero or more characters within one
  label, ``**`` zero or more whole labels, and a *leading* ``*`` label may also match no label
  (``*.example.com`` matches ``example.com``). Matching ignores case and one trailing dot.
* Specificity (`pattern_specificity`): exact beats ``?`` beats ``*`` beats ``**`` (a pattern is
  ranked by the loosest wildcard it contains); among equals the one with more literal characters
  wins, then the one with fewer wildcard characters, then the lexicographically smaller pattern,
  so the choice never depends on input order.
* Filters are stored canonically: sorted by protocol, port ranges sorted and merged
  (``80, 81-90`` -> ``80-90``), and a range list covering every port (``1-65535``) stored as
  ``[]`` (all ports), which means the same thing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

__all__ = [
    "DNS_PROXY_RANGES",
    "RESERVED_RANGES",
    "RESOURCE_KINDS",
    "TUNNEL_RANGES",
    "Filter",
    "InvalidInput",
    "PortRange",
    "Protocol",
    "dns_pattern_matches",
    "filters_allow",
    "filters_to_json",
    "most_specific_pattern",
    "normalize_resource_address",
    "parse_filters",
    "pattern_specificity",
]


class InvalidInput(ValueError):
    """User input that cannot be accepted. `field` locates it, `message` explains it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"InvalidInput(field={self.field!r}, message={self.message!r})"


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RESOURCE_KINDS = frozenset({"cidr", "ip", "dns", "internet"})

TUNNEL_RANGES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/11"),
    ipaddress.ip_network("fd00:2021:1111::/107"),
)
DNS_PROXY_RANGES: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.96.0.0/11"),
    ipaddress.ip_network("fd00:2021:1111:8000::/107"),
)
_LOOPBACK: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def _with_mapped(nets: Iterable[IPNetwork]) -> tuple[IPNetwork, ...]:
    """Each network plus, for IPv4 ones, the same range as IPv4-mapped IPv6 (::ffff:a.b.c.d)."""
    out: list[IPNetwork] = []
    for net in nets:
        out.append(net)
        if net.version == 4:
            mapped = ipaddress.IPv6Address(f"::ffff:{net.network_address}")
            out.append(ipaddress.IPv6Network((mapped, 96 + net.prefixlen)))
    return tuple(out)


RESERVED_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple(
    [(n, "the client tunnel range") for n in _with_mapped(TUNNEL_RANGES)]
    + [(n, "the DNS proxy range") for n in _with_mapped(DNS_PROXY_RANGES)]
    + [(n, "loopback") for n in _with_mapped(_LOOPBACK)]
)


# --- resource addresses ------------------------------------------------------------------------


def normalize_resource_address(kind: str, address: str) -> str:
    """Validate `address` for a resource of type `kind` and return its canonical form."""
    if kind not in RESOURCE_KINDS:
        raise InvalidInput(
            "type", f"Unknown resource type {kind!r}; use cidr, ip, dns or internet."
        )
    if not isinstance(address, str):
        raise InvalidInput("address", "The address must be text.")
    address = address.strip()
    if kind == "internet":
        if address:
            raise InvalidInput("address", "An internet resource has no address; leave it empty.")
        return ""
    if not address:
        raise InvalidInput("address", "The address is required.")
    if kind == "dns":
        return _normalize_dns(address)
    _refuse_port(address)
    if "%" in address:
        raise InvalidInput("address", "Zone ids (%...) are not allowed in an address.")
    if kind == "ip":
        return str(_parse_single_ip(address))
    return str(_parse_cidr(address))


def _refuse_port(address: str) -> None:
    if address.startswith("["):
        raise InvalidInput(
            "address", "Remove the brackets and any port: an address must not contain a port."
        )
    host = address.split("/", 1)[0]
    # One colon can only be IPv4 (or a name) followed by a port; IPv6 always has at least two.
    if host.count(":") == 1:
        raise InvalidInput("address", "The address must not contain a port; use filters instead.")


def _parse_single_ip(address: str) -> IPAddress:
    if "/" in address:
        try:
            net = ipaddress.ip_network(address, strict=True)
        except ValueError:
            net = None
        if net is None or net.num_addresses != 1:
            raise InvalidInput(
                "address",
                f"{address!r} is not a single IP address; use a cidr resource for ranges.",
            )
        ip: IPAddress = net.network_address
    else:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            raise InvalidInput("address", f"{address!r} is not a valid IP address.") from None
    _check_network(ipaddress.ip_network(ip))
    return ip


def _parse_cidr(address: str) -> IPNetwork:
    try:
        net = ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise InvalidInput(
            "address", f"{address!r} is not a valid CIDR range (like 10.0.0.0/24)."
        ) from None
    _check_network(net)
    return net


def _check_network(net: IPNetwork) -> None:
    if net.prefixlen == 0:
        raise InvalidInput(
            "address", f"{net} covers every address; use the internet resource instead."
        )
    if net.network_address.is_unspecified and net.num_addresses == 1:
        raise InvalidInput("address", "The unspecified address is not a resource.")
    if net.is_multicast:
        raise InvalidInput("address", f"{net} is a multicast range, not a resource.")
    for reserved, what in RESERVED_RANGES:
        if net.version == reserved.version and net.overlaps(reserved):
            raise InvalidInput("address", f"{net} overlaps {what} ({reserved}).")


# --- DNS names and wildcards -------------------------------------------------------------------

_LITERAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_LABEL_CHARS = _LITERAL_CHARS | {"*", "?"}
_WILDCARD_CHARS = frozenset("*?")


def _normalize_dns(address: str) -> str:
    if not address.isascii():
        raise InvalidInput(
            "address", "Write internationalized names in their ASCII form (xn--...)."
        )
    name = address.lower()
    if name.endswith("."):
        name = name[:-1]
    _refuse_ip_like(name)
    if len(name) > 253:
        raise InvalidInput("address", "A DNS name is at most 253 characters long.")
    labels = name.split(".")
    if len(labels) < 2:
        raise InvalidInput(
            "address", "A DNS name needs at least two labels, like host.example.com."
        )
    for position, label in enumerate(labels, 1):
        _check_label(position, label)
    tld, second = labels[-1], labels[-2]
    if _WILDCARD_CHARS.intersection(tld):
        raise InvalidInput("address", "The top-level domain must not contain a wildcard.")
    if tld.isdigit():
        raise InvalidInput("address", "The top-level domain must not be all digits.")
    if _WILDCARD_CHARS.intersection(second):
        raise InvalidInput(
            "address",
            f"The label left of the top-level domain ({second!r}) must not contain a wildcard: "
            "a pattern may not span a whole top-level domain.",
        )
    return name


def _refuse_ip_like(name: str) -> None:
    for parse in (ipaddress.ip_address, ipaddress.ip_network):
        try:
            parse(name)
        except ValueError:
            continue
        raise InvalidInput("address", f"{name!r} is an IP address; use an ip or cidr resource.")
    if name.startswith("[") or (name.count(":") == 1 and name.rsplit(":", 1)[1].isdigit()):
        raise InvalidInput("address", "The address must not contain a port; use filters instead.")


def _check_label(position: int, label: str) -> None:
    if not label:
        raise InvalidInput("address", f"Label {position} is empty (two dots in a row?).")
    if len(label) > 63:
        raise InvalidInput("address", f"Label {position} is longer than 63 characters.")
    bad = sorted(set(label) - _LABEL_CHARS)
    if bad:
        raise InvalidInput(
            "address",
            f"Label {position} ({label!r}) contains {''.join(bad)!r}; use letters, digits, "
            "hyphens and the wildcards * ** ?.",
        )
    if "**" in label and label != "**":
        raise InvalidInput("address", f"Label {position}: ** must be a whole label on its own.")
    if label.startswith("-") or label.endswith("-"):
        raise InvalidInput("address", f"Label {position} must not start or end with a hyphen.")


def _split_name(name: str) -> list[str]:
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    return name.split(".")


def _glob_label(glob: str, label: str) -> bool:
    """Within-label glob: ``*`` any run of characters, ``?`` one character, others literal."""
    if "*" not in glob:
        if len(glob) != len(label):
            return False
        return all(g == "?" or g == c for g, c in zip(glob, label, strict=True))
    # Classic greedy matcher: remember the last star and retry from one character further.
    gi = li = 0
    star = -1
    star_li = 0
    while li < len(label):
        if gi < len(glob) and (glob[gi] == "?" or glob[gi] == label[li]):
            gi += 1
            li += 1
        elif gi < len(glob) and glob[gi] == "*":
            star = gi
            star_li = li
            gi += 1
        elif star >= 0:
            gi = star + 1
            star_li += 1
            li = star_li
        else:
            return False
    while gi < len(glob) and glob[gi] == "*":
        gi += 1
    return gi == len(glob)


def dns_pattern_matches(pattern: str, name: str) -> bool:
    """Whether the resource address `pattern` covers the DNS `name` (see module docstring)."""
    pl = _split_name(pattern)
    nl = _split_name(name)
    m, n = len(pl), len(nl)
    # below[j]: pattern labels i+1.. match name labels j..; computed from the last label back.
    below = [False] * n + [True]
    for i in range(m - 1, -1, -1):
        glob = pl[i]
        here = [False] * (n + 1)
        if glob == "**":
            here[n] = below[n]
            for j in range(n - 1, -1, -1):
                here[j] = below[j] or here[j + 1]
        else:
            optional = i == 0 and glob == "*"
            for j in range(n + 1):
                one = j < n and below[j + 1] and _glob_label(glob, nl[j])
                here[j] = one or (optional and below[j])
        below = here
    return below[0]


def pattern_specificity(pattern: str) -> tuple[int, int, int, str]:
    """Sort key: smaller is more specific (see module docstring for the order)."""
    p = pattern.lower().rstrip(".")
    labels = p.split(".")
    if "**" in labels:
        rank = 3
    elif "*" in p:
        rank = 2
    elif "?" in p:
        rank = 1
    else:
        rank = 0
    wildcards = sum(1 for c in p if c in _WILDCARD_CHARS)
    literal = sum(1 for c in p if c not in _WILDCARD_CHARS and c != ".")
    return (rank, -literal, wildcards, p)


def most_specific_pattern(patterns: Iterable[str], name: str) -> str | None:
    """The pattern (as given) that matches `name` most specifically, or None if none matches."""
    best: str | None = None
    best_key: tuple[int, int, int, str] | None = None
    for pattern in patterns:
        if not dns_pattern_matches(pattern, name):
            continue
        key = pattern_specificity(pattern)
        if best_key is None or key < best_key:
            best, best_key = pattern, key
    return best


# --- filters -----------------------------------------------------------------------------------

Protocol = Literal["tcp", "udp", "icmp"]
_PROTOCOLS: tuple[Protocol, ...] = ("icmp", "tcp", "udp")


@dataclass(frozen=True, slots=True, order=True)
class PortRange:
    start: int
    end: int

    def __post_init__(self) -> None:
        for value in (self.start, self.end):
            if type(value) is not int or not 1 <= value <= 65535:
                raise InvalidInput("ports", f"Port {value!r} is outside 1-65535.")
        if self.start > self.end:
            raise InvalidInput(
                "ports", f"Port range {self.start}-{self.end} ends before it starts."
            )

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


@dataclass(frozen=True, slots=True)
class Filter:
    """Traffic of `protocol` to any of `ports` (empty = every port) passes."""

    protocol: Protocol
    ports: tuple[PortRange, ...] = ()

    def allows(self, protocol: str, port: int | None) -> bool:
        if protocol != self.protocol:
            return False
        if not self.ports:
            return True
        return port is not None and any(port in r for r in self.ports)


def filters_allow(filters: Sequence[Filter], protocol: str, port: int | None) -> bool:
    """No filters allow everything; otherwise some filter must allow the protocol and port."""
    return not filters or any(f.allows(protocol, port) for f in filters)


def _parse_port(value: object, field: str, where: str) -> PortRange:
    if type(value) is int:
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InvalidInput(field, f'{where}: a port must be text like "443" or "1000-2000".')
    parts = [p.strip() for p in text.split("-")]
    if not 1 <= len(parts) <= 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise InvalidInput(
            field, f'{where}: {value!r} is not a port or range like "443" or "1000-2000".'
        )
    start = int(parts[0])
    end = int(parts[-1])
    try:
        return PortRange(start, end)
    except InvalidInput as exc:
        raise InvalidInput(field, f"{where}: {exc.message}") from None


def _merge(ranges: list[PortRange]) -> tuple[PortRange, ...]:
    merged: list[PortRange] = []
    for r in sorted(ranges):
        if merged and r.start <= merged[-1].end + 1:
            last = merged[-1]
            merged[-1] = PortRange(last.start, max(last.end, r.end))
        else:
            merged.append(r)
    if merged == [PortRange(1, 65535)]:
        return ()
    return tuple(merged)


def parse_filters(raw: Any) -> tuple[Filter, ...]:
    """Parse ``[{"protocol": "tcp", "ports": ["443", "8000-8100"]}, ...]`` into canonical filters.

    ``ports`` may be omitted or empty (all ports); icmp takes none; each protocol at most once.
    """
    if not isinstance(raw, list):
        raise InvalidInput("filters", "Filters must be a list.")
    by_protocol: dict[Protocol, Filter] = {}
    for index, item in enumerate(raw):
        field = f"filters[{index}]"
        where = f"Filter {index + 1}"
        if not isinstance(item, dict):
            raise InvalidInput(field, f"{where} must be an object with protocol and ports.")
        unknown = sorted(str(k) for k in item if k not in ("protocol", "ports"))
        if unknown:
            raise InvalidInput(field, f"{where} has unknown keys: {', '.join(unknown)}.")
        protocol = item.get("protocol")
        if not isinstance(protocol, str) or protocol.strip().lower() not in _PROTOCOLS:
            raise InvalidInput(
                f"{field}.protocol",
                f"{where}: protocol must be tcp, udp or icmp, not {protocol!r}.",
            )
        proto = cast(Protocol, protocol.strip().lower())
        if proto in by_protocol:
            raise InvalidInput(
                f"{field}.protocol", f"{where}: {proto} is already filtered above; combine them."
            )
        ports_raw = item.get("ports", [])
        if ports_raw is None:
            ports_raw = []
        if not isinstance(ports_raw, list):
            raise InvalidInput(f"{field}.ports", f"{where}: ports must be a list.")
        if proto == "icmp" and ports_raw:
            raise InvalidInput(f"{field}.ports", f"{where}: icmp has no ports.")
        ranges = [
            _parse_port(p, f"{field}.ports[{j}]", f"{where}, port {j + 1}")
            for j, p in enumerate(ports_raw)
        ]
        by_protocol[proto] = Filter(proto, _merge(ranges))
    return tuple(by_protocol[p] for p in _PROTOCOLS if p in by_protocol)


def filters_to_json(filters: Iterable[Filter]) -> list[dict[str, Any]]:
    """The canonical stored form; `parse_filters` reads it back to equal filters."""
    return [{"protocol": f.protocol, "ports": [str(r) for r in f.ports]} for f in filters]
