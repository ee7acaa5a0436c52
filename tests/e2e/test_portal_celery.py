"""The portal's periodic jobs end to end: a real Celery worker and beat (the settings' Redis broker
and beat schedule) next to daphne, on the test database, and a real gateway agent in a namespace
carrying a dynamic client's flows (a wg-quick client holding the device's key).

What the expiry job adds on top of the gateway's own enforcement: the agent stops forwarding an
expired flow by itself (the firewall checks ``expires_at`` per packet, a sweep every second drops
it from the agent's state), and beat's ``expire-authorizations`` run (every 10 s) revokes the row
(audit trail: reason "expired") and pushes ``reject_access`` for exactly that flow. The agent
processes it without touching the client's other flow; it only changes the agent's state when
beat's run came before the agent's own sweep (the test reports which one removed the flow).
Figures (printed and recorded as user properties): expiry -> row revoked by the worker, revoked
-> reject_access processed by the agent, expiry -> reject_access processed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from .netns import Lab, NetNS, unique_name, wait_for
from .portal_lab import (
    FORBIDDEN_IP,
    RESOURCE_IP,
    CeleryProcesses,
    GatewayAgent,
    Portal,
    build_site,
    probe,
    start_bridge,
    start_gateway,
    unavailable,
    wait_online,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
_reason = unavailable()
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

# Long enough to check the flow works before it expires, short enough to keep the test fast.
EXPIRES_IN_S = 3.0
# Worker pick-up + the push to the agent on a busy 2-core machine; the schedule interval is added.
SLACK_S = 3.0


@pytest.fixture
def celery(transactional_db: None, portal: Portal, tmp_path: Any) -> Iterator[CeleryProcesses]:
    # Function scope: a beat running while other test modules use the same database would
    # revoke their expired authorizations behind their backs.
    processes = CeleryProcesses({**portal.env(), "DATABASE_CONN_MAX_AGE": "0"}, tmp_path)
    try:
        processes.start()  # they boot while the lab is built
        yield processes
    finally:
        processes.stop()


@pytest.fixture
def lab(transactional_db: None, portal: Portal) -> Iterator[Lab]:
    with Lab("fzc") as the_lab:
        yield the_lab


def _icmp(ns: NetNS, ip: str) -> dict[str, Any]:
    return probe(ns, "icmp", ip, "1")


def _refused(answer: dict[str, Any]) -> bool:
    """The gateway answered "administratively prohibited" (ICMP 3/13)."""
    return not answer["reply"] and (answer.get("type"), answer.get("code")) == (3, 13)


def _rejections(agent: GatewayAgent, auth_id: str) -> list[dict[str, Any]]:
    return [
        e
        for e in agent.events()
        if e.get("msg") == "reject_access"
        and auth_id in str(e.get("authorization_ids", "")).split(",")
    ]


def test_the_beat_expiry_job_revokes_an_expired_flow_and_the_agent_gets_reject_access_for_it(
    celery: CeleryProcesses, lab: Lab, portal: Portal, record_property: Any
) -> None:
    from django.conf import settings
    from django.utils import timezone

    from accounts import services as accounts
    from accounts.models import Actor
    from gateways import queries as gateway_queries
    from gateways import services as gateways
    from gateways.models import Authorization, ClientDevice
    from policies import services as policies
    from policies.models import Policy, Resource

    job = settings.CELERY_BEAT_SCHEDULE["expire-authorizations"]
    assert job["task"] == "gateways.expire_authorizations"
    interval = float(job["schedule"])

    account = accounts.create_account(name="E2E Celery", slug=f"e2ec-{unique_name('a', 30)}")
    user = accounts.create_actor(account, email="u@e2e.test", name="User", type=Actor.Type.USER)
    group = accounts.create_group(account, name="Engineering")
    accounts.add_member(group, user)
    site = gateways.create_site(account, name="Lab")
    server = policies.create_resource(
        account, name="server", kind="ip", address=RESOURCE_IP, site=site
    )
    short = policies.create_resource(
        account, name="short-lived", kind="ip", address=FORBIDDEN_IP, site=site
    )
    server_policy = policies.create_policy(account, group=group, resource=server)
    short_policy = policies.create_policy(account, group=group, resource=short)
    token = gateways.issue_gateway_token(site).secret

    topo = build_site(lab, gateways=1)
    host = topo.gateways[0]
    start_bridge(lab, host, portal.socket_path)
    gw = start_gateway(lab, host, token, external_id=unique_name("gwc", 30))
    row = wait_online(account, gw.external_id)

    # A dynamic client's device and flows. There is no client-connect service yet, so the test
    # writes the rows that flow will write and pushes them the way it will
    # (push_create_authorization), as benchmarks/revocation.py does.
    private_key, public_key = gateways.generate_key_pair()
    addresses = gateways.allocate_tunnel_address(account)
    device = ClientDevice.objects.create(
        account=account,
        actor=user,
        kind=ClientDevice.Kind.DYNAMIC,
        external_id="laptop",
        name="laptop",
        public_key=public_key,
        address=addresses.slot,
        ipv4=addresses.ipv4,
        ipv6=addresses.ipv6,
        verified_at=timezone.now(),
    )

    def authorize(resource: Resource, policy: Policy, lifetime: timedelta) -> Authorization:
        auth = Authorization.objects.create(
            account=account,
            actor=user,
            actor_email=user.email,
            device=device,
            resource=resource,
            resource_name=resource.name,
            resource_address=resource.address,
            policy=policy,
            gateway=row,
            expires_at=timezone.now() + lifetime,
        )
        gateways.push_create_authorization(auth)
        wait_for(
            lambda: any(
                e.get("msg") == "create_authorization"
                and e.get("authorization_id") == str(auth.pk)
                and int(e.get("changes", 0)) > 0
                for e in gw.events()
            ),
            timeout=5,
            what=f"the agent installed the {resource.name} flow",
        )
        return auth

    lasting = authorize(server, server_policy, timedelta(hours=1))
    psk = gateway_queries.derive_preshared_key(
        gateway_queries.key_secret(account.pk), device.pk, row.pk
    )
    lab.wg_quick_up(
        topo.client,
        f"[Interface]\nPrivateKey = {private_key}\nAddress = {device.ipv4}/32\nMTU = 1280\n\n"
        f"[Peer]\nPublicKey = {row.public_key}\nPresharedKey = {psk}\n"
        f"Endpoint = {host.client_ip}:51820\nAllowedIPs = {RESOURCE_IP}/32, {FORBIDDEN_IP}/32\n",
    )
    wait_for(lambda: _icmp(topo.client, RESOURCE_IP)["reply"], timeout=10, what="server reachable")
    assert _refused(_icmp(topo.client, FORBIDDEN_IP)), "no flow to the short-lived resource yet"

    celery.wait_ready()
    expiring = authorize(short, short_policy, timedelta(seconds=EXPIRES_IN_S))
    assert expiring.expires_at is not None
    expires_at = expiring.expires_at.timestamp()
    assert _icmp(topo.client, FORBIDDEN_IP)["reply"], "the flow works before its expiry"
    assert time.time() < expires_at, "setup ran past the expiry: raise EXPIRES_IN_S"
    expiring.refresh_from_db()
    assert expiring.revoked_at is None

    # The gateway enforces the expiry on its own, before any job runs.
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)
    assert _refused(_icmp(topo.client, FORBIDDEN_IP)), "the expired flow still forwards"

    # Beat's next run of the job (its first: one interval after beat started) has the worker
    # revoke the row; the service pushes reject_access for it to the gateway.
    def revoked() -> bool:
        expiring.refresh_from_db()
        return expiring.revoked_at is not None

    try:
        wait_for(revoked, timeout=interval + 10, interval=0.05, what="the worker revoked the row")
        wait_for(lambda: _rejections(gw, str(expiring.pk)), timeout=5, what="reject_access")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{celery.logs()}\n--- agent ---\n{gw.log()}") from exc
    assert expiring.revoke_reason == "expired"
    assert expiring.revoked_at is not None
    revoked_at = expiring.revoked_at.timestamp()
    # The revocation is pushed on commit, inside the task: the worker logs "succeeded" only after
    # the task returns, which can be a moment after the agent already saw reject_access.
    succeeded = re.compile(
        r"Task gateways\.expire_authorizations\[[0-9a-f-]+\] succeeded in \S+s: 1\b"
    )
    try:
        wait_for(lambda: succeeded.search(celery.worker_log()), timeout=5, what="task succeeded")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{celery.logs()}") from exc
    assert "Sending due task expire-authorizations" in celery.beat_log()

    (reject,) = _rejections(gw, str(expiring.pk))
    assert reject["authorization_ids"] == str(expiring.pk), "only the expired flow is rejected"
    assert reject["peers"] == 1, "the client's peer stays for its other flow"
    # Processing the rejection did not overreach: the client's other flow still works.
    assert _icmp(topo.client, RESOURCE_IP)["reply"]
    assert _refused(_icmp(topo.client, FORBIDDEN_IP))
    lasting.refresh_from_db()
    assert lasting.revoked_at is None
    assert not _rejections(gw, str(lasting.pk))

    to_revoked = revoked_at - expires_at
    to_applied = float(reject["ts"]) - revoked_at
    total = float(reject["ts"]) - expires_at
    # Which removed the flow from the agent's state: its own expiry sweep (every 1 s) or,
    # when beat's run came first, the reject_access.
    by = "reject_access" if int(reject["changes"]) > 0 else "the agent's expiry sweep"
    if by != "reject_access":
        assert any(
            e.get("msg") == "authorizations expired" and float(e["ts"]) <= float(reject["ts"])
            for e in gw.events()
        ), "reject_access changed nothing, so the agent's sweep must have dropped the flow"
    print(
        f"\nexpiry -> row revoked by the worker: {to_revoked:.2f} s (beat every {interval:.0f} s); "
        f"revoked -> reject_access processed: {to_applied * 1000:.0f} ms; "
        f"expiry -> reject_access processed: {total:.2f} s (flow state removed by {by})"
    )
    record_property("expiry_to_revoked_s", round(to_revoked, 2))
    record_property("revoked_to_reject_processed_ms", round(to_applied * 1000))
    record_property("expiry_to_reject_processed_s", round(total, 2))
    assert 0 <= to_revoked < interval + SLACK_S
    assert 0 <= to_applied < 2.0
