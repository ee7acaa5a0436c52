"""`ClientCore.route` is `handle_tun_input`'s decision (and counters) without the encryption."""

from __future__ import annotations

import random
from ipaddress import ip_network

from agents.client.core import ClientCore, GatewayInfo
from agents.io.engine import CoreEngine
from agents.net import build
from agents.wireguard import Device

C4, C6 = "100.64.0.2", "fd00:2021:1111::2"
NOW = 1000.0


def client() -> tuple[ClientCore, bytes]:
    gw = Device(random.Random("gw").randbytes(32)).public_key
    core = ClientCore(Device(random.Random("cl").randbytes(32)), C4, C6)
    core.add_gateway(
        GatewayInfo(
            gw, ("192.0.2.1", 51820), (ip_network("10.0.0.0/24"), ip_network("2001:db8::/64"))
        )
    )
    return core, gw


PACKETS = [
    build.tcp(C4, "10.0.0.5", 1, 443),
    build.tcp(C6, "2001:db8::5", 1, 443),
    build.tcp("100.64.0.9", "10.0.0.5", 1, 443),  # not our source
    build.tcp(C6.replace("::2", "::3"), "2001:db8::5", 1, 443),
    build.tcp(C4, "172.16.0.1", 1, 443),  # no gateway serves it
    b"\x45\x00",  # malformed
]


def test_route_names_the_gateway_exactly_when_handle_tun_input_sends() -> None:
    routed, gw = client()
    sent, _ = client()
    for packet in PACKETS:
        before = sent.counters["forwarded_to_gateway"]
        key = routed.route(packet, NOW)
        sent.handle_tun_input(packet, NOW)  # sends or queues for the handshake when forwarded
        assert (key is not None) == (sent.counters["forwarded_to_gateway"] == before + 1)
        assert key in (None, gw)
        assert routed.counters == sent.counters
    assert routed.counters["forwarded_to_gateway"] == 2
    assert routed.counters["dropped_bad_source"] == 2
    assert routed.counters["dropped_no_route"] == 1
    assert routed.counters["dropped_malformed"] == 1


def test_the_engine_takes_the_clients_route_for_the_fast_path() -> None:
    core, _gw = client()
    engine = CoreEngine(core)
    assert engine.route == core.route
    assert engine.encrypt_batch is not None
