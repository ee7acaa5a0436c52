"""The batch receive path (`handle_network_batch`, `Device.decrypt_batch`) must behave exactly like
per-datagram `handle_network_input` calls: same TUN writes, transmits, counters and device state
(timers, replay windows, endpoints), for any sequence of valid, replayed, mutated and foreign
datagrams, keepalives, handshake messages and session changes."""

from __future__ import annotations

import random
from collections.abc import Callable
from ipaddress import ip_network

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.client.core import ClientCore, GatewayInfo
from agents.gateway.core import ICMP_BURST, GatewayCore, Output
from agents.net import build
from agents.net.filter import Filter, PortRange, ResourceRule
from agents.wireguard import Device, Transmit

GW_EP = ("192.0.2.1", 51820)
CL_EP = ("198.51.100.7", 40000)
CL_EP2 = ("198.51.100.8", 40001)
C4, C6 = "100.64.0.2", "fd00:2021:1111::2"
WEB, WEB6 = "10.0.0.5", "2001:db8::5"
NOW = 1000.0
RULE = ResourceRule(
    "web",
    "cidr",
    (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64")),
    (Filter("tcp", (PortRange(443, 443),)), Filter("icmp")),
)
NETWORKS = (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64"))


def rng(seed: str) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def key(seed: str) -> bytes:
    return random.Random(seed).randbytes(32)


def gateway() -> GatewayCore:
    core = GatewayCore(Device(key("gw"), rng=rng("gw-rng")))
    core.add_peer(Device(key("cl")).public_key, None, C4, C6)
    core.allow(Device(key("cl")).public_key, "a", RULE, None)
    return core


def client() -> ClientCore:
    core = ClientCore(Device(key("cl"), rng=rng("cl-rng")), C4, C6)
    core.add_gateway(GatewayInfo(Device(key("gw")).public_key, GW_EP, NETWORKS))
    return core


def data(transmits: list[Transmit] | tuple[Transmit, ...]) -> list[bytes]:
    return [t.data for t in transmits]


def variant(packet: bytes, offset: int, value: int) -> bytes:
    return packet[:offset] + bytes([value]) + packet[offset + 1 :]


def inner_packets() -> list[bytes]:
    """Forwarded, rejected (ICMP reply), rejected silently, spoofed and keepalive packets, and
    packets that share a forwarded flow's addresses and ports but must not share its verdict."""
    allowed = build.tcp(C4, WEB, 40000, 443, b"x" * 100)
    return [
        allowed,
        variant(allowed, 7, 1),  # a TCP fragment at offset 8: malformed (RFC 1858)
        variant(allowed, 6, 0x01),  # a later fragment of the same flow
        variant(allowed, 9, 17),  # UDP with the same addresses and ports: rejected
        variant(allowed, 2, 0x7F),  # total length beyond the packet: malformed
        variant(allowed, 3, 39),  # a TCP total length below 40: malformed
        build.tcp(C6, WEB6, 40000, 443, b"y" * 33),
        build.icmp_echo(C4, WEB),
        build.tcp(C4, WEB, 40000, 22),  # reject with ICMP
        build.udp(C6, WEB6, 1, 53),  # reject with ICMPv6
        build.icmp_echo(C4, "100.64.0.3"),  # client to client
        build.tcp("100.64.0.9", WEB, 1, 443),  # spoofed
        build.tcp(C4, "10.1.0.1", 1, 443),  # no resource
        b"",  # keepalive
    ]


def gateway_pool() -> tuple[list[bytes], list[Transmit]]:
    """Datagrams a client sends to the gateway: session 1 traffic, then a rekey initiation and
    session 2 traffic (valid once the gateway has answered that initiation). Returns the pool
    and the gateway's own setup output to replay on every lab."""
    cl = Device(key("cl"), rng=rng("cl-pool"))
    gw_pub = Device(key("gw")).public_key
    cl.add_peer(gw_pub, endpoint=GW_EP)
    scout = gateway()
    (init,) = cl.encapsulate(gw_pub, build.icmp_echo(C4, WEB), NOW)
    setup = [init]
    resp = scout.handle_network_input(init.data, CL_EP, NOW).udp
    pool: list[bytes] = []
    for t in resp:
        d = cl.decapsulate(t.data, GW_EP, NOW)
        pool.extend(data(d.transmits))  # the queued ping, confirming session 1
    for p in inner_packets():
        pool.extend(data(cl.encapsulate(gw_pub, p, NOW + 1)))
    # Rekey: data on the old session plus a new initiation.
    rekey = cl.encapsulate(gw_pub, inner_packets()[0], NOW + 130)
    pool.extend(data(rekey))
    scout.handle_network_input(setup[0].data, CL_EP, NOW)  # (already consumed: no effect)
    for d_ in pool[:-1]:
        scout.handle_network_input(d_, CL_EP, NOW + 130)
    resp2 = scout.handle_network_input(pool[-1], CL_EP, NOW + 130).udp
    for t in resp2:
        cl.decapsulate(t.data, GW_EP, NOW + 130)
    for p in inner_packets():
        pool.extend(data(cl.encapsulate(gw_pub, p, NOW + 131)))
    return pool, setup


GW_POOL, GW_SETUP = gateway_pool()


def client_pool() -> tuple[list[bytes], list[bytes]]:
    """Datagrams a gateway device sends to the client, after the handshake."""
    cl = client()
    gw = Device(key("gw"), rng=rng("gw-pool"))
    gw.add_peer(Device(key("cl")).public_key)
    (init,) = cl.handle_tun_input(build.icmp_echo(C4, WEB), NOW).udp
    (resp,) = gw.decapsulate(init.data, CL_EP, NOW).transmits
    cl_pub = Device(key("cl")).public_key
    packets = [
        build.icmp_echo(WEB, C4, reply=True),
        build.tcp(WEB, C4, 443, 40000, b"z" * 64),
        build.tcp(WEB6, C6, 443, 40000),
        build.tcp("10.9.9.9", C4, 443, 40000),  # not a network of that gateway
        build.tcp(WEB, "100.64.0.3", 443, 40000),  # not for us
        b"",
    ]
    pool: list[bytes] = []
    for p in packets:
        pool.extend(data(gw.encapsulate(cl_pub, p, NOW + 1)))
    return pool, [init.data, resp.data]


CL_POOL, CL_SETUP = client_pool()

Core = GatewayCore | ClientCore


def datagram(pool: list[bytes]) -> st.SearchStrategy[bytes]:
    picked = st.sampled_from(pool)
    mutated = st.tuples(picked, st.integers(0, 2000), st.integers(1, 255)).map(
        lambda t: (
            t[0][: t[1] % len(t[0])]
            + bytes([t[0][t[1] % len(t[0])] ^ t[2]])
            + t[0][t[1] % len(t[0]) + 1 :]
        )
    )
    truncated = st.tuples(picked, st.integers(0, 200)).map(lambda t: t[0][: t[1]])
    junk = st.binary(max_size=64)
    return st.one_of(picked, picked, picked, mutated, truncated, junk)


def batches(pool: list[bytes]) -> st.SearchStrategy[list[tuple[float, bool, list[bytes]]]]:
    """(seconds to advance, second source?, datagrams) per batch."""
    return st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.01, 1.0, 11.0, 40.0]),
            st.booleans(),
            st.lists(datagram(pool), min_size=0, max_size=12),
        ),
        min_size=1,
        max_size=8,
    )


