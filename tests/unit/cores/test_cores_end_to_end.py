"""ClientCore and GatewayCore wired together in memory with real WireGuard devices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import ip_address, ip_network

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.client.core import ClientCore, GatewayInfo
from agents.gateway.core import GatewayCore, Output, apply_static_config
from agents.net import build
from agents.net.filter import Filter, PortRange, ResourceRule
from agents.net.packet import parse
from agents.static_config import parse_gateway_config
from agents.wireguard import Device, Transmit, generate_private_key

GW_EP = ("192.0.2.1", 51820)
CL_EP = ("198.51.100.7", 40000)
C4, C6 = "100.64.0.2", "fd00:2021:1111::2"
OTHER_CLIENT = "100.64.0.3"
WEB, WEB6 = "10.0.0.5", "2001:db8::5"
NOW = 1000.0


def web_rule(filters: tuple[Filter, ...] | None = None) -> ResourceRule:
    if filters is None:
        filters = (Filter("tcp", (PortRange(443, 443),)), Filter("icmp"))
    return ResourceRule(
        "web", "cidr", (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64")), filters
    )


@dataclass
class Lab:
    gw_dev: Device
    cl_dev: Device
    gateway: GatewayCore
    client: ClientCore
    now: float = NOW
    gateway_tun: list[bytes] = field(default_factory=list)
    client_tun: list[bytes] = field(default_factory=list)

    def _pump(self, to_gateway: Sequence[Transmit], to_client: Sequence[Transmit]) -> None:
        # Deliver datagrams back and forth until both sides are quiet.
        for _ in range(20):
            if not to_gateway and not to_client:
                return
            next_gw: list[Transmit] = []
            next_cl: list[Transmit] = []
            for t in to_gateway:
                assert t.endpoint == GW_EP
                out = self.gateway.handle_network_input(t.data, CL_EP, self.now)
                self.gateway_tun.extend(out.tun)
                next_cl.extend(out.udp)
            for t in to_client:
                out = self.client.handle_network_input(t.data, GW_EP, self.now)
                self.client_tun.extend(out.tun)
                next_gw.extend(out.udp)
            to_gateway, to_client = next_gw, next_cl
        raise AssertionError("the cores kept talking")

    def from_client_tun(self, packet: bytes) -> Output:
        out = self.client.handle_tun_input(packet, self.now)
        assert out.tun == ()
        self._pump(out.udp, ())
        return out

    def from_gateway_tun(self, packet: bytes) -> Output:
        out = self.gateway.handle_tun_input(packet, self.now)
        self._pump((), out.udp)
        return out

    def client_device_sends(self, packet: bytes) -> None:
        """Bypass the client core (as a malicious client would)."""
        self._pump(self.cl_dev.encapsulate(self.gateway_key, packet, self.now), ())

    def gateway_device_sends(self, packet: bytes) -> None:
        """Bypass the gateway core (as a malicious gateway would)."""
        self._pump((), self.gw_dev.encapsulate(self.client_key, packet, self.now))

    def tick(self, seconds: float) -> None:
        self.now += seconds
        for core, to_gw in ((self.gateway, False), (self.client, True)):
            deadline = core.poll_timeout()
            if deadline is not None and deadline <= self.now:
                out = core.handle_timeout(self.now)
                self._pump(out.udp if to_gw else (), () if to_gw else out.udp)

    @property
    def gateway_key(self) -> bytes:
        return self.gw_dev.public_key

    @property
    def client_key(self) -> bytes:
        return self.cl_dev.public_key


def make_lab(psk: bytes | None = b"\x07" * 32) -> Lab:
    gw_dev = Device(generate_private_key())
    cl_dev = Device(generate_private_key())
    gateway = GatewayCore(gw_dev)
    gateway.add_peer(cl_dev.public_key, psk, C4, C6)
    gateway.allow(cl_dev.public_key, "auth-1", web_rule(), None)
    client = ClientCore(cl_dev, C4, C6)
    client.add_gateway(
        GatewayInfo(
            gw_dev.public_key,
            GW_EP,
            (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64"), ip_network("10.9.0.0/16")),
            preshared_key=psk,
        )
    )
    return Lab(gw_dev, cl_dev, gateway, client)


@pytest.fixture
def lab() -> Lab:
    return make_lab()


def test_ping_to_an_allowed_resource_reaches_the_gateway_tun_and_back(lab: Lab) -> None:
    ping = build.icmp_echo(C4, WEB, ident=7, seq=1)
    lab.from_client_tun(ping)
    assert lab.gateway_tun == [ping]
    assert lab.gateway.counters["forwarded_to_tun"] == 1
    reply = build.icmp_echo(WEB, C4, ident=7, seq=1, reply=True)
    out = lab.from_gateway_tun(reply)
    assert len(out.udp) == 1
    assert lab.client_tun == [reply]
    assert lab.client.counters["forwarded_to_tun"] == 1


def test_ipv6_traffic_flows_both_ways(lab: Lab) -> None:
    syn = build.tcp(C6, WEB6, 40000, 443)
    lab.from_client_tun(syn)
    assert lab.gateway_tun == [syn]
    synack = build.tcp(WEB6, C6, 443, 40000)
    lab.from_gateway_tun(synack)
    assert lab.client_tun == [synack]


def test_a_disallowed_port_gets_icmp_admin_prohibited_through_the_tunnel(lab: Lab) -> None:
    ssh = build.tcp(C4, WEB, 40000, 22)
    lab.from_client_tun(ssh)
    assert lab.gateway_tun == []
    assert len(lab.client_tun) == 1
    icmp = lab.client_tun[0]
    info = parse(icmp)
    assert info is not None and (info.icmp_type, info.icmp_code) == (3, 13)
    assert icmp[12:16] == ip_address(WEB).packed and icmp[16:20] == ip_address(C4).packed
    assert icmp[28:] == ssh[:28]
    assert lab.gateway.counters["rejected_icmp"] == 1


def test_a_disallowed_ipv6_port_gets_icmpv6_admin_prohibited(lab: Lab) -> None:
    lab.from_client_tun(build.udp(C6, WEB6, 1, 53))
    assert lab.gateway_tun == []
    (icmp,) = lab.client_tun
    info = parse(icmp)
    assert info is not None and info.version == 6 and (info.icmp_type, info.icmp_code) == (1, 1)


def test_the_gateway_drops_spoofed_sources_silently(lab: Lab) -> None:
    lab.tick(0)
    lab.from_client_tun(build.icmp_echo(C4, WEB))  # establishes the session
    lab.gateway_tun.clear()
    lab.client_device_sends(build.tcp(OTHER_CLIENT, WEB, 1, 443))
    lab.client_device_sends(build.tcp("10.0.0.77", WEB, 1, 443))
    assert lab.gateway_tun == []
    assert lab.client_tun == []  # no ICMP either
    assert lab.gateway.counters["dropped_spoofed"] == 2


def test_the_client_core_refuses_to_send_foreign_sources(lab: Lab) -> None:
    out = lab.client.handle_tun_input(build.tcp("100.64.0.9", WEB, 1, 443), lab.now)
    assert out == ((), ())
    assert lab.client.counters["dropped_bad_source"] == 1


def test_client_to_client_is_refused(lab: Lab) -> None:
    lab.from_client_tun(build.icmp_echo(C4, WEB))
    lab.client_device_sends(build.icmp_echo(C4, OTHER_CLIENT))
    assert lab.gateway_tun == [build.icmp_echo(C4, WEB)]
    assert lab.gateway.counters["rejected_icmp"] == 1
    # The rejection comes "from" the other client, which is no network of this gateway for the
    # client core: it does not reach the client's TUN either.
    assert lab.client_tun == []
    assert lab.client.counters["dropped_unexpected"] == 1


def test_unrouted_destinations_never_leave_the_client(lab: Lab) -> None:
    out = lab.client.handle_tun_input(build.tcp(C4, "172.16.0.1", 1, 443), lab.now)
    assert out.udp == () and out.tun == ()
    assert lab.client.counters["dropped_no_route"] == 1


def test_routed_but_unauthorized_destination_is_rejected_by_the_gateway(lab: Lab) -> None:
    lab.from_client_tun(build.tcp(C4, "10.9.0.1", 1, 443))  # routed by the client, not allowed
    assert lab.gateway_tun == []
    assert len(lab.client_tun) == 1 and parse(lab.client_tun[0]) is not None


def test_revoke_and_filter_updates_apply_to_the_next_packet(lab: Lab) -> None:
    https = build.tcp(C4, WEB, 40000, 443)
    lab.from_client_tun(https)
    assert lab.gateway_tun == [https]
    lab.gateway.update_resource(web_rule((Filter("tcp", (PortRange(8443, 8443),)),)))
    lab.from_client_tun(https)
    assert lab.gateway_tun == [https]  # not forwarded again
    assert len(lab.client_tun) == 1
    lab.gateway.update_resource(web_rule(()))
    lab.from_client_tun(https)
    assert lab.gateway_tun == [https, https]
    assert lab.gateway.revoke(lab.client_key, "auth-1")
    lab.from_client_tun(https)
    assert lab.gateway_tun == [https, https]
    assert len(lab.client_tun) == 2
    # Replies stop too.
    out = lab.gateway.handle_tun_input(build.tcp(WEB, C4, 443, 40000), lab.now)
    assert out.udp == ()
    assert lab.gateway.counters["dropped_no_route"] == 1


def test_authorization_expiry_is_a_timer(lab: Lab) -> None:
    lab.gateway.allow(lab.client_key, "auth-1", web_rule(), lab.now + 30)
    assert lab.gateway.poll_timeout() is not None
    assert lab.gateway.poll_timeout() <= lab.now + 30  # type: ignore[operator]
    ping = build.icmp_echo(C4, WEB)
    lab.from_client_tun(ping)
    assert lab.gateway_tun == [ping]
    lab.tick(31)
    assert lab.gateway.take_expired() == [(lab.client_key, "auth-1")]
    assert lab.gateway.take_expired() == []
    lab.from_client_tun(ping)
    assert lab.gateway_tun == [ping]


def test_the_client_only_accepts_what_its_gateway_may_send(lab: Lab) -> None:
    lab.from_client_tun(build.icmp_echo(C4, WEB))  # session up
    lab.gateway_device_sends(build.udp("172.16.0.1", C4, 53, 1))  # not a network of this gateway
    lab.gateway_device_sends(build.udp(WEB, "100.64.0.9", 53, 1))  # not addressed to us
    assert lab.client_tun == []
    assert lab.client.counters["dropped_unexpected"] == 2
    # An ICMP error from a router beyond the gateway about our packet is accepted.
    quoted = build.tcp(C4, WEB, 1, 443)[:28]
    ttl = build.icmp_error("203.0.113.1", C4, 11, 0, quoted)
    lab.gateway_device_sends(ttl)
    assert lab.client_tun == [ttl]


def test_gateway_kernel_errors_reach_the_client(lab: Lab) -> None:
    # The gateway's kernel answers a TTL-1 probe from its own tunnel address.
    probe = build.udp(C4, WEB, 33434, 33435)
    lab.from_client_tun(build.icmp_echo(C4, WEB))
    ttl = build.icmp_error("100.64.0.1", C4, 11, 0, probe[:28])
    out = lab.from_gateway_tun(ttl)
    assert len(out.udp) == 1
    assert lab.client_tun == [ttl]


def test_removed_peer_cannot_talk(lab: Lab) -> None:
    ping = build.icmp_echo(C4, WEB)
    lab.from_client_tun(ping)
    lab.gateway.remove_peer(lab.client_key)
    lab.from_client_tun(ping)
    assert lab.gateway_tun == [ping]
    assert lab.gateway.firewall.peer_by_address(C4) is None


def test_timers_keep_the_session_alive(lab: Lab) -> None:
    lab.from_client_tun(build.icmp_echo(C4, WEB))
    handshakes = lab.cl_dev.peer_last_handshake(lab.gateway_key)
    assert handshakes is not None
    for _ in range(20):  # 200 s: past REKEY_AFTER_TIME, the client rekeys on its own
        lab.tick(10)
        lab.from_client_tun(build.icmp_echo(C4, WEB))
    assert lab.cl_dev.peer_last_handshake(lab.gateway_key) != handshakes
    assert len(lab.gateway_tun) == 21


def test_static_config_drives_the_gateway() -> None:
    import base64

    gw_priv, cl_priv = generate_private_key(), generate_private_key()
    cl_dev = Device(cl_priv)
    text = f"""
