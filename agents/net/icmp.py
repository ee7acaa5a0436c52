"""ICMP "destination unreachable -- administratively prohibited" replies.

The gateway answers a packet its filter rejects with this error so the client's application fails
fast instead of timing out. The reply looks as if it came from the unreachable destination: its
source is the offending packet's destination and its destination the offending packet's source.

No reply is built (None) where RFC 1122/1812 (IPv4) and RFC 4443 section 2.4 (IPv6) forbid an
ICMP error: in answer to an ICMP error, to a non-first fragment, to a packet sent to a multicast
or broadcast address, or from an address that does not identify a single host (unspecified,
multicast, limited broadcast, loopback). Unparseable input also yields None: this function never
raises for bytes input.
"""

from __future__ import annotations

import struct

from agents.net.packet import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    internet_checksum,
    parse,
    transport_checksum,
)

ICMPV4_DEST_UNREACHABLE = 3
ICMPV4_ADMIN_PROHIBITED = 13
ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_ADMIN_PROHIBITED = 1

IPV6_MIN_MTU = 1280
REPLY_TTL = 64

_V4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_V6_HEADER = struct.Struct("!IHBB16s16s")
_ICMP_HEADER = struct.Struct("!BBHI")


def _v4_source_ok(addr: int) -> bool:
    top = addr >> 24
    # 0/8 (this network), 127/8 (loopback), 224/4 multicast, 240/4 reserved incl. broadcast.
    return top != 0 and top != 127 and top < 224


def _v6_source_ok(addr: int) -> bool:
    # Not unspecified, not loopback, not multicast (ff00::/8).
    return addr > 1 and (addr >> 120) != 0xFF


def admin_prohibited(packet: bytes | bytearray | memoryview) -> bytes | None:
    """The ICMP/ICMPv6 "administratively prohibited" reply to `packet`, or None if none may be
    sent (see module docstring)."""
    info = parse(packet)
    if info is None or info.fragment or info.is_icmp_error:
        return None
    if info.version == 4:
        if not (_v4_source_ok(info.src) and _v4_source_ok(info.dst)):
            return None
        return _reply_v4(packet, info.l4_offset, info.length)
    if not _v6_source_ok(info.src) or (info.dst >> 120) == 0xFF or info.dst <= 1:
        return None
    return _reply_v6(packet, info.length)


def _reply_v4(packet: bytes | bytearray | memoryview, ihl: int, length: int) -> bytes:
    # RFC 792: the original IP header plus the first 8 bytes of its payload.
    quoted = bytes(packet[: min(length, ihl + 8)])
    icmp = bytearray(_ICMP_HEADER.pack(ICMPV4_DEST_UNREACHABLE, ICMPV4_ADMIN_PROHIBITED, 0, 0))
    icmp += quoted
    struct.pack_into("!H", icmp, 2, internet_checksum(icmp))
    total = 20 + len(icmp)
    src = bytes(packet[16:20])
    dst = bytes(packet[12:16])
    header = bytearray(_V4_HEADER.pack(0x45, 0, total, 0, 0, REPLY_TTL, PROTO_ICMP, 0, src, dst))
    struct.pack_into("!H", header, 10, internet_checksum(header))
    return bytes(header + icmp)


def _reply_v6(packet: bytes | bytearray | memoryview, length: int) -> bytes:
    # RFC 4443: as much of the invoking packet as fits without exceeding the minimum IPv6 MTU.
    quoted = bytes(packet[: min(length, IPV6_MIN_MTU - 40 - 8)])
    src = bytes(packet[24:40])
    dst = bytes(packet[8:24])
    icmp = bytearray(_ICMP_HEADER.pack(ICMPV6_DEST_UNREACHABLE, ICMPV6_ADMIN_PROHIBITED, 0, 0))
    icmp += quoted
    struct.pack_into("!H", icmp, 2, transport_checksum(src, dst, PROTO_ICMPV6, icmp))
    header = _V6_HEADER.pack(6 << 28, len(icmp), PROTO_ICMPV6, REPLY_TTL, src, dst)
    return header + bytes(icmp)
