"""The dynamic client's sans-IO state: messages and packets stepped by hand, ``now`` passed in."""

from __future__ import annotations

import os
import uuid
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network

from agents.client import portal_state as cs

V4 = IPv4Address("100.64.0.7")
V6 = IPv6Address("fd00:2021:1111::7")


def res(address: str, rtype: str = "cidr") -> cs.ClientResource:
    return cs.ClientResource(uuid.uuid4(), rtype, address, "r")


def grant(
    r: cs.ClientResource, gw: uuid.UUID, key: bytes, expires: float | None = None
) -> cs.Granted:
    return cs.Granted(uuid.uuid4(), r.id, gw, key, ("192.0.2.1", 51820), os.urandom(32), expires)


def no_handshake(_key: bytes) -> float | None:
    return None


def test_init_routes_cidr_and_ip_resources_only() -> None:
    st = cs.ClientState()
    a, b, d = res("10.1.0.0/16"), res("10.2.0.5", "ip"), res("*.corp", "dns")
    fx = st.on_init(V4, V6, [a, b, d], 0.0)
    assert fx.routes is not None
    assert set(fx.routes) == {ip_network("10.1.0.0/16"), ip_network("10.2.0.5/32")}
    assert not fx.requests and not fx.set_gateways


def test_first_packet_requests_and_is_held_until_granted() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    fx = st.on_packet(b"p1", ip_address("10.1.2.3"), 1.0)
    assert fx.requests == [cs.Request(a.id, ())]
    assert not fx.deliver and not fx.reject
    fx = st.on_packet(b"p2", ip_address("10.1.2.3"), 1.1)
    assert not fx.requests, "one request per resource while pending"
    gw, key = uuid.uuid4(), os.urandom(32)
    fx = st.on_granted(grant(a, gw, key), 1.2)
    assert fx.deliver == [b"p1", b"p2"]
    assert [g.public_key for g in fx.set_gateways] == [key]
    assert fx.set_gateways[0].networks == (ip_network("10.1.0.0/16"),)
    assert st.gateway_of(a.id) == gw


def test_held_buffer_is_bounded() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    for i in range(cs.MAX_HELD_PACKETS + 10):
        st.on_packet(b"%d" % i, ip_address("10.1.0.1"), 1.0)
    fx = st.on_granted(grant(a, uuid.uuid4(), os.urandom(32)), 2.0)
    assert len(fx.deliver) == cs.MAX_HELD_PACKETS
    assert fx.deliver[-1] == b"%d" % (cs.MAX_HELD_PACKETS + 9), "the newest are kept"


def test_refusal_rejects_held_packets_and_later_packets_without_asking_again() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    st.on_packet(b"p1", ip_address("10.1.0.1"), 1.0)
    fx = st.on_refused(a.id, "forbidden", 1.1)
    assert fx.reject == [b"p1"] and not fx.set_gateways
    fx = st.on_packet(b"p2", ip_address("10.1.0.1"), 1.5)
    assert fx.reject == [b"p2"] and not fx.requests
    fx = st.on_packet(b"p3", ip_address("10.1.0.1"), 1.1 + cs.FAILED_HOLD_S + 0.01)
    assert fx.requests and not fx.reject, "asks again after the hold"


def test_non_resource_packet_is_rejected_at_once() -> None:
    st = cs.ClientState()
    st.on_init(V4, V6, [res("10.1.0.0/16")], 0.0)
    fx = st.on_packet(b"x", ip_address("10.9.0.1"), 1.0)
    assert fx.reject == [b"x"] and not fx.requests


def test_request_without_answer_times_out() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    st.on_packet(b"p1", ip_address("10.1.0.1"), 1.0)
    assert not st.tick(1.0 + cs.REQUEST_TIMEOUT_S - 0.1, no_handshake).reject
    fx = st.tick(1.0 + cs.REQUEST_TIMEOUT_S, no_handshake)
    assert fx.reject == [b"p1"]


def test_one_gateway_session_carries_many_resources() -> None:
    st = cs.ClientState()
    a, b = res("10.1.0.0/16"), res("10.2.0.0/16")
    st.on_init(V4, V6, [a, b], 0.0)
    gw, key = uuid.uuid4(), os.urandom(32)
    st.on_packet(b"a", ip_address("10.1.0.1"), 1.0)
    st.on_granted(grant(a, gw, key), 1.0)
    fx = st.on_packet(b"b", ip_address("10.2.0.1"), 2.0)
    assert fx.requests == [cs.Request(b.id, (gw,))], "names the connected gateway"
    fx = st.on_granted(grant(b, gw, key), 2.0)
    assert len(fx.set_gateways) == 1
    assert set(fx.set_gateways[0].networks) == {
        ip_network("10.1.0.0/16"),
        ip_network("10.2.0.0/16"),
    }
    assert len(st.installed()) == 1


def test_resource_deleted_drops_flow_route_and_gateway() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    key = os.urandom(32)
    st.on_granted(grant(a, uuid.uuid4(), key), 1.0)
    fx = st.on_resource_deleted(a.id, 2.0)
    assert fx.remove_gateways == [key]
    assert fx.routes == ()
    assert st.gateway_of(a.id) is None


