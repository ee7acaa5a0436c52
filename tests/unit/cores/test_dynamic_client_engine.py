"""`DynamicClient` (the portal-mode client engine) against a real GatewayCore and real devices:
held first packet, flush after the grant, ICMP to the app on refusal, failover on ICMP
administratively prohibited from the gateway."""

from __future__ import annotations

import os
import uuid
from ipaddress import IPv4Address, IPv6Address, ip_network

from agents.client import portal_state as cs
from agents.client.portal import DynamicClient
from agents.gateway.core import GatewayCore
from agents.net import build
from agents.net.filter import Filter, ResourceRule
from agents.net.packet import PROTO_ICMP, parse
from agents.wireguard import Device, Transmit, generate_private_key

GW_EP = ("192.0.2.1", 51820)
CL_EP = ("198.51.100.7", 40000)
C4, C6 = IPv4Address("100.64.0.2"), IPv6Address("fd00:2021:1111::2")
WEB = "10.0.0.5"


class Rig:
    def __init__(self) -> None:
        self.gw_dev = Device(generate_private_key())
        self.gateway = GatewayCore(self.gw_dev)
        self.requests: list[cs.Request] = []
        self.engine = DynamicClient(
            Device(generate_private_key()), lambda: 0.0, send_requests=self.requests.extend
        )
        self.kicks = 0

        def kick() -> None:
            self.kicks += 1

        self.engine.kick = kick
        self.resource = cs.ClientResource(uuid.uuid4(), "cidr", "10.0.0.0/24", "web")
        self.other = cs.ClientResource(uuid.uuid4(), "ip", "10.9.0.1", "db")
        self.engine.portal_event(
            lambda st, now: st.on_init(C4, C6, [self.resource, self.other], now)
        )
        self.psk = os.urandom(32)
        self.gw_tun: list[bytes] = []
        self.cl_tun: list[bytes] = []

    def authorize_on_gateway(self) -> None:
        self.gateway.add_peer(self.engine.device.public_key, self.psk, C4, C6)
        rule = ResourceRule("web", "cidr", (ip_network("10.0.0.0/24"),), (Filter("icmp"),))
        self.gateway.allow(self.engine.device.public_key, "a1", rule, None)

    def grant(self) -> cs.Effects:
        g = cs.Granted(
            uuid.uuid4(),
            self.resource.id,
            uuid.uuid4(),
            self.gw_dev.public_key,
            GW_EP,
            self.psk,
            None,
        )
        return self.engine.portal_event(lambda st, now: st.on_granted(g, now))

    def pump(self, to_gateway: list[Transmit], now: float) -> None:
        to_client: list[Transmit] = []
        for _ in range(20):
            if not to_gateway and not to_client:
                return
            next_gw: list[Transmit] = []
            next_cl: list[Transmit] = []
            for t in to_gateway:
                out = self.gateway.handle_network_input(t.data, CL_EP, now)
                self.gw_tun.extend(out.tun)
                next_cl.extend(out.udp)
            for t in to_client:
                out = self.engine.handle_network_input(t.data, GW_EP, now)
                self.cl_tun.extend(out.tun)
                next_gw.extend(out.udp)
            to_gateway, to_client = next_gw, next_cl
        raise AssertionError("kept talking")

    def drain(self, now: float) -> list[Transmit]:
        assert self.engine.poll_timeout() == 0.0, "queued output asks for a timer call at once"
        out = self.engine.handle_timeout(now)
        self.cl_tun.extend(out.tun)
        return list(out.udp)


def ping(dst: str = WEB, seq: int = 1) -> bytes:
    return build.icmp_echo(str(C4), dst, ident=7, seq=seq)


def test_first_packet_is_held_then_flushed_through_the_granted_gateway() -> None:
    rig = Rig()
    rig.authorize_on_gateway()
    out = rig.engine.handle_tun_input(ping(), 1.0)
    assert not out.tun and not out.udp
    assert [r.resource_id for r in rig.requests] == [rig.resource.id]
    rig.engine.handle_tun_input(ping(seq=2), 1.0)
    assert len(rig.requests) == 1
    rig.grant()
    assert rig.kicks == 1
    rig.pump(rig.drain(1.1), 1.1)
    echoed = [parse(p) for p in rig.gw_tun]
    assert [i.dst for i in echoed if i is not None] == [int(IPv4Address(WEB))] * 2
    # Later packets go straight through the session (no new request).
    out = rig.engine.handle_tun_input(ping(seq=3), 1.2)
    assert out.udp and len(rig.requests) == 1


def test_refused_request_answers_the_app_with_icmp_unreachable() -> None:
    rig = Rig()
    rig.engine.handle_tun_input(ping(), 1.0)
    rig.engine.portal_event(lambda st, now: st.on_refused(rig.resource.id, "forbidden", now))
    tun = rig.drain(1.0)
    assert tun == []
    [reply] = rig.cl_tun
    info = parse(reply)
    assert info is not None and info.protocol == PROTO_ICMP
    assert info.dst == int(C4) and info.src == int(IPv4Address(WEB))
    assert reply[info.l4_offset] == 3 and reply[info.l4_offset + 1] == 13


def test_non_resource_is_refused_at_once_without_asking() -> None:
    rig = Rig()
    out = rig.engine.handle_tun_input(ping("10.50.0.1"), 1.0)
    assert len(out.tun) == 1 and not rig.requests


def test_gateway_admin_prohibited_makes_the_client_ask_again() -> None:
    rig = Rig()
    rig.authorize_on_gateway()
    rig.engine.handle_tun_input(ping(), 1.0)
    rig.grant()
    rig.pump(rig.drain(1.0), 1.0)
    assert rig.gateway.revoke(rig.engine.device.public_key, "a1")
    out = rig.engine.handle_tun_input(ping(seq=5), 2.0)
    rig.pump(list(out.udp), 2.0)
    assert len(rig.requests) == 2, "re-requested after the gateway's refusal"
    assert rig.requests[1] == cs.Request(rig.resource.id, ())
    assert rig.engine.state.gateway_of(rig.resource.id) is None
