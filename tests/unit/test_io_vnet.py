"""TSO segmentation and TCP coalescing for the offload IO mode (agents.io.vnet)."""

from __future__ import annotations

import struct

from agents.io import vnet


def ref_checksum(data: bytes) -> int:
    """Textbook RFC 1071 loop, independent of the big-integer trick under test."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_v4(payload: bytes, seq: int, flags: int = vnet.TCP_ACK, ident: int = 7) -> bytearray:
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 5201, seq, 99, 5 << 4, flags, 512, 0, 0))
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), ident, 0x4000, 64, 6,
                               0, bytes([100, 64, 0, 2]), bytes([10, 202, 0, 2])))  # fmt: skip
    ip[10:12] = struct.pack("!H", ref_checksum(bytes(ip)))
    seg = tcp + payload
    pseudo = bytes(ip[12:20]) + struct.pack("!BBH", 0, 6, len(seg))
    seg[16:18] = struct.pack("!H", ref_checksum(pseudo + bytes(seg)))
    return ip + seg


def tcp_ok(pkt: bytes) -> bool:
    ihl = (pkt[0] & 15) * 4
    seg = pkt[ihl:]
    pseudo = pkt[12:20] + struct.pack("!BBH", 0, 6, len(seg))
    return ref_checksum(pkt[:ihl]) == 0 and ref_checksum(pseudo + seg) == 0


def super_frame(payload: bytes, mss: int, seq: int, flags: int) -> bytes:
    pkt = tcp_v4(payload, seq, flags)
    # the kernel leaves the pseudo-header sum (not inverted) in the checksum field
    pseudo = int.from_bytes(pkt[12:20], "big") + 6 + len(pkt) - 20
    pkt[36:38] = struct.pack("!H", vnet._fold(pseudo))
    hdr = struct.pack("<BBHHHH", vnet.F_NEEDS_CSUM, vnet.GSO_TCPV4, 40, mss, 20, 16)
    return hdr + bytes(pkt)


def test_checksum_matches_rfc1071_reference() -> None:
    for data in (b"", b"\x01", b"\xff\xff", bytes(range(256)) * 5, b"\x00\x01\xf2\x03\xf4"):
        assert vnet.checksum(data) == ref_checksum(data)


def test_it_segments_a_tso_super_packet_per_mss_with_valid_headers() -> None:
    payload = bytes(range(256)) * 12  # 3072 bytes -> 1200 + 1200 + 672
    segs = vnet.segment(super_frame(payload, 1200, 1000, vnet.TCP_ACK | vnet.TCP_PSH))
    assert [len(s) - 40 for s in segs] == [1200, 1200, 672]
    assert all(tcp_ok(s) for s in segs)
    assert [struct.unpack_from("!I", s, 24)[0] for s in segs] == [1000, 2200, 3400]
    assert [s[33] & vnet.TCP_PSH for s in segs] == [0, 0, vnet.TCP_PSH]
    assert [struct.unpack_from("!H", s, 4)[0] for s in segs] == [7, 8, 9]
    assert b"".join(s[40:] for s in segs) == payload


def test_it_rejects_nothing_it_does_not_understand_silently() -> None:
    plain = bytes(tcp_v4(b"x" * 10, 5))
    assert vnet.segment(vnet.NO_OFFLOAD_HDR + plain) == [plain]
    udp_gso = struct.pack("<BBHHHH", 0, 3, 28, 1000, 0, 0) + plain
    assert vnet.segment(udp_gso) == []


def test_it_coalesces_in_order_segments_and_keeps_others_apart() -> None:
    payload = bytes(range(200)) * 18  # 3600 bytes
    segs = [bytes(tcp_v4(payload[i : i + 1200], 1 + i, ident=i)) for i in range(0, 3600, 1200)]
    co = vnet.Coalescer()
    out = [f for s in segs for f in co.add(s)] + co.flush()
    assert len(out) == 1
    flags, gso, hdr_len, gso_size, start, off = vnet.parse_header(out[0])
    assert (flags, gso, hdr_len, gso_size, start, off) == (1, vnet.GSO_TCPV4, 40, 1200, 20, 16)
    pkt = out[0][10:]
    assert pkt[40:] == payload and struct.unpack_from("!H", pkt, 2)[0] == 3640
    assert ref_checksum(pkt[:20]) == 0
    # the kernel finishes the checksum: emulate it and verify against the reference
    full = bytearray(pkt)
    vnet.finish_checksum(full, 20, 16)
    assert tcp_ok(bytes(full))
    # the resegmented super-packet gives back the original segments exactly (apart from IP ID)
    again = vnet.segment(out[0][:10] + pkt)
    assert [s[20:] for s in again] == [s[20:] for s in segs]


def test_it_does_not_coalesce_gaps_or_control_segments() -> None:
    a = bytes(tcp_v4(b"a" * 100, 1))
    gap = bytes(tcp_v4(b"b" * 100, 500))
    syn = bytes(tcp_v4(b"", 1, flags=0x02))
    co = vnet.Coalescer()
    out = [f for s in (a, gap, syn) for f in co.add(s)] + co.flush()
    assert [f[10:] for f in out] == [a, gap, syn]
    assert all(f[:10] == vnet.NO_OFFLOAD_HDR for f in out)


def test_it_keeps_segments_with_different_ack_or_flow_apart() -> None:
    first = tcp_v4(b"a" * 100, 1)
    other_ack = tcp_v4(b"b" * 100, 101)
    other_ack[28:32] = (12345).to_bytes(4, "big")
    other_port = tcp_v4(b"c" * 100, 201)
    other_port[20:22] = (40001).to_bytes(2, "big")
    co = vnet.Coalescer()
    pkts = [bytes(first), bytes(other_ack), bytes(other_port)]
    out = [f for p in pkts for f in co.add(p)] + co.flush()
    assert [f[10:] for f in out] == pkts
    # and the control: the same three with matching headers do merge into one frame
    same = [bytes(tcp_v4(bytes([i]) * 100, 1 + 100 * i)) for i in range(3)]
    merged = [f for p in same for f in co.add(p)] + co.flush()
    assert len(merged) == 1 and vnet.parse_header(merged[0])[1] == vnet.GSO_TCPV4


def test_it_segments_odd_sized_tails_with_valid_checksums() -> None:
    payload = bytes(range(256)) * 25 + b"z"  # 6401 bytes: the last segment has odd length
    segs = vnet.segment(super_frame(payload, 100, 1, vnet.TCP_ACK))
    assert len(segs) == 65 and len(segs[-1]) == 40 + 1
    assert all(tcp_ok(s) for s in segs)
    assert b"".join(s[40:] for s in segs) == payload


def tcp6_ok(pkt: bytes) -> bool:
    seg = pkt[40:]
    pseudo = pkt[8:40] + struct.pack("!I3xB", len(seg), 6)
    return ref_checksum(pseudo + seg) == 0


def test_it_segments_ipv6_super_packets() -> None:
    src = bytes.fromhex("fd002021111100000000000000000002")
    dst = bytes.fromhex("fd00aaaa000000000000000000000001")
    payload = bytes(range(251)) * 10  # 2510 bytes -> 1200 + 1200 + 110
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 77, 99, 5 << 4, vnet.TCP_ACK | vnet.TCP_PSH, 512,
                      0, 0)  # fmt: skip
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp) + len(payload), 6, 64, src, dst)
    pkt = bytearray(ip + tcp + payload)
    pseudo = int.from_bytes(src + dst, "big") + 6 + len(tcp) + len(payload)
    pkt[56:58] = struct.pack("!H", vnet._fold(pseudo))
    frame = struct.pack("<BBHHHH", vnet.F_NEEDS_CSUM, vnet.GSO_TCPV6, 60, 1200, 40, 16) + pkt
    segs = vnet.segment(frame)
    assert [len(s) - 60 for s in segs] == [1200, 1200, 110]
    assert all(tcp6_ok(s) for s in segs)
    assert [struct.unpack_from("!H", s, 4)[0] for s in segs] == [1220, 1220, 130]
    assert [struct.unpack_from("!I", s, 44)[0] for s in segs] == [77, 1277, 2477]
    assert [s[53] & vnet.TCP_PSH for s in segs] == [0, 0, vnet.TCP_PSH]
