"""virtio-net headers for a TUN device opened with IFF_VNET_HDR: TSO segmentation, TCP coalescing.

With ``TUNSETOFFLOAD(TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6)`` the kernel hands the TUN reader TCP
"super-packets" (one IP/TCP header, up to ~64 KB of payload) and leaves checksums to us
(``NEEDS_CSUM``). WireGuard encrypts whole IP packets, so before encryption each super-packet is
cut into MSS-sized segments with their own IP total length / ID / checksum, TCP sequence number,
flags and TCP checksum (``segment``). In the other direction, consecutive decrypted segments of
one TCP flow are glued back into a super-packet (``Coalescer``) and written with a GSO header, so
the kernel pays one ``write`` and one trip through its stack per batch instead of per segment.

Checksums use the identity 2**16 == 1 (mod 0xFFFF): the ones' complement sum of the 16-bit words
of a byte string equals its big-endian integer value modulo 0xFFFF (with 0 read as 0xFFFF), which
CPython computes in C. Only IPv4 and IPv6 without extension headers are segmented or coalesced;
anything else passes through unchanged.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

VNET_HDR_LEN = 10
F_NEEDS_CSUM = 1
GSO_NONE = 0
GSO_TCPV4 = 1
GSO_TCPV6 = 4
GSO_ECN = 0x80

_HDR = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
NO_OFFLOAD_HDR = bytes(VNET_HDR_LEN)
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_LEN_ID = struct.Struct("!HH")

TCP_FIN = 0x01
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_CWR = 0x80
_PROTO_TCP = 6
_PROTO_UDP = 17


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """Ones' complement sum (not inverted, 0..0xFFFF) of ``data`` plus ``initial``."""
    if len(data) & 1:
        data = bytes(data) + b"\x00"
    v = int.from_bytes(data, "big") + initial
    if v == 0:
        return 0
    r = v % 0xFFFF
    return r or 0xFFFF


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    return ~ones_sum(data, initial) & 0xFFFF


def _pseudo_v4(pkt: bytes | bytearray | memoryview, proto: int, length: int) -> int:
    return int.from_bytes(pkt[12:20], "big") + proto + length


def _pseudo_v6(pkt: bytes | bytearray | memoryview, proto: int, length: int) -> int:
    return int.from_bytes(pkt[8:40], "big") + proto + length


def ipv4_header_checksum(hdr: bytearray) -> None:
    hdr[10:12] = b"\x00\x00"
    hdr[10:12] = _U16.pack(checksum(hdr))


def finish_checksum(pkt: bytearray, csum_start: int, csum_offset: int) -> None:
    """Complete a NEEDS_CSUM packet: the field holds the pseudo-header sum, fold the rest in."""
    pos = csum_start + csum_offset
    partial = int.from_bytes(pkt[pos : pos + 2], "big")
    pkt[pos : pos + 2] = b"\x00\x00"
    value = checksum(memoryview(pkt)[csum_start:], partial)
    if value == 0 and csum_offset == 6:  # UDP: zero means "no checksum", send all ones instead
        value = 0xFFFF
    pkt[pos : pos + 2] = _U16.pack(value)


def parse_header(buf: bytes | bytearray | memoryview) -> tuple[int, int, int, int, int, int]:
    return _HDR.unpack_from(buf)


