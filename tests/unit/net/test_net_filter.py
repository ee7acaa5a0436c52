"""The per-peer authorization table (gateway packet filter)."""

from __future__ import annotations

import struct
from ipaddress import ip_network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.net import build
from agents.net.filter import (
    DROP_MALFORMED,
    DROP_SPOOFED,
    DROP_UNKNOWN_PEER,
    FORWARD,
    REJECT,
    Filter,
    Firewall,
    PortRange,
    ResourceRule,
    UnknownPeerError,
    Verdict,
    is_public,
)
from agents.net.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

ALICE = b"A" * 32
BOB = b"B" * 32
A4, A6 = "100.64.0.2", "fd00:2021:1111::2"
B4, B6 = "100.64.0.3", "fd00:2021:1111::3"
WEB = "10.0.0.5"
OTHER = "10.0.1.9"
NOW = 1000.0


def rule(
    rid: str = "web",
    networks: tuple[str, ...] = ("10.0.0.0/24",),
    filters: tuple[Filter, ...] = (),
    kind: str = "cidr",
) -> ResourceRule:
    return ResourceRule(rid, kind, tuple(ip_network(n) for n in networks), filters)  # type: ignore[arg-type]


def tcp_only(*ports: str) -> tuple[Filter, ...]:
    return (Filter("tcp", tuple(PortRange.parse(p) for p in ports)),)


@pytest.fixture
def fw() -> Firewall:
    f = Firewall()
    f.set_peer(ALICE, A4, A6)
    f.set_peer(BOB, B4, B6)
    return f


def test_it_forwards_allowed_traffic_and_rejects_the_rest(fw: Firewall) -> None:
    fw.allow(ALICE, "auth1", rule(filters=tcp_only("443", "8000-8080")), None)
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 40000, 443), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 40000, 8050), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 40000, 8081), NOW) is REJECT  # wrong port
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 40000, 22), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.udp(A4, WEB, 40000, 443), NOW) is REJECT  # wrong proto
    assert fw.decide_outbound(ALICE, build.icmp_echo(A4, WEB), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.tcp(A4, OTHER, 1, 443), NOW) is REJECT  # not authorized
    # Bob holds no authorization at all.
    assert fw.decide_outbound(BOB, build.tcp(B4, WEB, 1, 443), NOW) is REJECT


def test_empty_filters_allow_everything(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), None)
    assert fw.decide_outbound(ALICE, build.udp(A4, WEB, 1, 9999), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.ip_packet(A4, WEB, 47, b"gre!"), NOW) is FORWARD


def test_icmp_filter_allows_echo_v4_and_v6_only(fw: Firewall) -> None:
    fw.allow(
        ALICE, "a", rule(networks=("10.0.0.0/24", "2001:db8::/64"), filters=(Filter("icmp"),)), None
    )
    assert fw.decide_outbound(ALICE, build.icmp_echo(A4, WEB), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.icmp_echo(A6, "2001:db8::1"), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.icmp_echo(A4, WEB, reply=True), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 80), NOW) is REJECT


def test_udp_filter_without_ports_allows_all_udp_ports(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(filters=(Filter("udp"),)), None)
    assert fw.decide_outbound(ALICE, build.udp(A4, WEB, 1, 1), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.udp(A4, WEB, 1, 65535), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW) is REJECT


def test_ip_resource_matches_only_that_host(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(kind="ip", networks=("10.0.0.5/32",)), None)
    assert fw.decide_outbound(ALICE, build.tcp(A4, "10.0.0.5", 1, 1), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, "10.0.0.6", 1, 1), NOW) is REJECT


