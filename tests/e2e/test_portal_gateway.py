"""The first vertical slice end to end: portal (daphne + Redis channel layer + PostgreSQL) ->
gateway agent (our userspace WireGuard, in a namespace) <- a standard WireGuard client
(wireguard-go via wg-quick, with the config the portal issued for a static device).

The portal process shares the test database (transactional test: every service call commits) and
the channel-layer prefix with this process, so the services called here push to the agents the
way a web request would. Topology and helpers: tests/e2e/portal_lab.py.

Figures (printed, and attached to the test report as user properties): policy delete -> access
cut, portal restart -> agent reconnected, gateway killed -> device config moved.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .netns import Lab, NetNS, unique_name, wait_for
from .portal_lab import (
    FORBIDDEN_IP,
    RESOURCE_IP,
    TCP_PORT,
    UDP_PORT,
    GatewayAgent,
    Portal,
    build_site,
    gateway_row,
    module_cmd,
    popen_logged,
    probe,
    start_bridge,
    start_gateway,
    udp_probe,
    unavailable,
    wait_online,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

_reason = unavailable()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

PROBE_INTERVAL = 0.01


@pytest.fixture
def lab(transactional_db: None, portal: Portal) -> Iterator[Lab]:
    # Depends on transactional_db so it is torn down (agents stopped) before the tables are.
    with Lab("fzp") as the_lab:
        yield the_lab
    if portal.process is None:  # a test left it stopped
        portal.start()


def _client_config(device: Any, private_key: str) -> tuple[str, int]:
    from gateways import configs

    config = configs.device_config(device)
    text = config.text.replace(configs.PRIVATE_KEY_PLACEHOLDER, private_key)
    return text, config.version


def _with_extra_allowed_ip(config: str, extra: str) -> str:
    """Route one more address into the tunnel, as a modified client would (the gateway, not the
    client's config, has to refuse it)."""
    lines = []
    for line in config.splitlines():
        if line.startswith("AllowedIPs ="):
            line = f"{line}, {extra}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _wg_quick_up(lab: Lab, ns: NetNS, config: str) -> Path:
    lab.wg_quick_up(ns, config)
    return lab.wg_quick_confs[-1][1]


def _reaches(ns: NetNS, ip: str = RESOURCE_IP) -> bool:
    return bool(probe(ns, "icmp", ip, "1")["reply"])


def _cut_after(results: list[dict[str, Any]], t0: float) -> float | None:
    """Seconds from t0 to the first probe after which every probe failed (None: never cut)."""
    last_ok = max((i for i, r in enumerate(results) if r["ok"]), default=-1)
    if last_ok == len(results) - 1:
        return None
    first_failed = results[last_ok + 1]
    return max(0.0, float(first_failed["sent"]) - t0)


def test_portal_drives_the_gateway_end_to_end(
    lab: Lab, portal: Portal, record_property: Any
) -> None:
    from accounts import services as accounts
    from accounts.models import Actor
    from gateways import services as gateways
    from policies import services as policies

    # --- the admin's side: account, user, group, site, resources, policy, gateway token -------
    account = accounts.create_account(name="E2E", slug=f"e2e-{unique_name('a', 30)}")
    user = accounts.create_actor(account, email="u@e2e.test", name="User", type=Actor.Type.USER)
    group = accounts.create_group(account, name="Engineering")
    accounts.add_member(group, user)
    site = gateways.create_site(account, name="Lab")
    allowed = policies.create_resource(
        account, name="server", kind="ip", address=RESOURCE_IP, site=site
    )
    policies.create_resource(account, name="secret", kind="ip", address=FORBIDDEN_IP, site=site)
    policy = policies.create_policy(account, group=group, resource=allowed)
    token = gateways.issue_gateway_token(site).secret

    topo = build_site(lab, gateways=2)
    gw1_host, gw2_host = topo.gateways
    for host in topo.gateways:
        start_bridge(lab, host, portal.socket_path)
    popen_logged(lab, topo.resource, module_cmd("tests.e2e.probes", "echo-server", str(TCP_PORT)),
                 "tcp-echo")  # fmt: skip
    popen_logged(lab, topo.resource, module_cmd("tests.e2e.portal_lab", "udp-echo", str(UDP_PORT)),
                 "udp-echo")  # fmt: skip

    # --- the gateway connects and brings up its data plane ---------------------------------------
    gw1 = start_gateway(lab, gw1_host, token, external_id=unique_name("gwa", 30))
    row1 = wait_online(account, gw1.external_id)
    assert row1.last_seen_endpoint == f"{gw1_host.client_ip}:51820"
    assert token not in gw1.log()

    # --- a static device gets a config pointing at that gateway ----------------------------------
    registered = gateways.register_static_device(user, name="laptop")
    private_key = registered.private_key
    assert private_key is not None
    config = registered.config.text
    assert f"PublicKey = {row1.public_key}" in config
    assert f"Endpoint = {gw1_host.client_ip}:51820" in config
    assert f"AllowedIPs = {RESOURCE_IP}/32" in config
    assert FORBIDDEN_IP not in config
    conf1 = _wg_quick_up(lab, topo.client, _with_extra_allowed_ip(config, f"{FORBIDDEN_IP}/32"))

    # allowed resource: ICMP and TCP work
    wait_for(lambda: _reaches(topo.client), timeout=10, what="resource reachable via gw1")
    assert probe(topo.client, "connect", RESOURCE_IP, str(TCP_PORT))["ok"] is True
    # not allowed (although routed into the tunnel by the client): the gateway refuses
    refused = probe(topo.client, "icmp", FORBIDDEN_IP, "1")
    assert refused["reply"] is False
    assert (refused.get("type"), refused.get("code")) == (3, 13), refused
    assert probe(topo.client, "connect", FORBIDDEN_IP, str(TCP_PORT), "1")["ok"] is False
    # ... while the address itself is up in the resource namespace (the refusal is the gateway's)
    assert probe(gw1_host.ns, "connect", FORBIDDEN_IP, str(TCP_PORT))["ok"] is True

    # --- narrowing the resource's filters applies live (resource_updated), and widening too ------
    allowed = policies.update_resource(
        allowed, filters=[{"protocol": "tcp", "ports": [str(TCP_PORT)]}]
    )

    def icmp_refused() -> bool:
        answer = probe(topo.client, "icmp", RESOURCE_IP, "1")
        return (answer.get("type"), answer.get("code")) == (3, 13)

    wait_for(icmp_refused, timeout=5, what="ICMP refused by the new filters")
    assert probe(topo.client, "connect", RESOURCE_IP, str(TCP_PORT))["ok"] is True
    assert any(e.get("msg") == "resource_updated" for e in gw1.events())
    allowed = policies.update_resource(allowed, filters=[])
    wait_for(lambda: _reaches(topo.client), timeout=5, what="ICMP allowed again")

    # --- the portal goes away: established traffic keeps flowing; the agent reconnects ----------
    channel_before = gateway_row(account, gw1.external_id).channel_name
    run = udp_probe(lab, topo.client, RESOURCE_IP, interval=0.02, seconds=3.0)
    time.sleep(0.3)
    portal.stop()
    time.sleep(2.0)
    outage = run.results()
    assert all(r["ok"] for r in outage), (
        f"{sum(not r['ok'] for r in outage)} of {len(outage)} probes lost while the portal was down"
    )
    assert probe(topo.client, "connect", RESOURCE_IP, str(TCP_PORT))["ok"] is True
    back_at = portal.start()
    wait_for(
        lambda: gateway_row(account, gw1.external_id).channel_name not in ("", channel_before),
        timeout=70,
        what="agent reconnected after the portal restart",
    )
    reconnect = time.time() - back_at
    print(f"portal back -> gateway reconnected: {reconnect:.2f} s")
    record_property("portal_restart_to_reconnect_s", round(reconnect, 2))
    assert gateway_row(account, gw1.external_id).online
    wait_for(
        lambda: any(e.get("msg") == "init" and e.get("reconnect") for e in gw1.events()),
        timeout=5,
        what="the agent applied the reconnect init",
    )
    assert _reaches(topo.client)

    # --- deleting the policy cuts access within a second -----------------------------------------
    run = udp_probe(lab, topo.client, RESOURCE_IP, interval=PROBE_INTERVAL, seconds=2.0)
    time.sleep(0.5)
    t0 = time.time()
    policies.delete_policy(policy)
    t_call = time.time() - t0
    results = run.results()
    before = [r for r in results if r["sent"] < t0]
    assert before and all(r["ok"] for r in before[-20:]), "traffic flowed before the delete"
    cut = _cut_after(results, t0)
    assert cut is not None, "traffic still flowed after the policy was deleted"
    print(
        f"\npolicy delete -> access cut: {cut * 1000:.0f} ms (delete_policy call "
        f"{t_call * 1000:.0f} ms, probe every {PROBE_INTERVAL * 1000:.0f} ms)"
    )
    record_property("policy_delete_to_cut_ms", round(cut * 1000))
    assert cut < 1.0
    assert not _reaches(topo.client)

    # access comes back with a new policy: the gateway gets the device's peer again (the
    # client's old WireGuard session died with the removed peer; the failover below starts a
    # fresh one instead of waiting ~15 s for wireguard-go to re-handshake by itself)
    removed_at = len(gw1.events())
    policy = policies.create_policy(account, group=group, resource=allowed)
    wait_for(
        lambda: any(
            e.get("msg") == "add_static_peer" and e.get("resources") == 1
            for e in gw1.events()[removed_at:]
        ),
        timeout=5,
        what="gw1 got the device back",
    )

    # --- failover: a second gateway in the site takes over the device of a killed one ----------
    gw2 = start_gateway(lab, gw2_host, token, external_id=unique_name("gwb", 30))
    row2 = wait_online(account, gw2.external_id)
    text, version_before = _client_config(registered.device, private_key)
    assert f"PublicKey = {row1.public_key}" in text  # still on gw1: it is online
    killed_at = time.time()
    gw1.process.send_signal(signal.SIGKILL)
    gw1.process.wait(timeout=5)

    def moved() -> bool:
        text, version = _client_config(registered.device, private_key)
        return version > version_before and f"PublicKey = {row2.public_key}" in text

    wait_for(moved, timeout=15, what="device config moved to gw2")
    failover = time.time() - killed_at
    print(f"gateway killed -> device config moved: {failover:.2f} s")
    record_property("gateway_kill_to_config_moved_s", round(failover, 2))
    text, _ = _client_config(registered.device, private_key)
    assert f"Endpoint = {gw2_host.client_ip}:51820" in text
    assert not gateway_row(account, gw1.external_id).online
    topo.client.run(["wg-quick", "down", str(conf1)])
    _wg_quick_up(lab, topo.client, _with_extra_allowed_ip(text, f"{FORBIDDEN_IP}/32"))
    wait_for(lambda: _reaches(topo.client), timeout=10, what="resource reachable via gw2")
    assert probe(topo.client, "connect", RESOURCE_IP, str(TCP_PORT))["ok"] is True
    refused = probe(topo.client, "icmp", FORBIDDEN_IP, "1")
    assert (refused.get("type"), refused.get("code")) == (3, 13), refused
    assert gw2.process.poll() is None


def test_an_agent_with_an_invalid_token_stops_for_good(lab: Lab, portal: Portal) -> None:
    topo = build_site(lab, gateways=1)
    host = topo.gateways[0]
    start_bridge(lab, host, portal.socket_path)
    bogus = "fzg_00000000000000000000000000000000_notavalidsecret"
    agent: GatewayAgent = start_gateway(lab, host, bogus, external_id="bogus", wait_ready=False)
    assert agent.process.wait(timeout=20) == 3
    log = agent.log()
    assert "portal refused the gateway" in log
    assert "notavalidsecret" not in log
    assert '"data plane up"' not in log
