"""Slow, obvious reference implementations to check the fast ones against."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network


def naive_checksum(data: bytes) -> int:
    """RFC 1071 word by word with an end-around carry per step."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# --- IP packet parsing and the packet filter, written from the RFCs and the filter's documented
# rules (agents/net/packet.py and agents/net/filter.py docstrings), without looking at how the
# fast code does it: slices, ipaddress objects and plain loops.

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
MIN_TRANSPORT = {TCP: 20, UDP: 8, ICMP: 8, ICMPV6: 8}
# Extension headers laid out as "next header, length in 8-octet units not counting the first 8".
GENERIC_EXTENSIONS = {0, 43, 60, 135, 139, 140}
FRAGMENT_HEADER, AUTH_HEADER, ROUTING_HEADER = 44, 51, 43


@dataclass(frozen=True)
class RefPacket:
    version: int
    src: IPv4Address | IPv6Address
    dst: IPv4Address | IPv6Address
    protocol: int
    non_first_fragment: bool
    first_word: int  # TCP/UDP source port, ICMP type (0 when there is no transport header)
    second_word: int  # TCP/UDP destination port, ICMP code
    transport: bytes  # the upper-layer bytes inside the IP packet's own length


def _u16(data: bytes, at: int) -> int:
    return data[at] * 256 + data[at + 1]


def ref_parse(data: bytes) -> RefPacket | None:
    """None for malformed or unsupported packets (the cases listed in agents/net/packet.py)."""
    if len(data) < 20:
        return None
    if data[0] >> 4 == 4:
        return _ref_parse_v4(data)
    if data[0] >> 4 == 6:
        return _ref_parse_v6(data)
    return None


def _transport(
    version: int,
    src: IPv4Address | IPv6Address,
    dst: IPv4Address | IPv6Address,
    protocol: int,
    body: bytes,
) -> RefPacket | None:
    """An unfragmented (or first-fragment) upper layer `body`."""
    if protocol not in MIN_TRANSPORT:
        return RefPacket(version, src, dst, protocol, False, 0, 0, body)
    if len(body) < MIN_TRANSPORT[protocol]:
        return None  # too short for its own header (RFC 1858 tiny fragments included)
    if (version == 4 and protocol == ICMPV6) or (version == 6 and protocol == ICMP):
        return None  # the other family's ICMP
    if protocol in (ICMP, ICMPV6):
        return RefPacket(version, src, dst, protocol, False, body[0], body[1], body)
    return RefPacket(version, src, dst, protocol, False, _u16(body, 0), _u16(body, 2), body)


def _ref_parse_v4(data: bytes) -> RefPacket | None:
    header_len = (data[0] % 16) * 4
    total_len = _u16(data, 2)
    if header_len < 20 or total_len < header_len or total_len > len(data):
        return None
    fragment_offset = _u16(data, 6) % 8192  # the low 13 bits, in 8-octet units
    protocol = data[9]
    src = IPv4Address(data[12:16])
    dst = IPv4Address(data[16:20])
    body = data[header_len:total_len]
    if fragment_offset > 0:
        if fragment_offset == 1 and protocol == TCP:
            return None  # RFC 1858: would overwrite the first fragment's TCP flags
        return RefPacket(4, src, dst, protocol, True, 0, 0, body)
    return _transport(4, src, dst, protocol, body)


def _ref_parse_v6(data: bytes) -> RefPacket | None:
    if len(data) < 40:
        return None
    total_len = 40 + _u16(data, 4)
    if total_len > len(data):
        return None
    src = IPv6Address(data[8:24])
    dst = IPv6Address(data[24:40])
    packet = data[:total_len]
    next_header = data[6]
    at = 40
    extensions = 0
    while next_header not in MIN_TRANSPORT:
        if next_header in GENERIC_EXTENSIONS or next_header in (FRAGMENT_HEADER, AUTH_HEADER):
            extensions += 1
            if extensions > 8:
                return None  # a longer chain is refused
            if at + 8 > total_len:
                return None
            following = packet[at]
            if next_header == FRAGMENT_HEADER:
                offset = _u16(packet, at + 2) // 8
                at += 8
                if offset > 0:
                    return RefPacket(6, src, dst, following, True, 0, 0, packet[at:])
            elif next_header == AUTH_HEADER:
                at += (packet[at + 1] + 2) * 4
            else:
                if next_header == ROUTING_HEADER and packet[at + 3] != 0:
                    return None  # segments left: dst is not the final destination
                at += (packet[at + 1] + 1) * 8
            if at > total_len:
                return None
            next_header = following
        else:
            # No next header, ESP or an unknown protocol: nothing more to look into.
            return RefPacket(6, src, dst, next_header, False, 0, 0, packet[at:])
    return _transport(6, src, dst, next_header, packet[at:])


