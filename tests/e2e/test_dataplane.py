"""End-to-end data plane tests in network namespaces: client <-veth-> gateway <-veth-> resource.

Real peers on the other side: wireguard-go configured with a standard wg-quick file as the client
of our gateway, and wireguard-go as the server for our client. Probes (tests/e2e/probes.py) run
inside the namespaces and report JSON. Every test builds its own namespaces (unique names) and the
Lab removes them, also on failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agents.io.driver import MODES
from agents.io.nft import masquerade_ruleset

from .netns import (
    Agent,
    KeyPair,
    Lab,
    ThreeHop,
    WgPeer,
    client_toml,
    gateway_toml,
    genkey,
    genpsk,
    missing_requirements,
    start_agent,
    three_hop,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

_reason = missing_requirements(("ip", "wireguard-go", "wg", "wg-quick", "nft"))
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

GW_IP, CLIENT_IP = "100.64.0.1", "100.64.0.2"
ALLOWED_HOST = "10.202.0.2"  # the resource namespace's address: an `ip` resource
OTHER_HOST = "10.202.0.3"  # also in the resource namespace, never authorized
HTTP_PORT, OTHER_PORT, UDP_PORT = 8080, 9090, 9999
ICMP_DEST_UNREACH, ICMP_ADMIN_PROHIBITED = 3, 13


@dataclass
class Setup:
    lab: Lab
    topo: ThreeHop
    gw_keys: KeyPair
    client_keys: KeyPair
    psk: str
    payload_sha: str


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with Lab("fze") as lab:
        topo = three_hop(lab)
        topo.resource.ip("addr", "add", f"{OTHER_HOST}/24", "dev", topo.resource_if)
        # Servers in the resource namespace listen on every address, so a refused connection can
        # only come from the gateway's filter.
        payload = os.urandom(2 * 1024 * 1024)
        (tmp_path / "blob").write_bytes(payload)
        lab.spawn(topo.resource.cmd(["python3", "-m", "http.server", "-d", str(tmp_path),
                                     str(HTTP_PORT)]))  # fmt: skip
        topo.resource.probe_background("echo-server", str(OTHER_PORT))
        yield Setup(lab, topo, genkey(), genkey(), genpsk(), hashlib.sha256(payload).hexdigest())


def gateway_config(s: Setup, *, client_ip: str = CLIENT_IP) -> str:
    return gateway_toml(
        s.gw_keys.private,
        GW_IP,
        [
            {
                "public_key": s.client_keys.public,
                "ipv4": client_ip,
                "preshared_key": s.psk,
                "resources": [
                    {
                        "id": "web",
                        "type": "ip",
                        "address": ALLOWED_HOST,
                        "filters": [
                            {"protocol": "tcp", "ports": [str(HTTP_PORT)]},
                            {"protocol": "udp", "ports": [str(UDP_PORT)]},
                            {"protocol": "icmp"},
                        ],
                    }
                ],
            }
        ],
    )


def wg_quick_config(s: Setup) -> str:
    return (
        "[Interface]\n"
        f"PrivateKey = {s.client_keys.private}\n"
        f"Address = {CLIENT_IP}/32\n"
        "MTU = 1280\n\n"
        "[Peer]\n"
        f"PublicKey = {s.gw_keys.public}\n"
        f"PresharedKey = {s.psk}\n"
        f"Endpoint = {s.topo.gateway_ip}:51820\n"
        f"AllowedIPs = {GW_IP}/32, {s.topo.resource_net}\n"
    )


def client_config(s: Setup, resources: list[str]) -> str:
    """The client's TOML: the one gateway (ours or wireguard-go, same key and address)."""
    gateway = {
        "public_key": s.gw_keys.public,
        "endpoint": f"{s.topo.gateway_ip}:51820",
        "preshared_key": s.psk,
        "resources": resources,
    }
    return client_toml(s.client_keys.private, CLIENT_IP, [gateway])


def wait_for_server(s: Setup) -> None:
    def up() -> bool:
        out = s.topo.resource.run(["ss", "-Htln", f"sport = :{HTTP_PORT}"], check=False).stdout
        return bool(out.strip())

    wait_for(up, timeout=5, what="http server")


def counters(agent: Agent) -> dict[str, int]:
    for line in reversed(agent.log().splitlines()):
        doc = json.loads(line)
        if "counters" in doc:
            result: dict[str, int] = doc["counters"]
            return result
    raise AssertionError(f"no counters logged:\n{agent.log()}")


def assert_allowed_and_denied(s: Setup) -> None:
    """The contract of one authorization: allowed host/port/icmp pass, everything else is
    refused with ICMP administratively prohibited."""
    c = s.topo.client
    wait_for_server(s)
    assert c.probe("icmp", ALLOWED_HOST) == {"reply": True, "from": ALLOWED_HOST}
    got = c.probe("fetch", ALLOWED_HOST, str(HTTP_PORT), "/blob")
    assert got["status"].endswith("200 OK")
    assert (got["bytes"], got["sha256"]) == (2 * 1024 * 1024, s.payload_sha)
    # A port of the allowed host that the filter does not list (a server does listen there).
    assert c.probe("connect", ALLOWED_HOST, str(OTHER_PORT)) == {
        "ok": False,
        "error": "EHOSTUNREACH",
    }
    # A host that is not a resource at all.
    assert c.probe("connect", OTHER_HOST, str(HTTP_PORT)) == {"ok": False, "error": "EHOSTUNREACH"}
    denied = c.probe("icmp", OTHER_HOST)
    assert (denied["type"], denied["code"]) == (ICMP_DEST_UNREACH, ICMP_ADMIN_PROHIBITED)


