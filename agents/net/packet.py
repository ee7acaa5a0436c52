"""Fast, allocation-light parsing of IP packets as read from (or written to) a TUN device.

`parse(packet)` reads the fields the data plane decides on -- IP version, source and destination
addresses (as integers, so rule tables can compare with ``addr & mask == network`` without
building `ipaddress` objects per packet), the upper-layer protocol, its offset, and the ports (TCP,
UDP) or type/code (ICMP, ICMPv6).

Contract: `parse` never raises for any input of type bytes/bytearray/memoryview; it returns None for
anything malformed, truncated or deliberately unsupported:
- an IPv4 header shorter than 20 bytes, a total length beyond the buffer, a first fragment too short
  to hold the transport header (tiny-fragment attacks, RFC 1858) or a TCP fragment at offset 1;
- an IPv6 payload length beyond the buffer (jumbograms included), a chain of more than 8
  extension headers, or a routing header with segments left (the destination field would not be
  the final destination, so a filter deciding on it could be bypassed).
Trailing bytes after the IP total length are tolerated (and reported via `length`).

Non-first fragments carry no transport header: they come back with ``fragment=True`` and ports 0.
Other protocols (GRE, ESP, ...) come back with their number and ports 0.

The checksum helpers compute the Internet checksum (RFC 1071) with one big-integer reduction, which
is much faster in CPython than summing 16-bit words in a loop: since 2**16 == 1 (mod 0xFFFF), a
buffer read as one big-endian integer is congruent to the sum of its 16-bit words.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

# IPv6 extension headers that share the generic "next header, length in 8-octet units" layout.
_EXT_HOP_BY_HOP = 0
_EXT_ROUTING = 43
_EXT_FRAGMENT = 44
_EXT_AH = 51
_EXT_DEST_OPTS = 60
_EXT_GENERIC = frozenset({_EXT_HOP_BY_HOP, _EXT_ROUTING, _EXT_DEST_OPTS, 135, 139, 140})
_MAX_EXT_HEADERS = 8

# Minimum transport header sizes we insist on when the header is present.
_MIN_L4 = {PROTO_TCP: 20, PROTO_UDP: 8, PROTO_ICMP: 8, PROTO_ICMPV6: 8}

# ICMP messages that report an error about another packet (which they quote).
ICMPV4_ERROR_TYPES = frozenset({3, 4, 5, 11, 12})
ICMPV4_ECHO_REQUEST = 8
ICMPV4_ECHO_REPLY = 0
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

_V4 = struct.Struct("!BxHxxHxBxxII")  # ver/ihl, total length, flags/frag, protocol, src, dst
_V6 = struct.Struct("!4xHBxQQQQ")  # payload length, next header, src (hi, lo), dst (hi, lo)
_V4_FAST = struct.Struct("!BxHxxHxBxxIIHH")  # as _V4, then 4 bytes of the transport header
_PORTS = struct.Struct("!HH")
_BB = struct.Struct("!BB")
_EXT_FRAG = struct.Struct("!BxH")  # next header, offset (13 bits) | res | M

_tuple_new = tuple.__new__


class PacketInfo(NamedTuple):
    """What `parse` found. `src`/`dst` are addresses as integers (32 or 128 bits)."""

    version: int  # 4 or 6
    src: int
    dst: int
    protocol: int  # the upper-layer protocol (after any IPv6 extension headers)
    l4_offset: int  # where the upper-layer header starts (IP header + extension headers)
    src_port: int  # TCP/UDP source port; ICMP/ICMPv6 type; 0 otherwise
    dst_port: int  # TCP/UDP destination port; ICMP/ICMPv6 code; 0 otherwise
    fragment: bool  # a non-first fragment: no transport header, ports are 0
    length: int  # the IP packet's own length (may be shorter than the buffer)

    @property
    def icmp_type(self) -> int:
        return self.src_port

    @property
    def icmp_code(self) -> int:
        return self.dst_port

    @property
    def is_icmp_error(self) -> bool:
        """True for an ICMP/ICMPv6 error message (these must never be answered with an error)."""
        if self.fragment:
            return False
        if self.protocol == PROTO_ICMP:
            return self.src_port in ICMPV4_ERROR_TYPES
        if self.protocol == PROTO_ICMPV6:
            return self.src_port < 128
        return False


def parse(packet: bytes | bytearray | memoryview) -> PacketInfo | None:
    """Parse an IPv4 or IPv6 packet; None if malformed or unsupported (see module docstring)."""
    n = len(packet)
    if n < 20:
        return None
    first = packet[0]
    if first == 0x45 and n >= 28:
        # Fast path for the common case: IPv4 without options, unfragmented TCP/UDP/ICMP; one
        # unpack reads the header and the first 4 transport bytes. Anything else falls through.
        _vi, total, frag, proto, src, dst, a, b = _V4_FAST.unpack_from(packet, 0)
        if 28 <= total <= n and not frag & 0x3FFF:
            if proto == PROTO_TCP:
                if total >= 40:
                    return _tuple_new(PacketInfo, (4, src, dst, 6, 20, a, b, False, total))
            elif proto == PROTO_UDP:
                return _tuple_new(PacketInfo, (4, src, dst, 17, 20, a, b, False, total))
            elif proto == PROTO_ICMP:
                return _tuple_new(PacketInfo, (4, src, dst, 1, 20, a >> 8, a & 0xFF, False, total))
    version = first >> 4
    if version == 4:
        return _parse_v4(packet, n, first)
    if version == 6:
        return _parse_v6(packet, n)
    return None


def _parse_v4(packet: bytes | bytearray | memoryview, n: int, first: int) -> PacketInfo | None:
    ihl = (first & 0x0F) << 2
    _vi, total, frag, proto, src, dst = _V4.unpack_from(packet, 0)
    if ihl < 20 or total < ihl or total > n:
        return None
    offset = frag & 0x1FFF
    if offset:
        if offset == 1 and proto == PROTO_TCP:
            return None  # RFC 1858: would overwrite the TCP flags of the first fragment
        return _tuple_new(PacketInfo, (4, src, dst, proto, ihl, 0, 0, True, total))
    need = _MIN_L4.get(proto)
    if need is None:
        return _tuple_new(PacketInfo, (4, src, dst, proto, ihl, 0, 0, False, total))
    if total - ihl < need:
        return None
    if proto == PROTO_ICMP:
        a, b = _BB.unpack_from(packet, ihl)
    elif proto == PROTO_ICMPV6:
        return None  # ICMPv6 inside IPv4 makes no sense
    else:
        a, b = _PORTS.unpack_from(packet, ihl)
    return _tuple_new(PacketInfo, (4, src, dst, proto, ihl, a, b, False, total))


def _parse_v6(packet: bytes | bytearray | memoryview, n: int) -> PacketInfo | None:
    if n < 40:
        return None
    plen, nh, sh, sl, dh, dl = _V6.unpack_from(packet, 0)
    total = 40 + plen
    if total > n:
        return None
    src = (sh << 64) | sl
    dst = (dh << 64) | dl
    off = 40
    fragment = False
    hops = 0
    while True:
        if nh in _MIN_L4:
            break
        if nh in _EXT_GENERIC:
            if off + 8 > total:
                return None
            nxt, hlen = _BB.unpack_from(packet, off)
            if nh == _EXT_ROUTING and packet[off + 3] != 0:
                return None  # segments left: `dst` is not the final destination
            off += (hlen + 1) << 3
        elif nh == _EXT_FRAGMENT:
            if off + 8 > total:
                return None
            nxt, fo = _EXT_FRAG.unpack_from(packet, off)
            off += 8
            if fo >> 3:
                if hops >= _MAX_EXT_HEADERS:
                    return None  # this fragment header would be one too many
                fragment = True
                nh = nxt
                break
        elif nh == _EXT_AH:
            if off + 8 > total:
                return None
            nxt, hlen = _BB.unpack_from(packet, off)
            off += (hlen + 2) << 2
        else:
            # No next header (59), ESP (50) or an unknown protocol: nothing more to look into.
            return _tuple_new(PacketInfo, (6, src, dst, nh, off, 0, 0, False, total))
        if off > total:
            return None
        nh = nxt
        hops += 1
        if hops > _MAX_EXT_HEADERS:
            return None
    if fragment:
        return _tuple_new(PacketInfo, (6, src, dst, nh, off, 0, 0, True, total))
    need = _MIN_L4.get(nh)
    if need is None:
        return _tuple_new(PacketInfo, (6, src, dst, nh, off, 0, 0, False, total))
    if total - off < need:
        return None
    if nh == PROTO_ICMPV6:
        a, b = _BB.unpack_from(packet, off)
    elif nh == PROTO_ICMP:
        return None  # ICMPv4 inside IPv6 makes no sense
    else:
        a, b = _PORTS.unpack_from(packet, off)
    return _tuple_new(PacketInfo, (6, src, dst, nh, off, a, b, False, total))


# --- checksums ---------------------------------------------------------------------------------


def ones_complement_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The 16-bit one's complement sum of `data` (odd lengths padded with a zero byte), plus
    `initial` (another such sum, e.g. of a pseudo-header). Result in 0..0xFFFF."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    value = int.from_bytes(data, "big") + initial
    if value == 0:
        return 0
    folded = value % 0xFFFF
    return folded if folded else 0xFFFF


def internet_checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """RFC 1071 checksum of `data` (with the checksum field zeroed) as it goes on the wire."""
    return ~ones_complement_sum(data, initial) & 0xFFFF


def ipv4_header_checksum(header: bytes | bytearray | memoryview) -> int:
    """The checksum for an IPv4 header whose checksum field (bytes 10-11) is zero."""
    return internet_checksum(header)


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """One's complement sum of the IPv4 (4-byte addresses) or IPv6 (16-byte) pseudo-header, to
    pass as `initial` to `internet_checksum` for TCP, UDP and ICMPv6."""
    if len(src) == 4:
        pseudo = src + dst + struct.pack("!xBH", protocol, length)
    else:
        pseudo = src + dst + struct.pack("!I3xB", length, protocol)
    return ones_complement_sum(pseudo)


def transport_checksum(
    src: bytes, dst: bytes, protocol: int, segment: bytes | bytearray | memoryview
) -> int:
    """Checksum of a TCP/UDP/ICMPv6 segment (checksum field zeroed) including the pseudo-header.
    For UDP the caller must send 0xFFFF instead of a computed 0 (0 means "no checksum")."""
    return internet_checksum(segment, pseudo_header_sum(src, dst, protocol, len(segment)))


def checksum_ok(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """Whether a header/segment with its checksum field filled in verifies."""
    return ones_complement_sum(data, initial) == 0xFFFF
