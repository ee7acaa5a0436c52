"""Issue 17 in Chromium: a static device registered before its site has any gateway ends with a
working config (checked by a WireGuard handshake and a packet through the gateway's core)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_admin_workflow import nav, settled, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CLIENT_EP = ("198.51.100.7", 40000)
NOW = 1000.0


def parse(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    interface: dict[str, str] = {}
    peers: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line == "[Interface]":
            current = interface
        elif line == "[Peer]":
            current = {}
            peers.append(current)
        else:
            assert current is not None, line
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return interface, peers


def gateway_plane(gateway: Any, private_key: bytes) -> Any:
    """The gateway agent's core, fed the portal's real init for this gateway."""
    from django.utils import timezone

    from agents.gateway import portal_state as ps
    from agents.gateway.core import GatewayCore
    from agents.wireguard.device import Device
    from gateways import queries

    core = GatewayCore(Device(private_key))
    state = ps.GatewayState()
    step = state.handle(queries.init_message(gateway, timezone.now()), 0.0)
    ps.apply(core, step.commands, 0.0)
    state.commit(step)
    return core


def dial(core: Any, config: str, destination: str) -> list[bytes]:
    """Bring the config up against the gateway core in memory; returns what reached the
    gateway's TUN side for one TCP packet to ``destination``."""
    from agents.net import build
    from agents.wireguard.device import Device

    interface, (peer,) = parse(config)
    device = Device(base64.b64decode(interface["PrivateKey"]))
    host, _, port = peer["Endpoint"].rpartition(":")
    gw_ep = (host, int(port))
    gw_pub = base64.b64decode(peer["PublicKey"])
    device.add_peer(gw_pub, preshared_key=base64.b64decode(peer["PresharedKey"]), endpoint=gw_ep)
    source = interface["Address"].split(",")[0].split("/")[0]
    (hello,) = device.encapsulate(gw_pub, build.tcp(source, destination, 40000, 443), NOW)
    out = core.handle_network_input(hello.data, CLIENT_EP, NOW)
    if not out.udp:
        return []  # the gateway does not know this key: no handshake response
    delivered: list[bytes] = []
    for t in device.decapsulate(out.udp[0].data, gw_ep, NOW).transmits:
        delivered += core.handle_network_input(t.data, CLIENT_EP, NOW).tun
    return delivered