def test_wireguard_go_client_reaches_only_its_authorized_resource_through_our_gateway(
    setup: Setup,
) -> None:
    s = setup
    gw = start_agent(s.lab, s.topo.gateway, "gateway", gateway_config(s))
    s.lab.wg_quick_up(s.topo.client, wg_quick_config(s))
    assert_allowed_and_denied(s)

    # Spoofing: a datagram whose source is not the peer's tunnel address must not get through,
    # while the very same datagram with the right source does (so the probe itself works).
    # The listener stops at the datagram tagged #last, sent after the forged ones on the same path.
    listener = s.topo.resource.probe_background("udp-listen", str(UDP_PORT), "15")
    s.topo.client.probe("raw-udp", "100.64.0.77", ALLOWED_HOST, str(UDP_PORT))
    s.topo.client.probe("raw-udp", "10.201.0.2", ALLOWED_HOST, str(UDP_PORT))
    s.topo.client.probe("raw-udp", CLIENT_IP, ALLOWED_HOST, str(UDP_PORT), "#last")
    out, _ = listener.communicate(timeout=20)
    heard = json.loads(out.decode().strip().splitlines()[-1])
    assert heard["payloads"] == [f"from {CLIENT_IP}#last"], heard
    # masqueraded: the resource sees the gateway, and needs no route back to the tunnel
    assert heard["sources"] == [s.topo.gateway_lan_ip]

    assert gw.terminate() == 0
    assert counters(gw)["dropped_spoofed"] == 2


def test_our_client_talks_both_ways_with_a_wireguard_go_server(setup: Setup) -> None:
    s = setup
    gw_ns = s.topo.gateway
    wg = s.lab.wireguard_go(
        gw_ns,
        address=f"{GW_IP}/32",
        keys=s.gw_keys,
        listen_port=51820,
        peers=[WgPeer(s.client_keys.public, [f"{CLIENT_IP}/32"], preshared_key=s.psk)],
        routes=[f"{CLIENT_IP}/32"],
    )
    gw_ns.sysctl("net.ipv4.ip_forward", "1")
    gw_ns.run(
        ["nft", "-j", "-f", "-"],
        input=json.dumps({"nftables": masquerade_ruleset("fzwgsrv", wg.ifname)}),
    )
    config = client_config(s, [s.topo.resource_net])
    client = start_agent(s.lab, s.topo.client, "client", config)
    echoed = s.topo.client.probe("echo", ALLOWED_HOST, str(OTHER_PORT), str(512 * 1024))
    assert echoed == {"sent": 512 * 1024, "received": 512 * 1024, "equal": True}
    assert s.topo.client.probe("icmp", ALLOWED_HOST)["reply"] is True
    # wireguard-go completed a handshake with us and counted traffic in both directions
    assert wg.latest_handshakes()[s.client_keys.public] > 0
    rx, tx = wg.transfer()[s.client_keys.public]
    assert rx > 512 * 1024 and tx > 512 * 1024
    # nothing outside the configured resources is routed into the tunnel
    assert s.topo.client.probe("connect", "10.203.0.1", "80", "1")["error"] in (
        "ENETUNREACH",
        "EHOSTUNREACH",
    )
    assert client.terminate() == 0
    assert not s.topo.client.link_exists(client.ifname)


@pytest.mark.parametrize(
    ("signum", "io_mode"),
    [(signal.SIGINT, None)] + [(signal.SIGTERM, mode) for mode in MODES],
)
def test_a_signal_removes_the_tun_device_and_the_nft_table(
    setup: Setup, signum: int, io_mode: str | None
) -> None:
    s = setup
    gw = start_agent(s.lab, s.topo.gateway, "gateway", gateway_config(s), io_mode=io_mode)
    table = f"fz_{gw.ifname}"
    assert s.topo.gateway.link_exists(gw.ifname)
    assert s.topo.gateway.run(["nft", "list", "table", "inet", table], check=False).returncode == 0
    forwarding = s.topo.gateway.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
    assert forwarding == "1"

    gw.process.send_signal(signum)
    assert gw.process.wait(timeout=5) == 0
    assert not s.topo.gateway.link_exists(gw.ifname)
    assert s.topo.gateway.run(["nft", "list", "table", "inet", table], check=False).returncode != 0


@pytest.mark.parametrize("io_mode", MODES)
def test_our_client_through_our_gateway(setup: Setup, io_mode: str) -> None:
    s = setup
    start_agent(s.lab, s.topo.gateway, "gateway", gateway_config(s), io_mode=io_mode)
    # the client routes the whole LAN; the gateway decides what is allowed
    config = client_config(s, [s.topo.resource_net])
    start_agent(s.lab, s.topo.client, "client", config, io_mode=io_mode)
    assert_allowed_and_denied(s)


def test_a_client_routing_everything_keeps_its_gateway_endpoint_out_of_the_tunnel(
    setup: Setup,
) -> None:
    s = setup
    start_agent(s.lab, s.topo.gateway, "gateway", gateway_config(s))
    config = client_config(s, ["internet"])
    client = start_agent(s.lab, s.topo.client, "client", config)
    routes = s.topo.client.run(["ip", "route"]).stdout
    assert f"0.0.0.0/1 dev {client.ifname}" in routes
    assert f"128.0.0.0/1 dev {client.ifname}" in routes
    assert f"{s.topo.gateway_ip} dev {s.topo.client_if}" in routes
    # traffic flows, so the encrypted datagrams did not loop back into the tunnel
    assert s.topo.client.probe("icmp", ALLOWED_HOST) == {"reply": True, "from": ALLOWED_HOST}
    assert client.terminate() == 0
    assert s.topo.gateway_ip not in s.topo.client.run(["ip", "route"]).stdout
