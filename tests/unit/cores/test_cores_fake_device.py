"""Core logic against a minimal fake WireGuard device (no crypto): counters and pass-through."""

from __future__ import annotations

from ipaddress import ip_network

from agents.client.core import ClientCore, GatewayInfo
from agents.gateway.core import NOTHING, DeviceLike, GatewayCore
from agents.net import build
from agents.net.filter import ResourceRule
from agents.wireguard import Decapsulated, Transmit

PEER = b"P" * 32
STRANGER = b"S" * 32
EP = ("192.0.2.9", 4000)


class FakeDevice:
    """Decapsulate: first byte picks the sender (P/S, or anything else = a WireGuard error),
    the rest is the inner packet. Encapsulate: b"E" + packet to a fixed endpoint."""

    public_key = b"G" * 32

    def __init__(self) -> None:
        self.peers: dict[bytes, dict[str, object]] = {}
        self.timeouts = 0
        self.deadline: float | None = None

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        endpoint: tuple[str, int] | None = None,
        persistent_keepalive: int | None = None,
    ) -> None:
        if len(public_key) != 32:
            raise ValueError("invalid peer public key")
        self.peers[public_key] = {"psk": preshared_key, "keepalive": persistent_keepalive}

    def remove_peer(self, public_key: bytes) -> None:
        self.peers.pop(public_key, None)

    def encapsulate(self, public_key: bytes, packet: bytes, now: float) -> list[Transmit]:
        return [Transmit(EP, b"E" + packet)] if public_key in self.peers else []

    def decapsulate(self, data: bytes, source: tuple[str, int], now: float) -> Decapsulated:
        who = data[:1]
        handshake = [Transmit(source, b"handshake-response")]
        if who == b"P":
            return Decapsulated(PEER, data[1:] or None, handshake)
        if who == b"S":
            return Decapsulated(STRANGER, data[1:] or None, [])
        return Decapsulated(None, None, [], "decryption failed")

    def handle_timeout(self, now: float) -> list[Transmit]:
        self.timeouts += 1
        return [Transmit(EP, b"keepalive")]

    def poll_timeout(self) -> float | None:
        return self.deadline


def gateway() -> tuple[GatewayCore, FakeDevice]:
    dev = FakeDevice()
    device: DeviceLike = dev  # the fake satisfies the protocol the cores are typed against
    core = GatewayCore(device)
    core.add_peer(PEER, None, "100.64.0.2")
    core.allow(PEER, "a", ResourceRule("r", "cidr", (ip_network("10.0.0.0/24"),)), None)
    return core, dev


def test_wireguard_errors_are_counted_by_reason() -> None:
    core, _ = gateway()
    assert core.handle_network_input(b"xgarbage", EP, 0) is NOTHING
    assert core.handle_network_input(b"xgarbage", EP, 0) is NOTHING
    assert core.counters["wireguard: decryption failed"] == 2
    assert core.counters["forwarded_to_tun"] == 0


def test_handshake_transmits_pass_through_even_when_the_packet_is_dropped() -> None:
    core, _ = gateway()
    out = core.handle_network_input(b"P" + build.tcp("100.64.0.9", "10.0.0.1", 1, 2), EP, 0)
    assert out.tun == ()
    assert [t.data for t in out.udp] == [b"handshake-response"]
    assert core.counters["dropped_spoofed"] == 1
    out = core.handle_network_input(b"P", EP, 0)  # keepalive: no packet
    assert out.tun == () and len(out.udp) == 1


def test_a_peer_the_firewall_does_not_know_is_dropped() -> None:
    core, dev = gateway()
    dev.add_peer(STRANGER)  # known to the device only
    out = core.handle_network_input(b"S" + build.tcp("100.64.0.2", "10.0.0.1", 1, 2), EP, 0)
    assert out is NOTHING
    assert core.counters["dropped_unknown_peer"] == 1


def test_malformed_inner_packets_are_counted() -> None:
    core, _ = gateway()
    out = core.handle_network_input(b"P" + b"\x45" + b"\x00" * 25, EP, 0)
    assert out.tun == ()
    assert core.counters["dropped_malformed"] == 1


