"""IP packet parse + the gateway's packet filter, against the independent reference model.

State: one `Firewall` and the same configuration in the reference model
(`tests/unit/net/reference.py`: its own parser and its own reading of the filter rules). Each input
is one raw IP packet, decided as sent by each peer (and by an unknown one) and routed as read from
TUN.

Documented invalid input: none raises (`parse` returns None for anything malformed; the filter
answers DROP_MALFORMED / None). Properties: the fast parser agrees with the reference parser on
whether the packet is valid and on every field the filter decides on; every verdict and every
routing decision equals the model's.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_network

from agents.net import build
from agents.net.filter import Filter, Firewall, PortRange, ResourceRule
from agents.net.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, parse
from tests.unit.net.reference import (
    RefPeer,
    RefRule,
    ref_inbound,
    ref_outbound,
    ref_parse,
)

INVALID: tuple[type[BaseException], ...] = ()  # nothing may raise

ALICE, BOB, NOBODY = b"A" * 32, b"B" * 32, b"N" * 32
A4, A6 = "100.64.0.2", "fd00:2021:1111::2"
B4 = "100.64.0.3"  # Bob has no IPv6 tunnel address
NOW = 1000.0

_ICMP = (Filter("icmp"),)
_WEB = (Filter("tcp", (PortRange(443, 443), PortRange(8000, 8080))),)
_HTTP = (Filter("tcp", (PortRange(80, 80), PortRange(443, 443))),)
_DNS = (Filter("udp", (PortRange(53, 53),)),)


def _cidr(rid: str, nets: tuple[str, ...], filters: tuple[Filter, ...]) -> ResourceRule:
    return ResourceRule(rid, "cidr", tuple(ip_network(n) for n in nets), filters)


_GRANTS: dict[bytes, list[tuple[ResourceRule, float | None]]] = {
    ALICE: [
        (_cidr("ping", ("10.0.0.0/24", "2001:db8::/64"), _ICMP), None),
        (_cidr("web", ("10.0.1.0/24", "2001:db8:2::/64"), _WEB), None),
        (ResourceRule("inet-ping", "internet", (), _ICMP), None),
        (_cidr("old", ("192.168.1.0/24",), (Filter("udp"),)), NOW - 1),  # expired
    ],
    BOB: [
        (_cidr("lan", ("10.0.0.0/16",), ()), None),
        (ResourceRule("inet-web", "internet", (), _HTTP), NOW + 1),
        (_cidr("dns6", ("2001:db8:1::/48",), _DNS), None),
    ],
}


def _firewall() -> Firewall:
    fw = Firewall()
    fw.set_peer(ALICE, A4, A6)
    fw.set_peer(BOB, B4, None)
    for key, grants in _GRANTS.items():
        for i, (rule, exp) in enumerate(grants):
            fw.allow(key, f"auth{i}", rule, exp)
    return fw


def _model() -> dict[bytes, RefPeer]:
    def ref(rule: ResourceRule) -> RefRule:
        filters = tuple(
            (f.protocol, tuple((r.start, r.end) for r in f.ports)) for f in rule.filters
        )
        return RefRule(rule.kind == "internet", rule.networks, filters)

    return {
        ALICE: RefPeer(IPv4Address(A4), IPv6Address(A6), [(ref(r), e) for r, e in _GRANTS[ALICE]]),
        BOB: RefPeer(IPv4Address(B4), None, [(ref(r), e) for r, e in _GRANTS[BOB]]),
    }


FIREWALL = _firewall()
MODEL = _model()


def reset() -> None:
    """Nothing to reset: the filter is not changed by packets."""


def one_input(data: bytes) -> None:
    fast, ref = parse(data), ref_parse(data)
    assert (fast is None) == (ref is None), f"parser validity differs: {fast} vs {ref}"
    if fast is not None and ref is not None:
        assert fast.version == ref.version
        assert (fast.src, fast.dst) == (int(ref.src), int(ref.dst))
        assert (fast.protocol, fast.fragment) == (ref.protocol, ref.non_first_fragment)
        assert (fast.src_port, fast.dst_port) == (ref.first_word, ref.second_word)
    for key in (ALICE, BOB, NOBODY):
        got = FIREWALL.decide_outbound(key, data, NOW)
        assert got.name == ref_outbound(MODEL, key, data, NOW), (key[:1], got.name)
    assert FIREWALL.route_inbound(data, NOW) == ref_inbound(MODEL, data, NOW)


def _v6_fragment(src: str, dst: str, next_header: int, offset: int, body: bytes) -> bytes:
    header = struct.pack("!BBHI", next_header, 0, (offset << 3) | (offset == 0), 7)
    return build.ip_packet(src, dst, next_header, body, ext_headers=header, first_next_header=44)


def seeds() -> Iterator[tuple[str, bytes]]:
    yield "tcp-443", build.tcp(A4, "10.0.1.5", 40000, 443)
    yield "tcp-22-refused", build.tcp(A4, "10.0.1.5", 40000, 22)
    yield "tcp-reply", build.tcp("10.0.1.5", A4, 8080, 40000, flags=0x12)
    yield "udp-dns6-bob-no-v6", build.udp("fd00:2021:1111::3", "2001:db8:1::53", 5353, 53)
    yield "udp-lan-bob", build.udp(B4, "10.0.3.3", 5353, 53, b"q" * 30)
    yield "echo-v4", build.icmp_echo(A4, "10.0.0.7")
    yield "echo-v6", build.icmp_echo(A6, "2001:db8::7")
    yield "echo-reply-v4", build.icmp_echo("10.0.0.7", A4, reply=True)
    yield "echo-reply-v6", build.icmp_echo("2001:db8::7", A6, reply=True)
    yield "echo-internet", build.icmp_echo(A4, "8.8.8.8")
    yield "echo-internet-private", build.icmp_echo(A4, "172.16.0.1")
    yield "expired-udp", build.udp(A4, "192.168.1.1", 1, 53)
    yield "client-to-client", build.tcp(A4, B4, 1, 443)
    yield "spoofed", build.tcp(B4, "10.0.1.5", 1, 443)
    quoted = build.udp(A4, "10.0.0.9", 33434, 33435)[:28]
    yield "ttl-exceeded", build.icmp_error("192.0.2.1", A4, 11, 0, quoted)
    yield "ttl-exceeded-from-gateway", build.icmp_error("100.64.0.1", A4, 11, 0, quoted)
    yield (
        "frag-needed-v6",
        build.icmp_error("2001:db8::9", A6, 2, 0, build.udp(A6, "2001:db8::1", 1, 2)[:48]),
    )
    # The issue 19 packets: wrong-family ICMP fragments for an icmp-only resource.
    frag = b"\xaa" * 16
    yield (
        "bug19-v4-icmpv6-fragment-out",
        build.ip_packet(A4, "10.0.0.5", PROTO_ICMPV6, frag, frag_offset=100),
    )
    yield "bug19-v6-icmp-fragment-out", _v6_fragment(A6, "2001:db8::5", PROTO_ICMP, 100, frag)
    yield (
        "bug19-v4-icmpv6-fragment-in",
        build.ip_packet("10.0.0.5", A4, PROTO_ICMPV6, frag, frag_offset=100),
    )
    yield "bug19-v6-icmp-fragment-in", _v6_fragment("2001:db8::5", A6, PROTO_ICMP, 100, frag)
    yield (
        "same-family-icmp-fragment",
        build.ip_packet(A4, "10.0.0.5", PROTO_ICMP, frag, frag_offset=100),
    )
    yield (
        "first-fragment-tcp",
        build.ip_packet(
            A4, "10.0.1.5", PROTO_TCP, build.tcp(A4, "10.0.1.5", 1, 443)[20:], more_fragments=True
        ),
    )
    yield (
        "tiny-tcp-fragment-offset-1",
        build.ip_packet(A4, "10.0.1.5", PROTO_TCP, frag, frag_offset=1),
    )
    yield (
        "v6-first-fragment-udp",
        _v6_fragment(
            A6, "2001:db8:2::5", PROTO_UDP, 0, build.udp(A6, "2001:db8:2::5", 1, 443)[40:]
        ),
    )
    # Found by the reference parser: a ninth extension header that is a non-first fragment.
    options = b"".join(bytes([60, 0]) + b"\x01\x04" + b"\x00" * 4 for _ in range(7))
    nine = options + bytes([44, 0]) + b"\x01\x04" + b"\x00" * 4
    nine += struct.pack("!BBHI", PROTO_UDP, 0, 100 << 3, 7)
    yield (
        "v6-nine-extension-headers",
        build.ip_packet(A6, "2001:db8::5", PROTO_UDP, frag, ext_headers=nine, first_next_header=60),
    )
    # Found by the reference model: an ICMP error quote past the IP total length.
    yield (
        "icmp-error-quote-in-trailing-bytes",
        (build.icmp_error("192.0.2.1", A4, 11, 0, quoted[:4]) + quoted[4:]),
    )
    routing = bytes([PROTO_UDP, 0, 0, 1]) + b"\x00" * 4  # segments left = 1
    yield "v6-routing-header-segments-left", build.ip_packet(
        A6, "2001:db8::5", PROTO_UDP, build.udp(A6, "2001:db8::5", 1, 2)[40:],
        ext_headers=routing, first_next_header=43,
    )  # fmt: skip
    with_options = bytearray(build.tcp(A4, "10.0.1.5", 1, 443))
    with_options[0] = 0x46
    yield "v4-options-mislabelled", bytes(with_options)
    yield "gre", build.ip_packet(B4, "10.0.0.9", 47, b"\x00\x00\x08\x00")