def segment(frame: bytes | bytearray | memoryview) -> list[bytes]:
    """Turn one TUN read (virtio header + packet) into wire-ready IP packets."""
    flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = _HDR.unpack_from(frame)
    pkt = memoryview(frame)[VNET_HDR_LEN:]
    kind = gso_type & ~GSO_ECN
    if kind == GSO_NONE:
        if flags & F_NEEDS_CSUM:
            full = bytearray(pkt)
            finish_checksum(full, csum_start, csum_offset)
            return [bytes(full)]
        return [bytes(pkt)]
    if kind not in (GSO_TCPV4, GSO_TCPV6) or gso_size == 0:
        return []  # UFO/USO are never enabled; drop what we did not ask for
    v4 = kind == GSO_TCPV4
    ip_len = (pkt[0] & 0x0F) * 4 if v4 else 40
    tcp_len = (pkt[ip_len + 12] >> 4) * 4
    hdr_len = ip_len + tcp_len
    # Checksums are computed incrementally: the sums of the header words that are the same for
    # every segment are taken once (with the per-segment fields zeroed), then each segment adds
    # its own length / IP ID / sequence number / flags and its payload's sum. The payload
    # starts at an even offset, so its sum simply adds in.
    header = bytearray(pkt[:hdr_len])
    seq = _U32.unpack_from(header, ip_len + 4)[0]
    tcp_flags = header[ip_len + 13]
    header[ip_len + 4 : ip_len + 8] = b"\x00\x00\x00\x00"
    header[ip_len + 12 : ip_len + 14] = bytes((header[ip_len + 12], 0))
    header[ip_len + 16 : ip_len + 18] = b"\x00\x00"
    # (the data offset stays in the header sum; each segment adds its flags byte)
    tcp_base = int.from_bytes(header[ip_len:], "big") % 0xFFFF + _PROTO_TCP
    if v4:
        ip_id = _U16.unpack_from(header, 4)[0]
        header[2:6] = b"\x00\x00\x00\x00"
        header[10:12] = b"\x00\x00"
        ip_base = int.from_bytes(header[:ip_len], "big") % 0xFFFF
        tcp_base += int.from_bytes(header[12:20], "big") % 0xFFFF
    else:
        ip_id = ip_base = 0
        tcp_base += int.from_bytes(header[8:40], "big") % 0xFFFF
    payload = pkt[hdr_len:]
    total = len(payload)
    # Payload sums are reduced by two folds at multiples of 16 bits (2**16 == 1 mod 0xFFFF, so
    # the value mod 0xFFFF and its being zero are kept) before the final `%`: a long division
    # by 0xFFFF costs ~4 ns per 30-bit digit, a shift and a mask far less.
    k1 = (gso_size * 4) & ~15
    k2 = (k1 >> 1) & ~15
    m1 = (1 << k1) - 1
    m2 = (1 << k2) - 1
    out: list[bytes] = []
    join = b"".join
    off = 0
    i = 0
    while off < total:
        chunk = payload[off : off + gso_size]
        n = len(chunk)
        last = off + n >= total
        seg = bytearray(header)
        if v4:
            ident = (ip_id + i) & 0xFFFF
            _LEN_ID.pack_into(seg, 2, hdr_len + n, ident)
            _U16.pack_into(seg, 10, ~_fold(ip_base + hdr_len + n + ident) & 0xFFFF)
        else:
            _U16.pack_into(seg, 4, tcp_len + n)
        f = tcp_flags
        if not last:
            f &= ~(TCP_FIN | TCP_PSH)
        if i:
            f &= ~TCP_CWR
        s = (seq + off) & 0xFFFFFFFF
        seg[ip_len + 13] = f
        _U32.pack_into(seg, ip_len + 4, s)
        body = (
            int.from_bytes(chunk, "big")
            if not n & 1
            else int.from_bytes(bytes(chunk) + b"\x00", "big")
        )
        body = (body >> k1) + (body & m1)
        body = (body >> k2) + (body & m2)
        csum = tcp_base + tcp_len + n + (s >> 16) + (s & 0xFFFF) + f + body
        _U16.pack_into(seg, ip_len + 16, ~_fold(csum) & 0xFFFF)
        out.append(join((seg, chunk)))
        off += n
        i += 1
    return out