def test_forward_and_reject_outputs() -> None:
    core, _ = gateway()
    ok = build.tcp("100.64.0.2", "10.0.0.1", 1, 2)
    out = core.handle_network_input(b"P" + ok, EP, 0)
    assert out.tun == (ok,)
    bad = build.tcp("100.64.0.2", "10.9.0.1", 1, 2)
    out = core.handle_network_input(b"P" + bad, EP, 0)
    assert out.tun == ()
    assert len(out.udp) == 2 and out.udp[1].data[:2] == b"E\x45"  # the ICMP reply, encrypted
    icmp_error = build.icmp_error("100.64.0.2", "10.9.0.1", 3, 3, bad[:28])
    out = core.handle_network_input(b"P" + icmp_error, EP, 0)
    assert [t.data for t in out.udp] == [b"handshake-response"]  # no ICMP about an ICMP error
    assert core.counters["rejected_icmp"] == 1 and core.counters["rejected_silently"] == 1


def test_timeouts_combine_device_timers_and_expiry() -> None:
    core, dev = gateway()
    assert core.poll_timeout() is None
    dev.deadline = 50.0
    assert core.poll_timeout() == 50.0
    core.allow(PEER, "b", ResourceRule("s", "cidr", (ip_network("10.1.0.0/24"),)), 20.0)
    assert core.poll_timeout() == 20.0
    out = core.handle_timeout(20.0)
    assert [t.data for t in out.udp] == [b"keepalive"]
    assert core.take_expired() == [(PEER, "b")]
    assert core.poll_timeout() == 50.0


def test_add_peer_with_a_bad_key_leaves_no_trace() -> None:
    core, _ = gateway()
    try:
        core.add_peer(b"short", None, "100.64.0.5")
    except ValueError:
        pass
    else:
        raise AssertionError("expected ValueError")
    assert core.firewall.peer_by_address("100.64.0.5") is None


def test_client_core_routes_by_longest_prefix() -> None:
    dev = FakeDevice()
    client = ClientCore(dev, "100.64.0.2")
    g1, g2 = b"1" * 32, b"2" * 32
    client.add_gateway(GatewayInfo(g1, EP, (ip_network("0.0.0.0/0"),)))
    client.add_gateway(GatewayInfo(g2, EP, (ip_network("10.0.0.0/8"), ip_network("10.1.2.3/32"))))
    assert client.gateway_for("8.8.8.8") == g1
    assert client.gateway_for("10.200.0.1") == g2
    assert client.gateway_for("10.1.2.3") == g2
    assert client.gateway_for("2001:db8::1") is None
    assert dev.peers[g1]["keepalive"] == 25
    client.remove_gateway(g2)
    assert client.gateway_for("10.200.0.1") == g1  # cache invalidated
    assert g2 not in dev.peers
    out = client.handle_tun_input(build.udp("100.64.0.2", "10.200.0.1", 1, 2), 0)
    assert len(out.udp) == 1


def test_icmp_replies_are_rate_limited_per_peer() -> None:
    from agents.gateway.core import ICMP_BURST, ICMP_RATE

    core, _ = gateway()
    bad = b"P" + build.tcp("100.64.0.2", "10.9.0.1", 1, 2)
    replies = [len(core.handle_network_input(bad, EP, 100.0).udp) - 1 for _ in range(200)]
    assert sum(replies) == ICMP_BURST
    assert core.counters["rejected_rate_limited"] == 200 - ICMP_BURST
    # Tokens come back with time.
    replies = [len(core.handle_network_input(bad, EP, 100.25).udp) - 1 for _ in range(40)]
    assert sum(replies) == int(0.25 * ICMP_RATE)


def test_tun_batches_and_route_lookups() -> None:
    core, _ = gateway()
    reply = build.udp("10.0.0.1", "100.64.0.2", 53, 1)
    stray = build.udp("10.7.0.1", "100.64.0.2", 53, 1)
    out = core.handle_tun_batch([reply, stray, reply], 0)
    assert [t.data for t in out.udp] == [b"E" + reply, b"E" + reply]
    assert core.route(reply, 0) == PEER
    assert core.route(stray, 0) is None
    assert core.counters["forwarded_to_peer"] == 3
    assert core.counters["dropped_no_route"] == 2