def test_it_drops_spoofed_sources(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(networks=("10.0.0.0/24", "2001:db8::/64")), None)
    assert fw.decide_outbound(ALICE, build.tcp(B4, WEB, 1, 443), NOW) is DROP_SPOOFED  # Bob's IP
    assert fw.decide_outbound(ALICE, build.tcp("192.168.1.1", WEB, 1, 443), NOW) is DROP_SPOOFED
    assert fw.decide_outbound(ALICE, build.tcp(B6, "2001:db8::1", 1, 443), NOW) is DROP_SPOOFED
    assert fw.decide_outbound(ALICE, build.tcp(A6, "2001:db8::1", 1, 443), NOW) is FORWARD


def test_a_peer_without_ipv6_cannot_send_ipv6(fw: Firewall) -> None:
    fw.set_peer(ALICE, A4, None)
    fw.allow(ALICE, "a", rule(networks=("2001:db8::/64",)), None)
    assert fw.decide_outbound(ALICE, build.tcp(A6, "2001:db8::1", 1, 443), NOW) is DROP_SPOOFED


def test_unknown_peer_and_malformed_packets(fw: Firewall) -> None:
    assert fw.decide_outbound(b"C" * 32, build.tcp(A4, WEB, 1, 1), NOW) is DROP_UNKNOWN_PEER
    assert fw.decide_outbound(None, build.tcp(A4, WEB, 1, 1), NOW) is DROP_UNKNOWN_PEER
    assert fw.decide_outbound(ALICE, b"\x45\x00", NOW) is DROP_MALFORMED
    with pytest.raises(UnknownPeerError):
        fw.allow(b"C" * 32, "x", rule(), None)


def test_expired_authorizations_stop_forwarding(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), NOW + 10)
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW + 9.9) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW + 10) is REJECT
    assert fw.next_expiry() == NOW + 10
    assert fw.expire(NOW + 5) == []
    assert fw.expire(NOW + 10) == [(ALICE, "a")]
    assert fw.authorizations(ALICE) == []
    assert fw.next_expiry() is None


def test_a_later_authorization_for_the_same_resource_keeps_access(fw: Firewall) -> None:
    fw.allow(ALICE, "short", rule(), NOW + 10)
    fw.allow(ALICE, "long", rule(), NOW + 100)
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW + 50) is FORWARD
    fw.revoke(ALICE, "long")
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW + 5) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW + 50) is REJECT


def test_revoking_live_takes_effect_on_the_next_packet(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), None)
    fw.allow(BOB, "b", rule(), None)
    pkt = build.tcp(A4, WEB, 1, 443)
    assert fw.decide_outbound(ALICE, pkt, NOW) is FORWARD
    assert fw.revoke(ALICE, "a") is True
    assert fw.decide_outbound(ALICE, pkt, NOW) is REJECT
    assert fw.revoke(ALICE, "a") is False
    # Bob's authorization for the same resource is untouched.
    assert fw.decide_outbound(BOB, build.tcp(B4, WEB, 1, 443), NOW) is FORWARD


def test_filters_updated_live_apply_to_every_holder(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(filters=tcp_only("443")), None)
    fw.allow(BOB, "b", rule(filters=tcp_only("443")), None)
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 22), NOW) is REJECT
    assert fw.update_resource(rule(filters=tcp_only("22"))) == 2
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 22), NOW) is FORWARD
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 443), NOW) is REJECT
    assert fw.decide_outbound(BOB, build.tcp(B4, WEB, 1, 22), NOW) is FORWARD
    assert fw.update_resource(rule(rid="nobody-has-it")) == 0


def test_readdressed_resource_applies_live(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), None)
    fw.update_resource(rule(networks=("10.0.1.0/24",)))
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.tcp(A4, OTHER, 1, 1), NOW) is FORWARD


def test_revoke_resource_ends_all_its_authorizations(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), None)
    fw.allow(BOB, "b", rule(), None)
    fw.allow(BOB, "c", rule(rid="other", networks=("10.0.1.0/24",)), None)
    assert sorted(fw.revoke_resource("web")) == [(ALICE, "a"), (BOB, "b")]
    assert fw.decide_outbound(BOB, build.tcp(B4, WEB, 1, 1), NOW) is REJECT
    assert fw.decide_outbound(BOB, build.tcp(B4, OTHER, 1, 1), NOW) is FORWARD
    assert fw.resource("web") is None