class Coalescer:
    """Glue consecutive in-order TCP segments of one flow into GSO super-packets for TUN writes.

    ``add`` returns frames (virtio header + packet) that are ready to write whenever the current
    run cannot be extended; ``flush`` returns what is left at the end of a batch. A run only grows
    with segments of the same flow whose sequence number continues it, whose headers match
    (apart from length/ID/checksum/sequence), that carry only ACK (PSH allowed on the last one)
    and whose payload equals the run's MSS (a shorter one closes the run).
    """

    __slots__ = ("_b6", "_base", "_count", "_fast", "_hdr_len", "_ip_len", "_k_ack", "_k_opts",
                 "_k_ports", "_k_win", "_key", "_mss", "_next_seq", "_parts", "_psh", "_size",
                 "_tos", "_ttl", "_v4", "max_bytes")  # fmt: skip

    def __init__(self, max_bytes: int = 65000) -> None:
        self.max_bytes = max_bytes
        self._parts: list[bytes | memoryview] = []
        self._key: bytes | None = None
        self._mss = 0
        self._next_seq = 0
        self._count = 0
        self._ip_len = 0
        self._base = b""
        self._v4 = True
        self._size = 0
        self._psh = False
        self._fast = False
        self._hdr_len = 0
        self._b6 = self._tos = self._ttl = 0
        self._k_ports = self._k_ack = self._k_win = self._k_opts = b""

    def add(self, packet: bytes) -> list[bytes]:
        out: list[bytes] = []
        self.add_into(packet, out)
        return out

    def add_into(self, packet: bytes, out: list[bytes]) -> None:
        """``add`` appending to the caller's list (no list per packet on the hot path)."""
        if self._parts and self._fast:
            # An IPv4 run is open: compare the header in place (startswith slices nothing).
            hdr_len = self._hdr_len
            if (
                len(packet) > hdr_len
                and packet[0] == 0x45
                and packet[6] == self._b6
                and packet[7] == 0
                and packet[1] == self._tos
                and packet[8] == self._ttl
                and packet[9] == _PROTO_TCP
                and packet.startswith(self._k_ports, 12)
                and packet.startswith(self._k_ack, 28)
                and packet.startswith(self._k_win, 34)
                and packet.startswith(self._k_opts, 38)
            ):
                flags = packet[33]
                payload_len = len(packet) - hdr_len
                if (
                    _U32.unpack_from(packet, 24)[0] == self._next_seq
                    and flags & ~TCP_PSH == TCP_ACK
                    and payload_len <= self._mss
                    and self._size + payload_len <= self.max_bytes
                ):
                    self._extend(packet, hdr_len, payload_len, flags, out)
                    return
            out.append(self._emit())
        info = _tcp_info(packet)
        if info is None:
            self._passthrough(packet, out)
            return
        key, ip_len, hdr_len, seq, flags, v4 = info
        payload_len = len(packet) - hdr_len
        if self._parts:  # an IPv6 run (IPv4 runs were handled above)
            if (
                key == self._key
                and seq == self._next_seq
                and payload_len <= self._mss
                and flags & ~TCP_PSH == TCP_ACK
                and self._size + payload_len <= self.max_bytes
            ):
                self._extend(packet, hdr_len, payload_len, flags, out)
                return
            out.append(self._emit())
        if payload_len == 0 or flags & ~(TCP_PSH | TCP_ACK):
            out.append(NO_OFFLOAD_HDR + packet)  # pure ACKs, SYN/FIN/RST pass through alone
            return
        self._key = key
        self._base = packet
        self._parts = [packet]
        self._count = 1
        self._size = len(packet)
        self._mss = payload_len
        self._ip_len = ip_len
        self._hdr_len = hdr_len
        self._v4 = v4
        self._psh = False
        self._next_seq = (seq + payload_len) & 0xFFFFFFFF
        self._fast = v4 and ip_len == 20
        if self._fast:
            self._b6, self._tos, self._ttl = packet[6], packet[1], packet[8]
            self._k_ports = packet[12:24]  # addresses and ports
            self._k_ack = packet[28:33]  # ack number and data offset
            self._k_win = packet[34:36]
            self._k_opts = packet[38:hdr_len]  # urgent pointer and options
        if flags & TCP_PSH:
            out.append(self._emit())

    def add_many(self, packets: Sequence[bytes], out: list[bytes]) -> None:
        """``add_into`` for each packet in order (same frames, same state afterwards).

        A receive batch is mostly segments that extend the open IPv4 run; those are matched
        here against the run's header in local variables, without a method call per packet.
        Everything else (the segment that closes a run, other flows, IPv6) goes to
        ``add_into``."""
        add_into = self.add_into
        unpack_u32 = _U32.unpack_from
        n = len(packets)
        i = 0
        while i < n:
            if not (self._parts and self._fast):
                add_into(packets[i], out)
                i += 1
                continue
            hdr_len = self._hdr_len
            b6, tos, ttl = self._b6, self._tos, self._ttl
            k_ports, k_ack, k_win, k_opts = self._k_ports, self._k_ack, self._k_win, self._k_opts
            mss = self._mss
            room = self.max_bytes - self._size  # payload bytes the run can still take
            next_seq = self._next_seq
            append = self._parts.append
            start = i
            taken = 0
            while i < n:
                packet = packets[i]
                payload_len = len(packet) - hdr_len
                if not (
                    payload_len == mss  # shorter: closes the run (add_into does it)
                    and payload_len <= room
                    and packet[0] == 0x45
                    and packet[6] == b6
                    and packet[7] == 0
                    and packet[1] == tos
                    and packet[8] == ttl
                    and packet[9] == _PROTO_TCP
                    and packet[33] == TCP_ACK  # PSH closes the run (add_into does it)
                    and packet.startswith(k_ports, 12)
                    and packet.startswith(k_ack, 28)
                    and packet.startswith(k_win, 34)
                    and packet.startswith(k_opts, 38)
                    and unpack_u32(packet, 24)[0] == next_seq
                ):
                    break
                append(memoryview(packet)[hdr_len:])
                room -= payload_len
                taken += payload_len
                next_seq = (next_seq + payload_len) & 0xFFFFFFFF
                i += 1
            self._count += i - start
            self._size += taken
            self._next_seq = next_seq
            if i < n:
                add_into(packets[i], out)
                i += 1

    def _extend(
        self, packet: bytes, hdr_len: int, payload_len: int, flags: int, out: list[bytes]
    ) -> None:
        self._parts.append(memoryview(packet)[hdr_len:])
        self._count += 1
        self._size += payload_len
        self._next_seq = (self._next_seq + payload_len) & 0xFFFFFFFF
        if payload_len < self._mss or flags & TCP_PSH:
            self._psh = bool(flags & TCP_PSH)
            out.append(self._emit())

    def _passthrough(self, packet: bytes, out: list[bytes]) -> None:
        if self._parts:
            out.append(self._emit())
        out.append(NO_OFFLOAD_HDR + packet)

    def flush(self) -> list[bytes]:
        return [self._emit()] if self._parts else []

    def _emit(self) -> bytes:
        parts = self._parts
        self._parts = []
        self._key = None
        if self._count == 1:
            return NO_OFFLOAD_HDR + bytes(parts[0])
        # Rewrite a copy of the first header only, then one join: one copy of the payload.
        first = parts[0]
        ip_len = self._ip_len
        tcp_len = (first[ip_len + 12] >> 4) * 4
        hdr_len = ip_len + tcp_len
        hdr = bytearray(first[:hdr_len])
        total = self._size
        if self._psh:
            hdr[ip_len + 13] |= TCP_PSH
        if self._v4:
            hdr[2:4] = _U16.pack(total)
            _v4_csum_long(hdr, ip_len)
            pseudo = _pseudo_v4(hdr, _PROTO_TCP, total - ip_len)
            gso = GSO_TCPV4
        else:
            hdr[4:6] = _U16.pack(total - 40)
            pseudo = _pseudo_v6(hdr, _PROTO_TCP, total - ip_len)
            gso = GSO_TCPV6
        # NEEDS_CSUM: the checksum field carries the folded pseudo-header sum, not inverted.
        hdr[ip_len + 16 : ip_len + 18] = _U16.pack(_fold(pseudo))
        parts[0] = memoryview(first)[hdr_len:]
        parts[0:0] = (_HDR.pack(F_NEEDS_CSUM, gso, hdr_len, self._mss, ip_len, 16), bytes(hdr))
        return b"".join(parts)