def test_readdressed_resource_loses_its_flow() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    key = os.urandom(32)
    st.on_granted(grant(a, uuid.uuid4(), key), 1.0)
    fx = st.on_resource(cs.ClientResource(a.id, "cidr", "10.3.0.0/16", "r"), 2.0)
    assert fx.remove_gateways == [key]
    assert fx.routes == (ip_network("10.3.0.0/16"),)


def test_flows_expire_locally_and_survive_until_then() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    key = os.urandom(32)
    st.on_granted(grant(a, uuid.uuid4(), key, expires=50.0), 1.0)
    assert not st.tick(49.9, no_handshake).remove_gateways
    assert st.tick(50.0, no_handshake).remove_gateways == [key]


def test_reconnect_init_keeps_listed_flows_and_drops_others() -> None:
    st = cs.ClientState()
    a, b = res("10.1.0.0/16"), res("10.2.0.0/16")
    st.on_init(V4, V6, [a, b], 0.0)
    ka, kb = os.urandom(32), os.urandom(32)
    st.on_granted(grant(a, uuid.uuid4(), ka), 1.0)
    st.on_granted(grant(b, uuid.uuid4(), kb), 1.0)
    fx = st.on_init(V4, V6, [a], 5.0)
    assert fx.remove_gateways == [kb]
    assert not fx.set_gateways, "the kept gateway is not touched"
    assert st.gateway_of(a.id) is not None


def test_handshake_timeout_fails_over_naming_only_other_gateways() -> None:
    st = cs.ClientState()
    a, b = res("10.1.0.0/16"), res("10.2.0.0/16")
    st.on_init(V4, V6, [a, b], 0.0)
    g1, k1, g2, k2 = uuid.uuid4(), os.urandom(32), uuid.uuid4(), os.urandom(32)
    st.on_granted(grant(a, g1, k1), 1.0)
    st.on_granted(grant(b, g2, k2), 1.0)
    handshakes = {k1: 10.0}
    assert not st.tick(10.0 + cs.HANDSHAKE_FAILOVER_S - 0.1, handshakes.get).requests
    fx = st.tick(10.0 + cs.HANDSHAKE_FAILOVER_S, handshakes.get)
    assert fx.requests == [cs.Request(a.id, (g2,), (g1,))]
    assert fx.remove_gateways == [k1]
    # Packets meanwhile are held, then flushed to the new gateway.
    assert not st.on_packet(b"q", ip_address("10.1.0.1"), 16.0).requests
    fx = st.on_granted(grant(a, g2, k2), 16.1)
    assert fx.deliver == [b"q"]
    # Later requests keep naming the dead gateway as failed, for a while.
    st.on_init(V4, V6, [a, b, c := res("10.3.0.0/16")], 17.0)
    assert st.on_packet(b"c", ip_address("10.3.0.1"), 17.0).requests == [
        cs.Request(c.id, (g2,), (g1,))
    ]
    st.tick(15.0 + cs.FAILED_GATEWAY_S, handshakes.get)
    st.on_refused(c.id, "offline", 15.0 + cs.FAILED_GATEWAY_S)
    later = 17.0 + cs.FAILED_GATEWAY_S
    assert st.on_packet(b"c", ip_address("10.3.0.1"), later).requests == [
        cs.Request(c.id, (g2,), ())
    ]


def test_admin_prohibited_from_gateway_rerequests_that_resource_only() -> None:
    st = cs.ClientState()
    a, b = res("10.1.0.0/16"), res("10.2.0.0/16")
    st.on_init(V4, V6, [a, b], 0.0)
    gw, key = uuid.uuid4(), os.urandom(32)
    st.on_granted(grant(a, gw, key), 1.0)
    st.on_granted(grant(b, gw, key), 1.0)
    fx = st.on_prohibited(key, ip_address("10.1.0.9"), 2.0)
    assert fx.requests == [cs.Request(a.id, ())]
    assert st.gateway_of(b.id) == gw
    assert fx.set_gateways and fx.set_gateways[0].networks == (ip_network("10.2.0.0/16"),)
    # Another gateway's ICMP does not touch this flow.
    assert not st.on_prohibited(os.urandom(32), ip_address("10.2.0.1"), 2.0).requests


def test_revoked_flow_is_dropped() -> None:
    st = cs.ClientState()
    a = res("10.1.0.0/16")
    st.on_init(V4, V6, [a], 0.0)
    key = os.urandom(32)
    g = grant(a, uuid.uuid4(), key)
    st.on_granted(g, 1.0)
    assert not st.on_revoked([uuid.uuid4()], 2.0).remove_gateways
    assert st.on_revoked([g.authorization_id], 2.0).remove_gateways == [key]


def test_most_specific_resource_wins() -> None:
    st = cs.ClientState()
    wide, narrow = res("10.0.0.0/8"), res("10.1.2.3", "ip")
    st.on_init(V4, V6, [wide, narrow], 0.0)
    found = st.resource_for(ip_address("10.1.2.3"))
    assert found is not None and found.id == narrow.id
    found = st.resource_for(ip_address("10.1.2.4"))
    assert found is not None and found.id == wide.id