def run_both(
    make: Callable[[], Core],
    setup: Callable[[Core], None],
    script: list[tuple[float, bool, list[bytes]]],
    now: float,
) -> None:
    single, batched = make(), make()
    setup(single)
    setup(batched)
    for advance, second, datagrams in script:
        now += advance
        source = CL_EP2 if second else CL_EP
        expect_tun: list[bytes] = []
        expect_udp: list[Transmit] = []
        for d in datagrams:
            out = single.handle_network_input(d, source, now)
            expect_tun.extend(out.tun)
            expect_udp.extend(out.udp)
        got = batched.handle_network_batch(datagrams, source, now)
        assert list(got.tun) == expect_tun
        assert list(got.udp) == expect_udp
        assert batched.counters == single.counters
        assert batched.poll_timeout() == single.poll_timeout()
        t_single = single.handle_timeout(now + 0.5)
        t_batched = batched.handle_timeout(now + 0.5)
        assert t_batched == t_single
    # Later traffic uses the same counters and sessions on both.
    probe = (
        build.tcp(WEB, C4, 443, 40000)
        if isinstance(single, GatewayCore)
        else build.icmp_echo(C4, WEB)
    )
    assert batched.handle_tun_input(probe, now + 1) == single.handle_tun_input(probe, now + 1)


def gateway_setup(core: Core) -> None:
    for t in GW_SETUP:
        core.handle_network_input(t.data, CL_EP, NOW)


def client_setup(core: Core) -> None:
    assert isinstance(core, ClientCore)
    core.handle_tun_input(build.icmp_echo(C4, WEB), NOW)
    core.handle_network_input(CL_SETUP[1], GW_EP, NOW)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(GW_POOL))
