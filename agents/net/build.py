"""Building IP packets with valid checksums: for tests, benchmarks and probes (not the hot path).

Addresses are given as strings or `ipaddress` objects; the IP version follows from them.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from agents.net.packet import (
    ICMPV4_ECHO_REQUEST,
    ICMPV6_ECHO_REQUEST,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    internet_checksum,
    transport_checksum,
)

Address = IPv4Address | IPv6Address | str

TCP_SYN = 0x02
TCP_ACK = 0x10


def _addrs(src: Address, dst: Address) -> tuple[bytes, bytes, int]:
    s = ip_address(src) if isinstance(src, str) else src
    d = ip_address(dst) if isinstance(dst, str) else dst
    if s.version != d.version:
        raise ValueError("source and destination must be the same IP version")
    return s.packed, d.packed, s.version


def ip_packet(
    src: Address,
    dst: Address,
    protocol: int,
    payload: bytes,
    *,
    ttl: int = 64,
    ident: int = 0,
    frag_offset: int = 0,
    more_fragments: bool = False,
    ext_headers: bytes = b"",
    first_next_header: int | None = None,
) -> bytes:
    """An IPv4 or IPv6 packet around `payload`. For IPv6, `ext_headers` (already chained, the
    last one's next-header set to `protocol`) go between the header and the payload, and
    `first_next_header` names the first of them."""
    s, d, version = _addrs(src, dst)
    if version == 4:
        flags = (0x2000 if more_fragments else 0) | (frag_offset & 0x1FFF)
        header = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags, ttl, protocol, 0, s, d
            )
        )
        struct.pack_into("!H", header, 10, internet_checksum(header))
        return bytes(header) + payload
    nh = protocol if first_next_header is None else first_next_header
    body = ext_headers + payload
    return struct.pack("!IHBB16s16s", 6 << 28, len(body), nh, ttl, s, d) + body


def tcp(
    src: Address,
    dst: Address,
    sport: int,
    dport: int,
    payload: bytes = b"",
    *,
    flags: int = TCP_SYN,
    seq: int = 0,
    ack: int = 0,
) -> bytes:
    s, d, _ = _addrs(src, dst)
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0))
    seg += payload
    struct.pack_into("!H", seg, 16, transport_checksum(s, d, PROTO_TCP, seg))
    return ip_packet(src, dst, PROTO_TCP, bytes(seg))


def udp(src: Address, dst: Address, sport: int, dport: int, payload: bytes = b"") -> bytes:
    s, d, _ = _addrs(src, dst)
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0))
    seg += payload
    csum = transport_checksum(s, d, PROTO_UDP, seg) or 0xFFFF
    struct.pack_into("!H", seg, 6, csum)
    return ip_packet(src, dst, PROTO_UDP, bytes(seg))


def icmp_echo(
    src: Address,
    dst: Address,
    ident: int = 1,
    seq: int = 1,
    payload: bytes = b"ping",
    *,
    reply: bool = False,
) -> bytes:
    """An ICMP (IPv4) or ICMPv6 (IPv6) echo request, or reply with `reply=True`."""
    s, d, version = _addrs(src, dst)
    if version == 4:
        kind = 0 if reply else ICMPV4_ECHO_REQUEST
        msg = bytearray(struct.pack("!BBHHH", kind, 0, 0, ident, seq)) + payload
        struct.pack_into("!H", msg, 2, internet_checksum(msg))
        return ip_packet(src, dst, PROTO_ICMP, bytes(msg))
    kind = 129 if reply else ICMPV6_ECHO_REQUEST
    msg = bytearray(struct.pack("!BBHHH", kind, 0, 0, ident, seq)) + payload
    struct.pack_into("!H", msg, 2, transport_checksum(s, d, PROTO_ICMPV6, msg))
    return ip_packet(src, dst, PROTO_ICMPV6, bytes(msg))


def icmp_error(src: Address, dst: Address, kind: int, code: int, quoted: bytes) -> bytes:
    """An ICMP/ICMPv6 error of type `kind` quoting `quoted` (e.g. time exceeded from a router)."""
    s, d, version = _addrs(src, dst)
    msg = bytearray(struct.pack("!BBHI", kind, code, 0, 0)) + quoted
    if version == 4:
        struct.pack_into("!H", msg, 2, internet_checksum(msg))
        return ip_packet(src, dst, PROTO_ICMP, bytes(msg))
    struct.pack_into("!H", msg, 2, transport_checksum(s, d, PROTO_ICMPV6, msg))
    return ip_packet(src, dst, PROTO_ICMPV6, bytes(msg))
