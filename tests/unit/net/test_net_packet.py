"""IPv4/IPv6 parsing and checksums."""

from __future__ import annotations

import struct
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.net import build
from agents.net.packet import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    checksum_ok,
    internet_checksum,
    ipv4_header_checksum,
    parse,
    pseudo_header_sum,
    transport_checksum,
)

from .reference import naive_checksum

C4 = "100.64.0.2"
R4 = "10.0.0.5"
C6 = "fd00:2021:1111::2"
R6 = "2001:db8::5"


def pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ip_address(src).packed, ip_address(dst).packed
    if len(s) == 4:
        return s + d + bytes([0, proto]) + length.to_bytes(2, "big")
    return s + d + length.to_bytes(4, "big") + bytes([0, 0, 0, proto])


# --- IPv4 -------------------------------------------------------------------------------------


def test_it_parses_ipv4_tcp() -> None:
    info = parse(build.tcp(C4, R4, 40000, 443, b"hello"))
    assert info is not None
    assert info.version == 4
    assert info.src == int(ip_address(C4))
    assert info.dst == int(ip_address(R4))
    assert info.protocol == PROTO_TCP
    assert (info.src_port, info.dst_port) == (40000, 443)
    assert info.l4_offset == 20
    assert info.length == 20 + 20 + 5
    assert not info.fragment
    assert not info.is_icmp_error


def test_it_parses_ipv4_udp_and_icmp() -> None:
    u = parse(build.udp(C4, R4, 5353, 53, b"q"))
    assert u is not None and u.protocol == PROTO_UDP and (u.src_port, u.dst_port) == (5353, 53)
    i = parse(build.icmp_echo(C4, R4))
    assert i is not None and i.protocol == PROTO_ICMP
    assert (i.icmp_type, i.icmp_code) == (8, 0)
    assert not i.is_icmp_error
    e = parse(build.icmp_error(R4, C4, 3, 1, build.udp(C4, R4, 1, 2)[:28]))
    assert e is not None and e.is_icmp_error


def test_it_reads_ports_after_ipv4_options() -> None:
    pkt = bytearray(build.tcp(C4, R4, 1234, 80))
    options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    pkt = bytearray(pkt[:20] + options + pkt[20:])
    pkt[0] = 0x46
    struct.pack_into("!H", pkt, 2, len(pkt))
    info = parse(bytes(pkt))
    assert info is not None and info.l4_offset == 24 and info.dst_port == 80


def test_it_tolerates_trailing_bytes_but_not_truncation() -> None:
    pkt = build.udp(C4, R4, 1, 2, b"abc")
    info = parse(pkt + b"\x00" * 10)
    assert info is not None and info.length == len(pkt)
    assert parse(pkt[:-1]) is None


def test_it_rejects_malformed_ipv4() -> None:
    pkt = bytearray(build.tcp(C4, R4, 1, 2))
    assert parse(b"") is None
    assert parse(bytes(pkt[:19])) is None
    bad_ihl = bytearray(pkt)
    bad_ihl[0] = 0x44  # IHL 16 bytes < 20
    assert parse(bytes(bad_ihl)) is None
    bad_version = bytearray(pkt)
    bad_version[0] = 0x55
    assert parse(bytes(bad_version)) is None
    short_tcp = build.ip_packet(C4, R4, PROTO_TCP, b"\x00" * 19)
    assert parse(short_tcp) is None
    assert parse(build.ip_packet(C4, R4, PROTO_TCP, b"\x00" * 20)) is not None


def test_non_first_ipv4_fragments_have_no_ports() -> None:
    frag = build.ip_packet(C4, R4, PROTO_UDP, b"\x01\x02\x03\x04" * 4, frag_offset=10)
    info = parse(frag)
    assert info is not None and info.fragment
    assert (info.src_port, info.dst_port) == (0, 0)
    first = build.ip_packet(C4, R4, PROTO_UDP, b"\x01\x02\x03\x04" * 4, more_fragments=True)
    info = parse(first)
    assert info is not None and not info.fragment and info.src_port == 0x0102


def test_it_rejects_tiny_and_overlapping_tcp_fragments() -> None:
    # RFC 1858: a first fragment too short for the TCP header, or offset 1 rewriting its flags.
    assert parse(build.ip_packet(C4, R4, PROTO_TCP, b"\x00" * 8, more_fragments=True)) is None
    assert parse(build.ip_packet(C4, R4, PROTO_TCP, b"\x00" * 8, frag_offset=1)) is None
    assert parse(build.ip_packet(C4, R4, PROTO_TCP, b"\x00" * 8, frag_offset=2)) is not None


def test_other_protocols_parse_without_ports() -> None:
    info = parse(build.ip_packet(C4, R4, 47, b"gre!"))
    assert info is not None and info.protocol == 47 and info.src_port == info.dst_port == 0


