"""The compiled firewall against a slow, obvious model (tests/unit/net/reference.py: its own
parser and its own reading of the filter rules, on `ipaddress` objects) under random live changes
(allow / revoke / update_resource) and random packets: whole, first and non-first fragments of
both families, with each family's protocol numbers (ICMPv6 in IPv4 and ICMP in IPv6 included)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.net import build
from agents.net.filter import Filter, Firewall, PortRange, ResourceRule
from agents.net.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, parse
from tests.unit.net.reference import RefPeer, RefRule, ref_inbound, ref_outbound, ref_parse

PEER = b"P" * 32
P4, P6 = "100.64.0.2", "fd00:2021:1111::2"

NETWORKS = [
    "10.0.0.0/24",
    "10.0.0.0/16",
    "10.0.0.128/25",
    "192.168.1.1/32",
    "2001:db8::/64",
    "2001:db8::/32",
    "100.0.0.0/8",
    "fd00::/8",
]
DESTINATIONS = [
    "10.0.0.1",
    "10.0.0.200",
    "10.0.5.5",
    "192.168.1.1",
    "192.168.1.2",
    "8.8.8.8",
    "100.64.0.3",
    "100.100.0.1",
    "224.0.0.1",
    "2001:db8::1",
    "2001:db8:1::1",
    "2606:4700::1",
    "fd00:2021:1111::3",
    "fe80::1",
]
PORTS = [22, 53, 80, 443, 1000, 1500, 2000, 65535]
port_ranges = st.sampled_from(
    [PortRange(443, 443), PortRange(1000, 2000), PortRange(22, 22), PortRange(0, 65535)]
)
filters = st.one_of(
    st.builds(
        Filter, st.sampled_from(["tcp", "udp"]), st.lists(port_ranges, max_size=2).map(tuple)
    ),
    st.just(Filter("icmp")),
)


@st.composite
def rules(draw: st.DrawFn, rid: str) -> ResourceRule:
    if draw(st.integers(0, 5)) == 0:
        return ResourceRule(rid, "internet", (), tuple(draw(st.lists(filters, max_size=2))))
    nets = tuple(
        ip_network(n) for n in draw(st.lists(st.sampled_from(NETWORKS), min_size=1, max_size=2))
    )
    return ResourceRule(rid, "cidr", nets, tuple(draw(st.lists(filters, max_size=3))))


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[object, ...]]:
    ops: list[tuple[object, ...]] = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["allow", "allow", "revoke", "update"]))
        rid = draw(st.sampled_from(["r0", "r1", "r2"]))
        if kind == "allow":
            exp = draw(st.one_of(st.none(), st.floats(0, 20)))
            ops.append(("allow", draw(st.integers(0, 3)), draw(rules(rid)), exp))
        elif kind == "revoke":
            ops.append(("revoke", draw(st.integers(0, 3))))
        else:
            ops.append(("update", draw(rules(rid))))
    return ops


def to_ref(rule: ResourceRule) -> RefRule:
    return RefRule(
        rule.kind == "internet",
        rule.networks,
        tuple((f.protocol, tuple((r.start, r.end) for r in f.ports)) for f in rule.filters),
    )


@dataclass
class Model:
    """Authorizations as plain dicts; `peers()` hands them to the reference filter."""

    auths: dict[int, tuple[str, float | None]]
    resources: dict[str, ResourceRule]

    def peers(self) -> dict[bytes, RefPeer]:
        grants = [(to_ref(self.resources[rid]), exp) for rid, exp in self.auths.values()]
        return {PEER: RefPeer(IPv4Address(P4), IPv6Address(P6), grants)}


def apply(ops: list[tuple[object, ...]]) -> tuple[Firewall, Model]:
    fw = Firewall()
    fw.set_peer(PEER, P4, P6)
    model = Model({}, {})
    for op in ops:
        if op[0] == "allow":
            _, i, rule, exp = op
            assert isinstance(i, int) and isinstance(rule, ResourceRule)
            assert exp is None or isinstance(exp, float)
            fw.allow(PEER, f"auth{i}", rule, exp)
            model.auths[i] = (rule.resource_id, exp)
            model.resources[rule.resource_id] = rule
        elif op[0] == "revoke":
            i = op[1]
            assert isinstance(i, int)
            assert fw.revoke(PEER, f"auth{i}") == (model.auths.pop(i, None) is not None)
        else:
            rule = op[1]
            assert isinstance(rule, ResourceRule)
            held = any(rid == rule.resource_id for rid, _ in model.auths.values())
            assert (fw.update_resource(rule) > 0) == held
            if held:
                model.resources[rule.resource_id] = rule
    return fw, model


# Protocol numbers include each family's ICMP in the other family (issue 19: an IPv4 non-first
# fragment claiming ICMPv6 was forwarded by an icmp-only resource) and one without ports (GRE).
PROTOCOLS = [PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6, 47]
ICMP_TYPES = [0, 8, 128, 129, 3, 11, 1]
# How the packet is cut: whole, the first fragment (offset 0, more fragments), a non-first one.
SHAPES = ["whole", "first", "non-first"]


def transport_header(protocol: int, first: int, second: int) -> bytes:
    if protocol == PROTO_TCP:
        return struct.pack("!HHIIBBHHH", first, second, 0, 0, 5 << 4, 0x02, 65535, 0, 0)
    if protocol == PROTO_UDP:
        return struct.pack("!HHHH", first, second, 8, 0)
    if protocol in (PROTO_ICMP, PROTO_ICMPV6):
        return struct.pack("!BBHI", first, second, 0, 0)
    return b"\x00\x00\x08\x00"


def packet(
    src: IPv4Address | IPv6Address,
    dst: IPv4Address | IPv6Address,
    protocol: int,
    first: int,
    second: int,
    shape: str,
    frag_offset: int,
) -> bytes:
    body = transport_header(protocol, first, second) + b"payload!"
    if shape == "non-first":
        body = b"\xaa" * 16  # no transport header in a non-first fragment
    if src.version == 4:
        return build.ip_packet(
            src,
            dst,
            protocol,
            body,
            frag_offset=frag_offset if shape == "non-first" else 0,
            more_fragments=shape == "first",
        )
    if shape == "whole":
        return build.ip_packet(src, dst, protocol, body)
    offset = frag_offset if shape == "non-first" else 0
    frag = struct.pack("!BBHI", protocol, 0, (offset << 3) | (shape == "first"), 99)
    return build.ip_packet(src, dst, protocol, body, ext_headers=frag, first_next_header=44)


@settings(max_examples=400, deadline=None)
@given(
    operations(),
    st.lists(
        st.tuples(
            st.sampled_from(DESTINATIONS),
            st.sampled_from(PROTOCOLS),
            st.sampled_from(PORTS),
            st.sampled_from(ICMP_TYPES),
            st.sampled_from(SHAPES),
            st.sampled_from([1, 2, 185]),  # fragment offset (1 is refused for TCP)
            st.booleans(),  # spoofed
        ),
        min_size=1,
        max_size=6,
    ),
    st.floats(0, 25),
)
def test_the_firewall_agrees_with_the_model(
    ops: list[tuple[object, ...]],
    packets: list[tuple[str, int, int, int, str, int, bool]],
    now: float,
) -> None:
    fw, model = apply(ops)
    peers = model.peers()
    for dst_text, proto, port, icmp_type, shape, offset, spoofed in packets:
        dst = ip_address(dst_text)
        if dst.version == 4:
            src = ip_address("100.64.0.9" if spoofed else P4)
        else:
            src = ip_address("fd00:2021:1111::9" if spoofed else P6)
        icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
        first, second = (icmp_type, 0) if icmp else (40000, port)
        out = packet(src, dst, proto, first, second, shape, offset)
        expected = ref_outbound(peers, PEER, out, now)
        got = fw.decide_outbound(PEER, out, now)
        assert got.name == expected, (dst_text, proto, port, icmp_type, shape, offset)
        # The same flow backwards: a reply from the resource, read from TUN.
        first, second = (icmp_type, 0) if icmp else (port, 40000)
        back = packet(dst, src, proto, first, second, shape, offset)
        routed = ref_inbound(peers, back, now)
        assert fw.route_inbound(back, now) == routed, (dst_text, proto, port, icmp_type, shape)


def test_the_model_refuses_wrong_family_icmp_fragments() -> None:
    # The model itself must know the rule the fast code once got wrong (issue 19).
    rule = RefRule(False, (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64")), (("icmp", ()),))
    peers = {PEER: RefPeer(IPv4Address(P4), IPv6Address(P6), [(rule, None)])}
    for proto, forwarded in ((PROTO_ICMP, "FORWARD"), (PROTO_ICMPV6, "REJECT")):
        pkt = packet(ip_address(P4), ip_address("10.0.0.1"), proto, 0, 0, "non-first", 9)
        assert ref_outbound(peers, PEER, pkt, 0.0) == forwarded
    for proto, forwarded in ((PROTO_ICMPV6, "FORWARD"), (PROTO_ICMP, "REJECT")):
        pkt = packet(ip_address(P6), ip_address("2001:db8::1"), proto, 0, 0, "non-first", 9)
        assert ref_outbound(peers, PEER, pkt, 0.0) == forwarded


def test_the_reference_parser_agrees_with_the_fast_one_on_the_shapes_used() -> None:
    # Not the point of the model test, but a disagreement here would make it test the wrong thing.
    for dst_text in DESTINATIONS:
        dst = ip_address(dst_text)
        src = ip_address(P4 if dst.version == 4 else P6)
        for proto in PROTOCOLS:
            for shape in SHAPES:
                pkt = packet(src, dst, proto, 8, 0, shape, 185)
                ref = ref_parse(pkt)
                fast = parse(pkt)
                assert (ref is None) == (fast is None), (dst_text, proto, shape)
                if ref is not None and fast is not None:
                    assert (ref.protocol, ref.non_first_fragment) == (fast.protocol, fast.fragment)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(filters, min_size=1, max_size=2),
    st.sampled_from(["10.0.0.1", "2001:db8::1"]),
    st.sampled_from(PROTOCOLS),
    st.sampled_from(PORTS),
    st.sampled_from(ICMP_TYPES),
    st.sampled_from(SHAPES),
    st.sampled_from([1, 2, 185]),
)
def test_one_filtered_resource_agrees_with_the_model_on_every_packet_shape(
    filter_list: list[Filter],
    dst_text: str,
    proto: int,
    port: int,
    icmp_type: int,
    shape: str,
    offset: int,
) -> None:
    # A small space searched densely: one resource of both families, so every protocol number,
    # fragment shape and filter combination is tried against the model in each run.
    rule = ResourceRule(
        "r", "cidr", (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64")), tuple(filter_list)
    )
    fw, model = apply([("allow", 0, rule, None)])
    peers = model.peers()
    dst = ip_address(dst_text)
    src = ip_address(P4 if dst.version == 4 else P6)
    icmp = proto in (PROTO_ICMP, PROTO_ICMPV6)
    first, second = (icmp_type, 0) if icmp else (40000, port)
    out = packet(src, dst, proto, first, second, shape, offset)
    assert fw.decide_outbound(PEER, out, 1.0).name == ref_outbound(peers, PEER, out, 1.0)
    first, second = (icmp_type, 0) if icmp else (port, 40000)
    back = packet(dst, src, proto, first, second, shape, offset)
    assert fw.route_inbound(back, 1.0) == ref_inbound(peers, back, 1.0)
