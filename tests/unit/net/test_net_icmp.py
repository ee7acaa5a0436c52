"""ICMP administratively-prohibited replies."""

from __future__ import annotations

import struct
from ipaddress import ip_address

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.net import build
from agents.net.icmp import admin_prohibited
from agents.net.packet import PROTO_TCP, PROTO_UDP, parse

from .reference import naive_checksum

C4 = "100.64.0.2"
R4 = "10.0.0.5"
C6 = "fd00:2021:1111::2"
R6 = "2001:db8::5"


def test_ipv4_reply_is_type_3_code_13_from_the_destination() -> None:
    offending = build.tcp(C4, R4, 40000, 22, b"A" * 100)
    reply = admin_prohibited(offending)
    assert reply is not None
    # IPv4 header: addresses swapped, protocol ICMP, valid header checksum, length consistent.
    assert reply[0] == 0x45
    assert struct.unpack("!H", reply[2:4])[0] == len(reply)
    assert reply[9] == 1
    assert reply[12:16] == ip_address(R4).packed
    assert reply[16:20] == ip_address(C4).packed
    assert naive_checksum(reply[:20]) == 0
    icmp = reply[20:]
    assert (icmp[0], icmp[1]) == (3, 13)
    assert naive_checksum(icmp) == 0
    # Payload: the original IP header plus the first 8 bytes of its payload, nothing more.
    assert icmp[8:] == offending[: 20 + 8]


def test_ipv6_reply_is_type_1_code_1_with_as_much_as_fits_in_1280() -> None:
    offending = build.udp(C6, R6, 5000, 53, b"B" * 1300)
    reply = admin_prohibited(offending)
    assert reply is not None
    assert len(reply) == 1280
    assert reply[0] >> 4 == 6
    assert struct.unpack("!H", reply[4:6])[0] == len(reply) - 40
    assert reply[6] == 58
    assert reply[8:24] == ip_address(R6).packed
    assert reply[24:40] == ip_address(C6).packed
    icmp = reply[40:]
    assert (icmp[0], icmp[1]) == (1, 1)
    pseudo = reply[8:24] + reply[24:40] + len(icmp).to_bytes(4, "big") + b"\x00\x00\x00\x3a"
    assert naive_checksum(pseudo + icmp) == 0
    assert icmp[8:] == offending[: 1280 - 48]


def test_small_ipv6_packets_are_quoted_whole() -> None:
    offending = build.tcp(C6, R6, 1, 443)
    reply = admin_prohibited(offending)
    assert reply is not None and reply[48:] == offending


def test_replies_parse_back_as_icmp_errors() -> None:
    for offending in (build.tcp(C4, R4, 1, 2), build.icmp_echo(C6, R6)):
        reply = admin_prohibited(offending)
        assert reply is not None
        info = parse(reply)
        assert info is not None and info.is_icmp_error


def test_it_never_answers_an_icmp_error() -> None:
    err4 = build.icmp_error(C4, R4, 3, 3, build.udp(R4, C4, 1, 2)[:28])
    err6 = build.icmp_error(C6, R6, 1, 4, build.udp(R6, C6, 1, 2))
    assert admin_prohibited(err4) is None
    assert admin_prohibited(err6) is None
    assert admin_prohibited(admin_prohibited(build.udp(C4, R4, 1, 2)) or b"") is None
    # An echo request is not an error: it is answered.
    assert admin_prohibited(build.icmp_echo(C4, R4)) is not None
    assert admin_prohibited(build.icmp_echo(C6, R6)) is not None


def test_it_does_not_answer_fragments_multicast_or_bogus_sources() -> None:
    later = build.ip_packet(C4, R4, PROTO_UDP, b"\x00" * 16, frag_offset=3)
    assert admin_prohibited(later) is None
    assert admin_prohibited(build.udp(C4, "224.0.0.251", 1, 5353)) is None
    assert admin_prohibited(build.udp(C4, "255.255.255.255", 1, 67)) is None
    assert admin_prohibited(build.udp("0.0.0.0", R4, 68, 67)) is None
    assert admin_prohibited(build.udp(C6, "ff02::fb", 1, 5353)) is None
    assert admin_prohibited(build.udp("::", R6, 1, 2)) is None
    frag6 = build.ip_packet(
        C6,
        R6,
        PROTO_TCP,
        b"\x00" * 20,
        ext_headers=struct.pack("!BxHI", 6, 8, 1),
        first_next_header=44,
    )
    assert admin_prohibited(frag6) is None


def test_it_returns_none_for_garbage() -> None:
    assert admin_prohibited(b"") is None
    assert admin_prohibited(b"\x45" + b"\x00" * 10) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    reply = admin_prohibited(data)
    if reply is not None:
        info = parse(reply)
        assert info is not None and info.is_icmp_error


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 59), st.integers(0, 255)), max_size=5))
def test_mutated_packets_get_valid_replies_or_none(flips: list[tuple[int, int]]) -> None:
    data = bytearray(build.tcp(C4, R4, 1, 22, b"x" * 20))
    for pos, value in flips:
        data[pos] = value
    reply = admin_prohibited(bytes(data))
    if reply is not None and reply[0] == 0x45:
        assert naive_checksum(reply[:20]) == 0
        assert naive_checksum(reply[20:]) == 0