def test_never_client_to_client(fw: Firewall) -> None:
    # Even a resource that covers the tunnel range cannot be used to reach another client.
    fw.allow(ALICE, "a", rule(networks=("100.0.0.0/8", "fd00::/8")), None)
    assert fw.decide_outbound(ALICE, build.tcp(A4, B4, 1, 22), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.tcp(A6, B6, 1, 22), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.tcp(A4, "100.63.0.1", 1, 22), NOW) is FORWARD
    # And a reply "from" Bob is never routed to Alice.
    assert fw.route_inbound(build.tcp(B4, A4, 22, 1), NOW) is None


@pytest.mark.parametrize(
    "dst",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.1.1",
        "100.64.0.9",
        "100.100.100.100",
        "224.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "240.0.0.1",
        "fc00::1",
        "fd12::1",
        "fe80::1",
        "ff02::1",
        "::1",
        "::",
        "::ffff:10.0.0.1",
        "fd00:2021:1111::9",
    ],
)
def test_internet_resource_refuses_non_public_destinations(fw: Firewall, dst: str) -> None:
    fw.allow(ALICE, "i", rule(rid="internet", kind="internet", networks=()), None)
    src = A4 if ":" not in dst else A6
    assert fw.decide_outbound(ALICE, build.udp(src, dst, 1, 53), NOW) is REJECT


@pytest.mark.parametrize("dst", ["1.1.1.1", "8.8.8.8", "100.128.0.1", "2606:4700::1111"])
def test_internet_resource_allows_public_destinations(fw: Firewall, dst: str) -> None:
    src = A4 if ":" not in dst else A6
    assert fw.decide_outbound(ALICE, build.udp(src, dst, 1, 53), NOW) is REJECT
    fw.allow(ALICE, "i", rule(rid="internet", kind="internet", networks=()), None)
    assert fw.decide_outbound(ALICE, build.udp(src, dst, 1, 53), NOW) is FORWARD
    assert fw.route_inbound(build.udp(dst, src, 53, 1), NOW) == ALICE


def test_is_public_edges() -> None:
    assert is_public(4, int.from_bytes(bytes([100, 63, 255, 255]), "big"))
    assert not is_public(4, int.from_bytes(bytes([100, 64, 0, 0]), "big"))
    assert not is_public(4, int.from_bytes(bytes([100, 127, 255, 255]), "big"))
    assert is_public(4, int.from_bytes(bytes([100, 128, 0, 0]), "big"))


def test_non_first_fragments_follow_the_protocol_only(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(filters=tcp_only("443")), None)
    frag_tcp = build.ip_packet(A4, WEB, PROTO_TCP, b"\x00" * 16, frag_offset=100)
    frag_udp = build.ip_packet(A4, WEB, PROTO_UDP, b"\x00" * 16, frag_offset=100)
    assert fw.decide_outbound(ALICE, frag_tcp, NOW) is FORWARD
    assert fw.decide_outbound(ALICE, frag_udp, NOW) is REJECT


def _v6_fragment(src: str, dst: str, next_header: int, offset: int = 100) -> bytes:
    """An IPv6 non-first fragment (fragment header at `offset` 8-octet units) of `next_header`."""
    frag_header = struct.pack("!BBHI", next_header, 0, offset << 3, 7)
    return build.ip_packet(
        src, dst, next_header, b"\x00" * 16, ext_headers=frag_header, first_next_header=44
    )


ICMP_ONLY_BOTH_FAMILIES = ("10.0.0.0/24", "2001:db8::/64")