# --- IPv6 -------------------------------------------------------------------------------------


def test_it_parses_ipv6_tcp_udp_icmpv6() -> None:
    t = parse(build.tcp(C6, R6, 1, 443))
    assert t is not None and t.version == 6 and t.protocol == PROTO_TCP and t.dst_port == 443
    assert t.src == int(ip_address(C6)) and t.dst == int(ip_address(R6))
    assert t.l4_offset == 40
    u = parse(build.udp(C6, R6, 2, 53))
    assert u is not None and u.protocol == PROTO_UDP and u.dst_port == 53
    i = parse(build.icmp_echo(C6, R6))
    assert i is not None and i.protocol == PROTO_ICMPV6 and i.icmp_type == 128
    assert not i.is_icmp_error
    e = parse(build.icmp_error(R6, C6, 1, 4, build.udp(C6, R6, 1, 2)))
    assert e is not None and e.is_icmp_error


def ext(next_header: int, body_len_units: int = 0) -> bytes:
    """A generic extension header: next header, length in 8-octet units beyond the first 8."""
    return (
        bytes([next_header, body_len_units])
        + b"\x01\x04\x00\x00\x00\x00"
        + b"\x00" * (8 * body_len_units)
    )


def test_it_walks_ipv6_extension_headers() -> None:
    seg = build.udp(C6, R6, 7, 8)[40:]
    chain = ext(60, 1) + ext(PROTO_UDP)  # hop-by-hop (16 bytes) -> dest options (8) -> UDP
    pkt = build.ip_packet(C6, R6, PROTO_UDP, seg, ext_headers=chain, first_next_header=0)
    info = parse(pkt)
    assert info is not None
    assert info.protocol == PROTO_UDP and info.l4_offset == 40 + 16 + 8
    assert (info.src_port, info.dst_port) == (7, 8)


def test_it_follows_an_ipv6_first_fragment_and_stops_at_later_ones() -> None:
    seg = build.tcp(C6, R6, 5, 22)[40:]
    first = struct.pack("!BxHI", PROTO_TCP, 0x0001, 99)  # offset 0, more fragments
    info = parse(build.ip_packet(C6, R6, PROTO_TCP, seg, ext_headers=first, first_next_header=44))
    assert info is not None and not info.fragment and info.dst_port == 22
    later = struct.pack("!BxHI", PROTO_TCP, (100 << 3), 99)
    info = parse(build.ip_packet(C6, R6, PROTO_TCP, seg, ext_headers=later, first_next_header=44))
    assert info is not None and info.fragment and info.protocol == PROTO_TCP
    assert info.src_port == info.dst_port == 0


def test_it_accepts_routing_header_with_no_segments_left_only() -> None:
    seg = build.udp(C6, R6, 1, 53)[40:]
    done = bytes([PROTO_UDP, 0, 4, 0]) + b"\x00" * 4  # segments left 0
    pkt = build.ip_packet(C6, R6, PROTO_UDP, seg, ext_headers=done, first_next_header=43)
    assert parse(pkt) is not None
    pending = bytes([PROTO_UDP, 2, 0, 1]) + b"\x00" * 4 + b"\x00" * 16  # one segment to go
    pkt = build.ip_packet(C6, R6, PROTO_UDP, seg, ext_headers=pending, first_next_header=43)
    assert parse(pkt) is None


def test_it_skips_ipv6_authentication_header() -> None:
    seg = build.udp(C6, R6, 1, 53)[40:]
    ah = bytes([PROTO_UDP, 4]) + b"\x00" * 22  # (4 + 2) * 4 = 24 bytes
    info = parse(build.ip_packet(C6, R6, PROTO_UDP, seg, ext_headers=ah, first_next_header=51))
    assert info is not None and info.l4_offset == 64 and info.dst_port == 53


def test_it_rejects_malformed_ipv6() -> None:
    pkt = build.tcp(C6, R6, 1, 2)
    assert parse(pkt[:39]) is None
    assert parse(pkt[:-1]) is None  # payload length beyond the buffer
    truncated_ext = build.ip_packet(
        C6, R6, PROTO_UDP, b"", ext_headers=b"\x11\x00\x00", first_next_header=0
    )
    assert parse(truncated_ext) is None
    overlong_ext = build.ip_packet(
        C6, R6, PROTO_UDP, b"", ext_headers=ext(PROTO_UDP, 5)[:16], first_next_header=60
    )
    assert parse(overlong_ext) is None
    loop = b"".join(ext(60) for _ in range(12)) + ext(PROTO_UDP) + b"\x00" * 8
    assert (
        parse(build.ip_packet(C6, R6, PROTO_UDP, b"", ext_headers=loop, first_next_header=60))
        is None
    )


