"""The compiled firewall against a slow, obvious model built on `ipaddress`, under random live
changes (allow / revoke / update_resource) and random packets."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.net import build
from agents.net.filter import (
    DROP_SPOOFED,
    FORWARD,
    REJECT,
    TUNNEL_IPV4,
    TUNNEL_IPV6,
    Filter,
    Firewall,
    PortRange,
    ResourceRule,
    Verdict,
)

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


@dataclass
class Model:
    auths: dict[int, tuple[str, float | None]]
    resources: dict[str, ResourceRule]

    def verdict(
        self,
        src: IPv4Address | IPv6Address,
        dst: IPv4Address | IPv6Address,
        proto: str,
        dport: int,
        icmp_type: int,
        now: float,
    ) -> Verdict:
        if src != ip_address(P4 if src.version == 4 else P6):
            return DROP_SPOOFED
        if dst in (TUNNEL_IPV4 if dst.version == 4 else TUNNEL_IPV6):
            return REJECT
        for rid, exp in self.auths.values():
            if exp is not None and now >= exp:
                continue
            rule = self.resources[rid]
            if rule.kind == "internet":
                if any(dst in n for n in NOT_INTERNET if n.version == dst.version):
                    continue
            elif not any(dst in n for n in rule.networks if n.version == dst.version):
                continue
            if not rule.filters or any(
                self.passes(f, proto, dport, icmp_type) for f in rule.filters
            ):
                return FORWARD
        return REJECT

    def routes_reply(
        self, src: IPv4Address | IPv6Address, proto: str, sport: int, icmp_type: int, now: float
    ) -> bool:
        """Would a reply from `src` to the peer be routed? (the reverse of `verdict`)"""
        if src in (TUNNEL_IPV4 if src.version == 4 else TUNNEL_IPV6):
            return False
        for rid, exp in self.auths.values():
            if exp is not None and now >= exp:
                continue
            rule = self.resources[rid]
            if rule.kind == "internet":
                if any(src in n for n in NOT_INTERNET if n.version == src.version):
                    continue
            elif not any(src in n for n in rule.networks if n.version == src.version):
                continue
            if not rule.filters:
                return True
            for f in rule.filters:
                if f.protocol == "icmp":
                    if proto == "icmp" and icmp_type in (0, 129):
                        return True
                elif f.protocol == proto and (
                    not f.ports or any(r.start <= sport <= r.end for r in f.ports)
                ):
                    return True
        return False

    @staticmethod
    def passes(f: Filter, proto: str, dport: int, icmp_type: int) -> bool:
        if f.protocol == "icmp":
            return proto == "icmp" and icmp_type in (8, 128)
        return f.protocol == proto and (
            not f.ports or any(r.start <= dport <= r.end for r in f.ports)
        )


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


@settings(max_examples=300, deadline=None)
@given(
    operations(),
    st.lists(
        st.tuples(
            st.sampled_from(DESTINATIONS),
            st.sampled_from(["tcp", "udp", "icmp", "icmp-reply"]),
            st.sampled_from(PORTS),
            st.booleans(),  # spoofed
        ),
        min_size=1,
        max_size=6,
    ),
    st.floats(0, 25),
)
def test_the_firewall_agrees_with_the_model(
    ops: list[tuple[object, ...]], packets: list[tuple[str, str, int, bool]], now: float
) -> None:
    fw, model = apply(ops)
    for dst_text, proto, port, spoofed in packets:
        dst = ip_address(dst_text)
        if dst.version == 4:
            src = ip_address("100.64.0.9" if spoofed else P4)
        else:
            src = ip_address("fd00:2021:1111::9" if spoofed else P6)
        if proto == "tcp":
            pkt = build.tcp(src, dst, 40000, port)
        elif proto == "udp":
            pkt = build.udp(src, dst, 40000, port)
        else:
            pkt = build.icmp_echo(src, dst, reply=proto == "icmp-reply")
        icmp_type = (
            (0 if dst.version == 4 else 129)
            if proto == "icmp-reply"
            else (8 if dst.version == 4 else 128)
        )
        expected = model.verdict(src, dst, proto.split("-")[0], port, icmp_type, now)
        assert fw.decide_outbound(PEER, pkt, now) is expected, (dst_text, proto, port)
        # The same flow backwards: a reply from the resource, read from TUN.
        if spoofed:
            continue
        if proto == "tcp":
            back = build.tcp(dst, src, port, 40000)
        elif proto == "udp":
            back = build.udp(dst, src, port, 40000)
        else:
            back = build.icmp_echo(dst, src, reply=proto != "icmp-reply")
        back_type = {0: 8, 8: 0, 128: 129, 129: 128}[icmp_type]
        routed = model.routes_reply(dst, proto.split("-")[0], port, back_type, now)
        assert fw.route_inbound(back, now) == (PEER if routed else None), (dst_text, proto, port)
