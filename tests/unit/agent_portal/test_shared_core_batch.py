"""The portal-mode `SharedCore` offers the offload drivers' batch fast path, under its lock."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from ipaddress import ip_network

from agents.gateway import portal
from agents.gateway.core import GatewayCore
from agents.io.engine import CoreEngine
from agents.net import build
from agents.net.filter import Filter, PortRange, ResourceRule
from agents.wireguard import Device

CL_EP = ("198.51.100.7", 40000)
GW_EP = ("192.0.2.1", 51820)
C4, WEB = "100.64.0.2", "10.0.0.5"
NOW = 1000.0
RULE = ResourceRule(
    "web", "cidr", (ip_network("10.0.0.0/24"),), (Filter("tcp", (PortRange(443, 443),)),)
)


def connected() -> tuple[portal.SharedCore, Device, bytes]:
    """A shared gateway core with an established session to a client device."""
    gw = Device(os.urandom(32))
    cl = Device(os.urandom(32))
    core = GatewayCore(gw)
    core.add_peer(cl.public_key, None, C4)
    core.allow(cl.public_key, "a", RULE, None)
    shared = portal.SharedCore(core, lambda: 0.0)
    cl.add_peer(gw.public_key, endpoint=GW_EP)
    (init,) = cl.encapsulate(gw.public_key, build.tcp(C4, WEB, 1, 443), NOW)
    (resp,) = shared.handle_network_input(init.data, CL_EP, NOW).udp
    for t in cl.decapsulate(resp.data, GW_EP, NOW).transmits:
        shared.handle_network_input(t.data, CL_EP, NOW)
    return shared, cl, gw.public_key


def blocks_while_locked(shared: portal.SharedCore, call: Callable[[], object]) -> bool:
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    with shared.lock:
        t = threading.Thread(target=run)
        t.start()
        blocked = not done.wait(0.05)
    t.join(2)
    return blocked and done.is_set()


def test_a_core_engine_over_a_shared_core_gets_the_batch_fast_path() -> None:
    shared, _cl, _gw = connected()
    engine = CoreEngine(shared)
    assert engine.route is not None
    assert engine.encrypt_batch is not None
    assert engine.on_network_batch is not None


def test_the_batch_methods_work_and_wait_for_the_lock() -> None:
    shared, cl, gw_pub = connected()
    allowed = build.tcp(C4, WEB, 1, 443, b"a" * 50)
    denied = build.tcp(C4, WEB, 1, 22)
    datagrams = [cl.encapsulate(gw_pub, p, NOW + 1)[0].data for p in (allowed, denied, allowed)]
    out = shared.handle_network_batch(datagrams, CL_EP, NOW + 1)
    assert list(out.tun) == [allowed, allowed]
    assert len(out.udp) == 1  # the ICMP reply for the denied port
    reply = build.tcp(WEB, C4, 443, 1)
    assert shared.route(reply, NOW + 1) == cl.public_key
    assert shared.route(build.tcp("10.1.0.99", C4, 443, 1), NOW + 1) is None
    ep, sealed, others = shared.encrypt_batch(cl.public_key, [reply, reply], NOW + 1)
    assert ep == CL_EP and len(sealed) == 2 and others == []
    assert [cl.decapsulate(d, GW_EP, NOW + 1).packet for d in sealed] == [reply, reply]

    more = [cl.encapsulate(gw_pub, allowed, NOW + 2)[0].data]
    assert blocks_while_locked(shared, lambda: shared.handle_network_batch(more, CL_EP, NOW + 2))
    assert blocks_while_locked(shared, lambda: shared.route(reply, NOW + 2))
    assert blocks_while_locked(shared, lambda: shared.encrypt_batch(cl.public_key, [reply], NOW))


def test_a_revoked_flow_is_refused_by_the_next_batch() -> None:
    shared, cl, gw_pub = connected()
    allowed = build.tcp(C4, WEB, 1, 443)
    first = [cl.encapsulate(gw_pub, allowed, NOW + 1)[0].data]
    assert list(shared.handle_network_batch(first, CL_EP, NOW + 1).tun) == [allowed]
    with shared.lock:
        shared.core.revoke(cl.public_key, "a")
    second = [cl.encapsulate(gw_pub, allowed, NOW + 1)[0].data]
    assert list(shared.handle_network_batch(second, CL_EP, NOW + 1).tun) == []
    assert shared.route(build.tcp(WEB, C4, 443, 1), NOW + 1) is None