def test_wrong_family_icmp_fragments_are_rejected_outbound(fw: Firewall) -> None:
    # Issue 19: an icmp filter allows ICMP in IPv4 and ICMPv6 in IPv6, never the other family's
    # protocol number; a non-first fragment must not be let through on that number.
    fw.allow(ALICE, "a", rule(networks=ICMP_ONLY_BOTH_FAMILIES, filters=(Filter("icmp"),)), None)
    v4_icmpv6 = build.ip_packet(A4, WEB, PROTO_ICMPV6, b"\x00" * 16, frag_offset=100)
    v6_icmpv4 = _v6_fragment(A6, "2001:db8::1", PROTO_ICMP)
    assert fw.decide_outbound(ALICE, v4_icmpv6, NOW) is REJECT
    assert fw.decide_outbound(ALICE, v6_icmpv4, NOW) is REJECT
    # The same-family fragments still pass (their first fragment carried the checked header).
    v4_icmp = build.ip_packet(A4, WEB, PROTO_ICMP, b"\x00" * 16, frag_offset=100)
    v6_icmpv6 = _v6_fragment(A6, "2001:db8::1", PROTO_ICMPV6)
    assert fw.decide_outbound(ALICE, v4_icmp, NOW) is FORWARD
    assert fw.decide_outbound(ALICE, v6_icmpv6, NOW) is FORWARD
    # Internet resources compile the same way.
    internet_icmp = rule(rid="inet", kind="internet", networks=(), filters=(Filter("icmp"),))
    fw.allow(BOB, "i", internet_icmp, None)
    assert (
        fw.decide_outbound(
            BOB, build.ip_packet(B4, "8.8.8.8", PROTO_ICMPV6, b"\x00" * 16, frag_offset=9), NOW
        )
        is REJECT
    )
    assert fw.decide_outbound(BOB, _v6_fragment(B6, "2606:4700::1", PROTO_ICMP), NOW) is REJECT


def test_wrong_family_icmp_fragments_are_not_routed_inbound(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(networks=ICMP_ONLY_BOTH_FAMILIES, filters=(Filter("icmp"),)), None)
    v4_icmpv6 = build.ip_packet(WEB, A4, PROTO_ICMPV6, b"\x00" * 16, frag_offset=100)
    v6_icmpv4 = _v6_fragment("2001:db8::1", A6, PROTO_ICMP)
    assert fw.route_inbound(v4_icmpv6, NOW) is None
    assert fw.route_inbound(v6_icmpv4, NOW) is None
    v4_icmp = build.ip_packet(WEB, A4, PROTO_ICMP, b"\x00" * 16, frag_offset=100)
    v6_icmpv6 = _v6_fragment("2001:db8::1", A6, PROTO_ICMPV6)
    assert fw.route_inbound(v4_icmp, NOW) == ALICE
    assert fw.route_inbound(v6_icmpv6, NOW) == ALICE


def test_verdicts_are_distinct() -> None:
    assert len({v.value for v in Verdict}) == len(Verdict)


# --- route_inbound ------------------------------------------------------------------------------


def test_it_routes_replies_from_authorized_resources(fw: Firewall) -> None:
    fw.allow(
        ALICE, "a", rule(networks=("10.0.0.0/24", "2001:db8::/64"), filters=tcp_only("443")), None
    )
    assert fw.route_inbound(build.tcp(WEB, A4, 443, 40000), NOW) == ALICE
    assert fw.route_inbound(build.tcp("2001:db8::1", A6, 443, 40000), NOW) == ALICE
    assert fw.route_inbound(build.tcp(WEB, A4, 22, 40000), NOW) is None  # not a filtered port
    assert fw.route_inbound(build.tcp(OTHER, A4, 443, 40000), NOW) is None  # not a resource
    assert fw.route_inbound(build.tcp(WEB, B4, 443, 40000), NOW) is None  # Bob not authorized
    assert fw.route_inbound(build.tcp(WEB, "100.64.0.99", 443, 1), NOW) is None  # no such peer
    assert fw.route_inbound(b"garbage", NOW) is None