def test_a_device_registered_before_any_gateway_ends_with_a_working_config(
    page: Any, live_server: Any, shots: Any, alice: Any, bob: Any, acme: Any
) -> None:
    from accounts import services as accounts
    from gateways import services
    from gateways.models import ClientDevice, Gateway
    from policies import services as policies

    csp_errors: list[str] = []
    page.on(
        "console",
        lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
    )
    base = live_server.url
    sign_in(page, base, "acme/alice@acme.test")
    page.wait_for_selector("h1:has-text('Overview')")

    # A site: the deploy page leads with the token file, and warns that the endpoint is guessed.
    nav(page, "Sites")
    page.click("text=New site")
    page.fill("#id_name", "Berlin")
    page.click("[data-testid=save]")
    page.wait_for_selector("#gateway-token-file")
    token_block = page.inner_text("#gateway-token-file")
    secret = re.search(r"'(fzg_\S+)'", token_block).group(1)  # type: ignore[union-attr]
    assert "--token-file /etc/firezone/gateway-token" in page.inner_text("#gateway-command")
    assert "guesses" in page.inner_text("[data-testid=endpoint-note]")
    shots(page, "deploy")
    site = services.queries.sites(acme).get(name="Berlin")
    resource = policies.create_resource(
        acme, name="Intranet", kind="cidr", address="10.20.0.0/16", site=site
    )
    group = accounts.create_group(acme, name="Engineering")
    accounts.add_member(group, bob)
    policies.create_policy(acme, group=group, resource=resource)

    # The device comes first: its one-time config has no gateway peer, and the page says why.
    nav(page, "Devices")
    page.click("text=Register a device")
    page.fill("#id_actor", "bob@acme.test")
    page.fill("#id_name", "Bob laptop")
    page.click("[data-testid=save]")
    page.wait_for_selector("[data-testid=deploy-gateway-first]")
    first = page.inner_text("#device-config-text")
    assert "[Peer]" not in first and "no gateway yet" in first
    assert "Berlin" in page.inner_text("[data-testid=deploy-gateway-first]")
    shots(page, "registered-without-gateway")
    page.click("text=Go to the device")
    page.wait_for_selector("[data-testid=config-version]")
    assert page.is_visible("[data-testid=deploy-gateway-first]")
    assert page.query_selector("[data-testid=new-config]") is None
    device = ClientDevice.objects.for_account(acme).get(name="Bob laptop")
    first_key = device.public_key

    # Now the gateway, with the token from the deploy page (the real connect service).
    gw_private, gw_public = services.generate_key_pair()
    gateway = services.connect_gateway(
        secret=secret,
        params=services.GatewayParams(
            external_id="gw-berlin-1",
            name="gw-berlin-1",
            public_key=gw_public,
            version="0.1.0",
            endpoint="192.0.2.10:51820",
        ),
        remote_ip="127.0.0.1",
        channel_name="browser-test.channel",
    )
    # The first config has no peer to dial; the user gets a complete one on the device page.
    page.reload()
    page.wait_for_selector("[data-testid=new-config]")
    assert page.query_selector("[data-testid=deploy-gateway-first]") is None
    shots(page, "device-gateway-ready")
    page.click("[data-testid=new-config]")
    page.wait_for_selector("[data-testid=confirm]")
    settled(page)
    page.click("[data-testid=confirm]")
    page.wait_for_selector("#device-config-text")
    assert page.query_selector("[data-testid=deploy-gateway-first]") is None
    with page.expect_download() as download_info:
        page.click("[data-testid=download-new-config]")
    config = Path(download_info.value.path()).read_text()
    assert "[Peer]" in config
    shots(page, "new-config")
    interface, peers = parse(config)
    assert len(peers) == 1 and peers[0]["PublicKey"] == gw_public
    assert peers[0]["Endpoint"] == "192.0.2.10:51820"
    assert peers[0]["AllowedIPs"] == "10.20.0.0/16"
    device.refresh_from_db()
    assert device.public_key != first_key

    # It works: the gateway (fed the portal's current state) completes the handshake and lets
    # the packet to the resource through; a packet elsewhere is dropped.
    gateway.refresh_from_db()
    core = gateway_plane(Gateway.objects.get(pk=gateway.pk), base64.b64decode(gw_private))
    (delivered,) = dial(core, config, "10.20.0.5")
    assert delivered[16:20] == bytes([10, 20, 0, 5])
    assert dial(gateway_plane(gateway, base64.b64decode(gw_private)), config, "10.99.0.1") == []
    # The first config's key, even completed by hand with the new peer section, is refused.
    old_private = parse(first)[0]["PrivateKey"]
    by_hand = config.replace(interface["PrivateKey"], old_private)
    assert dial(gateway_plane(gateway, base64.b64decode(gw_private)), by_hand, "10.20.0.5") == []
    # A reload shows no key again.
    page.reload()
    page.wait_for_selector("[data-testid=config-version]")
    assert interface["PrivateKey"] not in page.content()

    # The gateway reports the handshake (peer_stats): the device page and the overview show it.
    from datetime import UTC, datetime

    from agents import protocol

    stat = protocol.PeerStat(device.public_key, datetime.now(UTC), 2048, 4096, "198.51.100.7:40000")
    assert services.record_peer_stats(gateway.pk, [stat]) == 1
    page.reload()
    activity = page.inner_text("[data-testid=device-activity]")
    assert "gw-berlin-1" in activity and "2.0" in activity and "198.51.100.7:40000" in activity
    nav(page, "Overview")
    assert "Bob laptop" in page.inner_text("[data-testid=static-activity]")
    shots(page, "overview-static-activity")
    assert csp_errors == []