NOT_INTERNET = [
    ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/96",
        "::ffff:0:0/96",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
TUNNEL_RANGES = [ip_network("100.64.0.0/11"), ip_network("fd00:2021:1111::/107")]
ICMPV4_ERRORS = {3, 4, 5, 11, 12}


def in_tunnel(addr: IPv4Address | IPv6Address) -> bool:
    return any(addr in n for n in TUNNEL_RANGES if n.version == addr.version)


@dataclass(frozen=True)
class RefRule:
    """A resource as the model sees it: networks (or internet) and filters as
    (protocol name, port ranges) pairs; an empty filter list allows everything."""

    internet: bool
    networks: tuple[IPv4Network | IPv6Network, ...]
    filters: tuple[tuple[str, tuple[tuple[int, int], ...]], ...]

    def contains(self, addr: IPv4Address | IPv6Address) -> bool:
        if self.internet:
            return not any(addr in n for n in NOT_INTERNET if n.version == addr.version)
        return any(addr in n for n in self.networks if n.version == addr.version)

    def allows(self, pkt: RefPacket, *, reply: bool) -> bool:
        """Whether the filters let `pkt` through: a request towards the resource, or with
        `reply` a reply from it (TCP/UDP source port, ICMP echo reply)."""
        if not self.filters:
            return True
        for name, ports in self.filters:
            if name == "icmp":
                wanted = ICMP if pkt.version == 4 else ICMPV6
                if pkt.protocol != wanted:
                    continue
                if pkt.non_first_fragment:
                    return True
                echo = {(4, False): 8, (4, True): 0, (6, False): 128, (6, True): 129}
                if pkt.first_word == echo[pkt.version, reply]:
                    return True
            else:
                wanted = TCP if name == "tcp" else UDP
                if pkt.protocol != wanted:
                    continue
                if pkt.non_first_fragment or not ports:
                    return True
                port = pkt.first_word if reply else pkt.second_word
                if any(lo <= port <= hi for lo, hi in ports):
                    return True
        return False


@dataclass
class RefPeer:
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None
    grants: list[tuple[RefRule, float | None]]  # (resource, expires_at or None)

    def address(self, version: int) -> IPv4Address | IPv6Address | None:
        return self.ipv4 if version == 4 else self.ipv6

    def live(self, now: float) -> list[RefRule]:
        return [rule for rule, exp in self.grants if exp is None or now < exp]


def ref_outbound(peers: dict[bytes, RefPeer], key: bytes, data: bytes, now: float) -> str:
    """The verdict name for a packet peer `key` sent into the tunnel."""
    pkt = ref_parse(data)
    if pkt is None:
        return "DROP_MALFORMED"
    peer = peers.get(key)
    if peer is None:
        return "DROP_UNKNOWN_PEER"
    if pkt.src != peer.address(pkt.version):
        return "DROP_SPOOFED"
    if in_tunnel(pkt.dst):
        return "REJECT"
    for rule in peer.live(now):
        if rule.contains(pkt.dst) and rule.allows(pkt, reply=False):
            return "FORWARD"
    return "REJECT"


def ref_inbound(peers: dict[bytes, RefPeer], data: bytes, now: float) -> bytes | None:
    """The peer a packet read from TUN goes to, or None."""
    pkt = ref_parse(data)
    if pkt is None:
        return None
    owner = [k for k, p in peers.items() if p.address(pkt.version) == pkt.dst]
    if not owner:
        return None
    key = owner[0]
    peer = peers[key]
    is_error = not pkt.non_first_fragment and (
        (pkt.version == 4 and pkt.protocol == ICMP and pkt.first_word in ICMPV4_ERRORS)
        or (pkt.version == 6 and pkt.protocol == ICMPV6 and pkt.first_word < 128)
    )
    if is_error:
        # An error about a packet the peer sent to something it may reach (the source of the
        # error may be any router, the gateway's own tunnel address included).
        quoted = pkt.transport[8:]
        if pkt.version == 4:
            if len(quoted) < 20 or quoted[0] >> 4 != 4:
                return None
            q_src: IPv4Address | IPv6Address = IPv4Address(quoted[12:16])
            q_dst: IPv4Address | IPv6Address = IPv4Address(quoted[16:20])
        else:
            if len(quoted) < 40 or quoted[0] >> 4 != 6:
                return None
            q_src = IPv6Address(quoted[8:24])
            q_dst = IPv6Address(quoted[24:40])
        if q_src != peer.address(pkt.version) or in_tunnel(q_dst):
            return None
        return key if any(rule.contains(q_dst) for rule in peer.live(now)) else None
    if in_tunnel(pkt.src):
        return None
    for rule in peer.live(now):
        if rule.contains(pkt.src) and rule.allows(pkt, reply=True):
            return key
    return None