def test_inbound_icmp_echo_reply_needs_icmp_filter(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(filters=(Filter("icmp"),)), None)
    assert fw.route_inbound(build.icmp_echo(WEB, A4, reply=True), NOW) == ALICE
    assert fw.route_inbound(build.icmp_echo(WEB, A4), NOW) is None  # a request is not a reply
    fw.update_resource(rule(filters=tcp_only("443")))
    assert fw.route_inbound(build.icmp_echo(WEB, A4, reply=True), NOW) is None


def test_inbound_stops_after_revoke_and_expiry(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), NOW + 10)
    reply = build.udp(WEB, A4, 53, 1)
    assert fw.route_inbound(reply, NOW) == ALICE
    assert fw.route_inbound(reply, NOW + 11) is None
    fw.revoke(ALICE, "a")
    assert fw.route_inbound(reply, NOW) is None


def test_inbound_icmp_errors_about_the_peers_own_flows(fw: Firewall) -> None:
    fw.allow(
        ALICE, "a", rule(networks=("10.0.0.0/24", "2001:db8::/64"), filters=tcp_only("443")), None
    )
    original = build.tcp(A4, WEB, 40000, 443)
    router = "192.0.2.1"  # a router on the path, not itself a resource
    ttl_exceeded = build.icmp_error(router, A4, 11, 0, original[:28])
    assert fw.route_inbound(ttl_exceeded, NOW) == ALICE
    about_other = build.icmp_error(router, A4, 11, 0, build.tcp(A4, OTHER, 1, 443)[:28])
    assert fw.route_inbound(about_other, NOW) is None
    about_bob = build.icmp_error(router, A4, 11, 0, build.tcp(B4, WEB, 1, 443)[:28])
    assert fw.route_inbound(about_bob, NOW) is None
    truncated = build.icmp_error(router, A4, 11, 0, original[:10])
    assert fw.route_inbound(truncated, NOW) is None
    original6 = build.tcp(A6, "2001:db8::1", 1, 443)
    too_big = build.icmp_error("2001:db8:ffff::1", A6, 2, 0, original6)
    assert fw.route_inbound(too_big, NOW) == ALICE


# --- peers --------------------------------------------------------------------------------------


def test_reassigned_tunnel_address_moves_to_the_new_peer(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), None)
    fw.allow(BOB, "b", rule(), None)
    fw.set_peer(BOB, A4, B6)  # Alice's IPv4 is given to Bob
    assert fw.peer_by_address(A4) == BOB
    assert fw.peer_by_address(B4) is None
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW) is DROP_SPOOFED
    assert fw.decide_outbound(BOB, build.tcp(A4, WEB, 1, 1), NOW) is FORWARD
    assert fw.route_inbound(build.tcp(WEB, A4, 1, 1), NOW) == BOB


def test_removed_peer_is_forgotten(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), NOW + 5)
    assert fw.remove_peer(ALICE) is True
    assert fw.remove_peer(ALICE) is False
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW) is DROP_UNKNOWN_PEER
    assert fw.route_inbound(build.tcp(WEB, A4, 1, 1), NOW) is None
    assert fw.peer_by_address(A4) is None
    assert fw.next_expiry() is None
    assert fw.resource("web") is None


def test_reallowing_an_authorization_id_replaces_it(fw: Firewall) -> None:
    fw.allow(ALICE, "a", rule(), None)
    fw.allow(ALICE, "a", rule(rid="other", networks=("10.0.1.0/24",)), None)
    assert fw.decide_outbound(ALICE, build.tcp(A4, WEB, 1, 1), NOW) is REJECT
    assert fw.decide_outbound(ALICE, build.tcp(A4, OTHER, 1, 1), NOW) is FORWARD
    assert fw.resource("web") is None
    assert [a.resource_id for a in fw.authorizations(ALICE)] == ["other"]


def test_port_range_parsing() -> None:
    assert PortRange.parse("443") == PortRange(443, 443)
    assert PortRange.parse("1000-2000") == PortRange(1000, 2000)
    for bad in ("", "x", "10-", "-5", "2000-1000", "70000", "1-2-3"):
        with pytest.raises(ValueError):
            PortRange.parse(bad)