def test_gateway_batch_receive_equals_per_datagram_receive(
    script: list[tuple[float, bool, list[bytes]]],
) -> None:
    run_both(gateway, gateway_setup, script, NOW + 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(CL_POOL))
def test_client_batch_receive_equals_per_datagram_receive(
    script: list[tuple[float, bool, list[bytes]]],
) -> None:
    run_both(client, client_setup, script, NOW + 1)


def test_the_pool_exercises_forwards_rejects_rekeys_and_replays() -> None:
    # Guards the property tests against a pool that silently stopped covering the paths.
    core = gateway()
    gateway_setup(core)
    out = core.handle_network_batch(GW_POOL + GW_POOL[:3], CL_EP, NOW + 130)
    c = core.counters
    assert c["forwarded_to_tun"] >= 6
    assert c["rejected_icmp"] >= 3
    assert c["dropped_spoofed"] >= 2
    assert c["wireguard: replayed counter"] == 3
    assert len(out.tun) == c["forwarded_to_tun"]
    assert len(out.udp) >= 4  # the handshake response and the ICMP replies
    assert "wireguard: unknown receiver index" not in c  # session 2 was confirmed in order


def test_a_rejected_packet_in_a_batch_is_answered_between_its_neighbours() -> None:
    # The ICMP reply is sealed when its datagram is handled, not at the end of the batch: its
    # nonce sits between the neighbours' effects exactly as in per-datagram calls.
    single, batched = gateway(), gateway()
    gateway_setup(single)
    gateway_setup(batched)
    reject_at = 1 + inner_packets().index(build.tcp(C4, WEB, 40000, 22))
    seq = GW_POOL[: reject_at + 3]
    expected = [single.handle_network_input(d, CL_EP, NOW + 1) for d in seq]
    got = batched.handle_network_batch(seq, CL_EP, NOW + 1)
    assert list(got.udp) == [t for o in expected for t in o.udp]
    assert list(got.tun) == [p for o in expected for p in o.tun]
    assert got.udp, "the rejected packet must produce an ICMP reply"


def test_a_batch_spends_the_icmp_reply_budget_like_per_datagram_calls() -> None:
    cl = Device(key("cl"), rng=rng("cl-budget"))
    gw_pub = Device(key("gw")).public_key
    cl.add_peer(gw_pub, endpoint=GW_EP)
    closed_port = build.tcp(C4, WEB, 40000, 22)
    single, batched = gateway(), gateway()
    (init,) = cl.encapsulate(gw_pub, closed_port, NOW)
    response = single.handle_network_input(init.data, CL_EP, NOW).udp
    assert batched.handle_network_input(init.data, CL_EP, NOW).udp == response
    seq = [t.data for r in response for t in cl.decapsulate(r.data, GW_EP, NOW).transmits]
    for _ in range(int(ICMP_BURST) + 20):
        seq.extend(data(cl.encapsulate(gw_pub, closed_port, NOW + 1)))
    expected = [single.handle_network_input(d, CL_EP, NOW + 1) for d in seq]
    got = batched.handle_network_batch(seq, CL_EP, NOW + 1)
    assert list(got.udp) == [t for o in expected for t in o.udp]
    assert batched.counters == single.counters
    assert batched.counters["rejected_icmp"] == ICMP_BURST
    assert batched.counters["rejected_rate_limited"] == len(seq) - ICMP_BURST > 0


def test_device_decrypt_batch_yields_what_decapsulate_returns() -> None:
    a, b = gateway(), gateway()
    gateway_setup(a)
    gateway_setup(b)
    dev_a, dev_b = a.device, b.device
    assert isinstance(dev_a, Device) and isinstance(dev_b, Device)
    seq = GW_POOL + GW_POOL[:2] + [b"junk", GW_POOL[1][:40]]
    expected = [dev_a.decapsulate(d, CL_EP, NOW + 130) for d in seq]
    got = list(dev_b.decrypt_batch(seq, CL_EP, NOW + 130))
    assert got == [(d.peer, d.packet, d.transmits or None, d.error) for d in expected]
    assert any(d.error is not None for d in expected)
    assert any(d.packet is not None for d in expected)


def test_the_batch_output_is_an_output() -> None:
    core = gateway()
    gateway_setup(core)
    out = core.handle_network_batch([], CL_EP, NOW + 1)
    assert isinstance(out, Output)
    assert list(out.tun) == [] and list(out.udp) == []