[interface]
private_key = "{base64.b64encode(gw_priv).decode()}"
ipv4 = "100.64.0.1"
[[peers]]
public_key = "{base64.b64encode(cl_dev.public_key).decode()}"
ipv4 = "{C4}"
[[peers.resources]]
id = "web"
type = "ip"
address = "{WEB}"
filters = [{{ protocol = "udp", ports = ["53"] }}]
"""
    config = parse_gateway_config(text)
    gw_dev = Device(config.interface.private_key)
    gateway = GatewayCore(gw_dev)
    apply_static_config(gateway, config)
    client = ClientCore(cl_dev, C4)
    client.add_gateway(GatewayInfo(gw_dev.public_key, GW_EP, (ip_network(f"{WEB}/32"),)))
    lab = Lab(gw_dev, cl_dev, gateway, client)
    dns = build.udp(C4, WEB, 5000, 53, b"query")
    lab.from_client_tun(dns)
    assert lab.gateway_tun == [dns]
    lab.from_client_tun(build.udp(C4, WEB, 5000, 54))
    assert lab.gateway_tun == [dns]
    assert [a.authorization_id for a in gateway.firewall.authorizations(cl_dev.public_key)] == [
        "static:web"
    ]


# --- robustness ---------------------------------------------------------------------------------

FUZZ_LAB = make_lab()
FUZZ_LAB.from_client_tun(build.icmp_echo(C4, WEB))
SEEDS = [
    build.tcp(C4, WEB, 1, 443),
    build.icmp_echo(C6, WEB6),
    build.icmp_error("203.0.113.1", C4, 11, 0, build.tcp(C4, WEB, 1, 443)[:28]),
    build.udp(WEB, C4, 53, 1),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_random_datagrams_and_tun_packets_never_raise(data: bytes) -> None:
    for out in (
        FUZZ_LAB.gateway.handle_network_input(data, CL_EP, FUZZ_LAB.now),
        FUZZ_LAB.client.handle_network_input(data, GW_EP, FUZZ_LAB.now),
        FUZZ_LAB.gateway.handle_tun_input(data, FUZZ_LAB.now),
        FUZZ_LAB.client.handle_tun_input(data, FUZZ_LAB.now),
    ):
        assert isinstance(out, tuple) and len(out) == 2


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SEEDS),
    st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=4),
)
def test_mutated_packets_through_the_tunnel_never_raise(
    seed: bytes, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(seed)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    packet = bytes(data)
    lab = FUZZ_LAB
    for t in lab.cl_dev.encapsulate(lab.gateway_key, packet, lab.now):
        out = lab.gateway.handle_network_input(t.data, CL_EP, lab.now)
        for tun in out.tun:
            info = parse(tun)
            # Whatever reaches the resource side passed the filter: right source, allowed place.
            assert info is not None and info.src == int(ip_address(C4 if info.version == 4 else C6))
    for t in lab.gw_dev.encapsulate(lab.client_key, packet, lab.now):
        lab.client.handle_network_input(t.data, GW_EP, lab.now)
    lab.gateway.handle_tun_input(packet, lab.now)
    lab.client.handle_tun_input(packet, lab.now)