# --- fuzzing ------------------------------------------------------------------------------------


def _fuzz_firewall() -> Firewall:
    f = Firewall()
    f.set_peer(ALICE, A4, A6)
    f.allow(
        ALICE, "a", rule(networks=("10.0.0.0/24", "2001:db8::/64"), filters=tcp_only("443")), None
    )
    f.allow(
        ALICE,
        "i",
        rule(rid="internet", kind="internet", networks=(), filters=(Filter("icmp"),)),
        NOW,
    )
    return f


FUZZ_FW = _fuzz_firewall()
SEEDS = [
    build.tcp(A4, WEB, 1, 443),
    build.tcp(WEB, A4, 443, 1),
    build.icmp_error("192.0.2.1", A4, 3, 4, build.tcp(A4, WEB, 1, 443)[:28]),
    build.icmp_echo(A6, "2001:db8::1"),
    build.icmp_error("2001:db8::9", A6, 1, 4, build.udp(A6, "2001:db8::1", 1, 2)),
]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=120), st.floats(allow_nan=False))
def test_random_bytes_never_raise(data: bytes, now: float) -> None:
    assert isinstance(FUZZ_FW.decide_outbound(ALICE, data, now), Verdict)
    assert FUZZ_FW.route_inbound(data, now) in (None, ALICE)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 80),
)
def test_mutated_packets_never_raise(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    del data[len(data) - min(cut, len(data)) :]
    assert isinstance(FUZZ_FW.decide_outbound(ALICE, bytes(data), NOW - 1), Verdict)
    assert FUZZ_FW.route_inbound(bytes(data), NOW - 1) in (None, ALICE)


def test_mutations_do_not_widen_access() -> None:
    # Flipping any single byte of a rejected packet never yields FORWARD unless the flip lands on
    # the destination address or port fields, or turns it into a non-first fragment of an allowed
    # protocol (these legitimately change the decision).
    rejected = build.tcp(A4, WEB, 1, 22)
    for pos in range(len(rejected)):
        if pos in (6, 7) or 16 <= pos < 20 or 22 <= pos < 24:
            continue
        data = bytearray(rejected)
        data[pos] ^= 0xFF
        assert FUZZ_FW.decide_outbound(ALICE, bytes(data), NOW - 1) is not FORWARD, pos
    assert struct.unpack("!H", rejected[22:24])[0] == 22


def test_an_icmp_error_quote_must_lie_inside_the_ip_packet(fw: Firewall) -> None:
    # Trailing bytes after the IP total length are tolerated by the parser but are not part of
    # the packet: a quote found only there does not route the error.
    fw.allow(ALICE, "a", rule(), None)
    quoted = build.udp(A4, WEB, 33434, 33435)[:28]
    whole = build.icmp_error("192.0.2.1", A4, 11, 0, quoted)
    assert fw.route_inbound(whole, NOW) == ALICE
    cut = build.icmp_error("192.0.2.1", A4, 11, 0, quoted[:4])
    assert fw.route_inbound(cut + quoted[4:], NOW) is None


def test_errors_from_the_gateways_own_tunnel_address_reach_the_peer(fw: Firewall) -> None:
    # Traceroute / PMTU: the gateway's kernel answers from its tunnel address 100.64.0.1.
    fw.allow(ALICE, "a", rule(), None)
    quoted = build.udp(A4, WEB, 33434, 33435)[:28]
    assert fw.route_inbound(build.icmp_error("100.64.0.1", A4, 11, 0, quoted), NOW) == ALICE
    assert fw.route_inbound(build.icmp_error("100.64.0.1", A4, 3, 4, quoted), NOW) == ALICE
    # But not an echo reply (or anything else) from that address.
    assert fw.route_inbound(build.icmp_echo("100.64.0.1", A4, reply=True), NOW) is None