def test_a_non_first_fragment_header_counts_towards_the_extension_header_limit() -> None:
    # Eight headers are the most a chain may have, a trailing fragment header included (the
    # reference parser found the ninth one accepted when it was a non-first fragment).
    frag = struct.pack("!BxHI", PROTO_UDP, 100 << 3, 99)

    def chain(options: int) -> bytes:
        headers = b"".join(ext(60) for _ in range(options - 1)) + ext(44) + frag
        return build.ip_packet(
            C6, R6, PROTO_UDP, b"\x00" * 16, ext_headers=headers, first_next_header=60
        )

    info = parse(chain(7))
    assert info is not None and info.fragment and info.protocol == PROTO_UDP
    assert parse(chain(8)) is None


def test_no_next_header_parses_without_ports() -> None:
    info = parse(build.ip_packet(C6, R6, 59, b""))
    assert info is not None and info.protocol == 59 and not info.fragment


# --- checksums ----------------------------------------------------------------------------------


@given(st.binary(max_size=300))
def test_checksum_matches_the_naive_algorithm(data: bytes) -> None:
    assert internet_checksum(data) == naive_checksum(data)


def test_built_packets_carry_valid_checksums() -> None:
    pkt = build.tcp(C4, R4, 1, 2, b"data!")
    assert naive_checksum(pkt[:20]) == 0
    assert naive_checksum(pseudo(C4, R4, PROTO_TCP, len(pkt) - 20) + pkt[20:]) == 0
    pkt6 = build.udp(C6, R6, 1, 2, b"odd")
    assert naive_checksum(pseudo(C6, R6, PROTO_UDP, len(pkt6) - 40) + pkt6[40:]) == 0


def test_checksum_helpers_agree_with_a_manual_pseudo_header() -> None:
    pkt = build.tcp(C6, R6, 9, 10, b"xyz")
    seg = bytearray(pkt[40:])
    seg[16:18] = b"\x00\x00"
    s, d = ip_address(C6).packed, ip_address(R6).packed
    expected = naive_checksum(pseudo(C6, R6, PROTO_TCP, len(seg)) + bytes(seg))
    assert transport_checksum(s, d, PROTO_TCP, seg) == expected
    assert checksum_ok(pkt[40:], pseudo_header_sum(s, d, PROTO_TCP, len(seg)))
    corrupted = bytearray(pkt[40:])
    corrupted[-1] ^= 1
    assert not checksum_ok(bytes(corrupted), pseudo_header_sum(s, d, PROTO_TCP, len(seg)))
    header = bytearray(pkt[:0] + build.udp(C4, R4, 1, 2)[:20])
    header[10:12] = b"\x00\x00"
    assert ipv4_header_checksum(header) == naive_checksum(bytes(header))


# --- fuzzing ------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    info = parse(data)
    assert info is None or info.version in (4, 6)
    assert parse(memoryview(data)) == info
    assert parse(bytearray(data)) == info


SEEDS = [
    build.tcp(C4, R4, 1, 443, b"x" * 10),
    build.icmp_echo(C4, R4),
    build.tcp(C6, R6, 1, 443),
    build.ip_packet(
        C6,
        R6,
        PROTO_UDP,
        build.udp(C6, R6, 1, 2)[40:],
        ext_headers=ext(44) + ext(60) + ext(17),
        first_next_header=0,
    ),
    build.ip_packet(
        C6,
        R6,
        PROTO_TCP,
        b"\x00" * 20,
        ext_headers=struct.pack("!BxHI", 6, 8, 1),
        first_next_header=44,
    ),
]


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6),
    st.integers(0, 130),
)
def test_mutated_packets_never_raise(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = data[: max(0, len(data) - cut)] if cut < 100 else data
    info = parse(bytes(data))
    if info is not None:
        assert info.l4_offset <= info.length <= len(data)
        assert 0 <= info.src_port <= 0xFFFF and 0 <= info.dst_port <= 0xFFFF


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([PROTO_TCP, PROTO_UDP, PROTO_ICMP, 47]),
    st.integers(0, 0xFFFF),
    st.binary(min_size=0, max_size=40),
    st.integers(0, 60),
    st.one_of(st.none(), st.integers(0, 130)),
)
def test_the_ipv4_fast_path_agrees_with_the_general_parser(
    proto: int, flags_frag: int, payload: bytes, extra: int, total: int | None
) -> None:
    from agents.net.packet import _parse_v4

    pkt = bytearray(build.ip_packet(C4, R4, proto, payload))
    struct.pack_into("!H", pkt, 6, flags_frag)
    if total is not None:
        struct.pack_into("!H", pkt, 2, total)
    data = bytes(pkt) + b"\x00" * extra
    assert parse(data) == _parse_v4(data, len(data), data[0])