def _fold(v: int) -> int:
    if v == 0:
        return 0
    r = v % 0xFFFF
    return r or 0xFFFF


def _v4_csum_long(pkt: bytearray, ip_len: int) -> None:
    pkt[10:12] = b"\x00\x00"
    pkt[10:12] = _U16.pack(checksum(pkt[:ip_len]))


def _tcp_info(packet: bytes) -> tuple[bytes, int, int, int, int, bool] | None:
    """(match key, ip header len, ip+tcp header len, seq, tcp flags, is_v4) for plain TCP.

    The key holds every header byte that must be equal for two segments to be glued: addresses,
    ports, TOS/traffic class, TTL/hop limit, DF, ack number, data offset, window, urgent pointer
    and options (e.g. timestamps). It leaves out what differs per segment: length, IP ID, IP and
    TCP checksums, sequence number and flags (checked separately).
    """
    n = len(packet)
    if n < 40:
        return None
    b0 = packet[0]
    if b0 == 0x45:
        if packet[9] != _PROTO_TCP or packet[6] & 0x3F or packet[7]:  # fragments
            return None
        ip_len = 20
        v4 = True
        ip_part = packet[12:24] + packet[1:2] + packet[6:7] + packet[8:9]
    elif b0 >> 4 == 6:
        if n < 60 or packet[6] != _PROTO_TCP:
            return None
        ip_len = 40
        v4 = False
        ip_part = packet[8:44] + packet[:4] + packet[7:8]
    else:
        return None  # IPv4 with options: rare, not worth coalescing
    hdr_len = ip_len + (packet[ip_len + 12] >> 4) * 4
    if n < hdr_len or hdr_len < ip_len + 20:
        return None
    t = ip_len
    key = ip_part + packet[t + 8 : t + 13] + packet[t + 14 : t + 16] + packet[t + 18 : hdr_len]
    seq = (packet[t + 4] << 24) | (packet[t + 5] << 16) | (packet[t + 6] << 8) | packet[t + 7]
    return key, ip_len, hdr_len, seq, packet[t + 13], v4
