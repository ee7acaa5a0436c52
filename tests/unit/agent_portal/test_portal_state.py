"""Portal message -> data plane command logic (sans-IO), checked against a real GatewayCore."""

from __future__ import annotations

import base64
import os
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

import pytest

from agents import protocol as p
from agents.gateway import portal_state as ps
from agents.gateway.core import GatewayCore
from agents.net import build
from agents.net.filter import FORWARD, REJECT, Filter, PortRange
from agents.wireguard.device import Device

NOW = 1_750_000_000.0  # unix seconds
WALL_OFFSET = NOW - 100.0  # monotonic 100.0 == NOW


def key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def raw(k: str) -> bytes:
    return base64.b64decode(k)


def resource(address: str = "10.0.0.0/24", rtype: str = "cidr", **kw: object) -> p.Resource:
    filters = kw.get("filters", ())
    rid = kw.get("rid", uuid.uuid4())
    return p.Resource(id=rid, type=rtype, address=address, filters=filters)  # type: ignore[arg-type]


def static_peer(n: int, *resources: p.Resource, pub: str | None = None) -> p.StaticPeer:
    return p.StaticPeer(
        public_key=pub or key(),
        preshared_key=key(),
        ipv4=IPv4Address(f"100.64.3.{n}"),
        ipv6=IPv6Address(f"fd00:2021:1111::3:{n}"),
        resources=resources,
    )


def authorization(
    n: int, res: p.Resource, *, client: str | None = None, expires: float | None = None
) -> p.Authorization:
    return p.Authorization(
        id=uuid.uuid4(),
        client_public_key=client or key(),
        preshared_key=key(),
        client_ipv4=IPv4Address(f"100.64.1.{n}"),
        client_ipv6=IPv6Address(f"fd00:2021:1111::1:{n}"),
        resource=res,
        expires_at=None if expires is None else datetime.fromtimestamp(expires, UTC),
    )


def init(
    *, statics: tuple[p.StaticPeer, ...] = (), auths: tuple[p.Authorization, ...] = ()
) -> p.Init:
    return p.Init(
        gateway_id=uuid.uuid4(),
        ipv4=IPv4Address("100.64.0.1"),
        ipv6=IPv6Address("fd00:2021:1111::1"),
        static_peers=statics,
        authorizations=auths,
    )


class Agent:
    """GatewayState + a real GatewayCore, the way the portal client drives them."""

    def __init__(self) -> None:
        self.state = ps.GatewayState()
        self.core = GatewayCore(Device(os.urandom(32)))

    def send(self, message: p.PortalMessage, now: float = NOW) -> ps.Step:
        step = self.state.handle(message, now)
        ps.apply(self.core, step.commands, WALL_OFFSET)
        self.state.commit(step)
        return step

    def verdict(
        self, peer: str, src: str, dst: str, port: int = 443, mono: float = 100.0
    ) -> object:
        return self.core.firewall.decide_outbound(raw(peer), build.tcp(src, dst, 40000, port), mono)


# --- init and retain-only re-init -------------------------------------------------------------


def test_init_installs_static_peers_and_authorizations() -> None:
    agent = Agent()
    res = resource("10.0.0.0/24")
    sp = static_peer(9, res)
    auth = authorization(2, resource("10.1.0.5", "ip"))
    step = agent.send(init(statics=(sp,), auths=(auth,)))
    assert step.replies == []
    assert agent.verdict(sp.public_key, "100.64.3.9", "10.0.0.7") is FORWARD
    assert agent.verdict(sp.public_key, "100.64.3.9", "10.1.0.5") is REJECT
    assert agent.verdict(auth.client_public_key, "100.64.1.2", "10.1.0.5") is FORWARD
    assert agent.verdict(auth.client_public_key, "100.64.1.2", "10.0.0.7") is REJECT
    assert agent.state.ipv4 == IPv4Address("100.64.0.1")


def test_reinit_keeps_listed_removes_omitted_and_adds_new_without_touching_kept() -> None:
    agent = Agent()
    kept = static_peer(1, resource())
    dropped = static_peer(2, resource("10.2.0.0/24"))
    kept_auth = authorization(3, resource("10.3.0.1", "ip"))
    dropped_auth = authorization(4, resource("10.4.0.1", "ip"))
    agent.send(init(statics=(kept, dropped), auths=(kept_auth, dropped_auth)))

    new_peer = static_peer(5, resource("10.5.0.0/24"))
    step = agent.send(init(statics=(kept, new_peer), auths=(kept_auth,)))

    touched = {getattr(c, "public_key", None) for c in step.commands}
    assert raw(kept.public_key) not in touched  # retained as is: no command at all
    assert raw(kept_auth.client_public_key) not in touched
    assert ps.RemovePeer(raw(dropped.public_key)) in step.commands
    assert ps.RemovePeer(raw(dropped_auth.client_public_key)) in step.commands
    peers = set(agent.core.firewall.peers())
    assert peers == {
        raw(kept.public_key),
        raw(kept_auth.client_public_key),
        raw(new_peer.public_key),
    }
    assert agent.verdict(new_peer.public_key, "100.64.3.5", "10.5.0.1") is FORWARD
    assert agent.verdict(dropped.public_key, "100.64.3.2", "10.2.0.1") is not FORWARD


def test_identical_reinit_produces_no_commands() -> None:
    agent = Agent()
    message = init(statics=(static_peer(1, resource()),), auths=(authorization(2, resource()),))
    agent.send(message)
    assert agent.send(message).commands == []


def test_init_skips_expired_and_refuses_dns_authorizations_with_an_error() -> None:
    agent = Agent()
    old = authorization(1, resource(), expires=NOW - 1)
    dns = authorization(2, resource("app.example.com", "dns"))
    step = agent.send(init(auths=(old, dns)))
    assert agent.core.firewall.peers() == []
    assert step.replies == [p.Error("authorization_failed", step.replies[0].reason, dns.id)]  # type: ignore[union-attr]
    assert "dns" in step.replies[0].reason  # type: ignore[union-attr]


# --- incremental messages ------------------------------------------------------------------


def test_create_authorization_adds_peer_and_acks() -> None:
    agent = Agent()
    agent.send(init())
    auth = authorization(7, resource("10.9.0.0/16"), expires=NOW + 60)
    step = agent.send(p.CreateAuthorization(auth))
    assert step.replies == [p.AuthorizationAck(auth.id)]
    assert agent.verdict(auth.client_public_key, "100.64.1.7", "10.9.3.3") is FORWARD
    # the expiry is converted to the data plane's monotonic clock (NOW == mono 100)
    assert agent.verdict(auth.client_public_key, "100.64.1.7", "10.9.3.3", mono=161.0) is REJECT


def test_create_authorization_for_dns_resource_answers_error_and_changes_nothing() -> None:
    agent = Agent()
    agent.send(init())
    auth = authorization(7, resource("*.example.com", "dns"))
    step = agent.send(p.CreateAuthorization(auth))
    assert step.commands == []
    assert isinstance(step.replies[0], p.Error) and step.replies[0].authorization_id == auth.id
    assert agent.core.firewall.peers() == []


def test_reject_access_revokes_and_removes_a_client_without_flows() -> None:
    agent = Agent()
    client = key()
    a1 = authorization(7, resource("10.1.0.1", "ip"), client=client)
    a2 = authorization(7, resource("10.2.0.1", "ip"), client=client)
    agent.send(init(auths=(a1, a2)))

    step = agent.send(p.RejectAccess(authorization_ids=(a1.id, uuid.uuid4())))
    assert step.commands == [ps.Revoke(raw(client), str(a1.id))]
    assert agent.verdict(client, "100.64.1.7", "10.1.0.1") is REJECT
    assert agent.verdict(client, "100.64.1.7", "10.2.0.1") is FORWARD

    step = agent.send(p.RejectAccess(authorization_ids=(a2.id,)))
    assert step.commands == [ps.RemovePeer(raw(client))]
    assert agent.core.firewall.peers() == []


def test_reject_access_by_client_and_resource_covers_flows_and_static_peers() -> None:
    agent = Agent()
    res = resource("10.0.0.0/24")
    other = resource("10.7.0.0/24")
    sp = static_peer(1, res, other)
    auth = authorization(2, res)
    agent.send(init(statics=(sp,), auths=(auth,)))

    agent.send(p.RejectAccess(client_public_key=sp.public_key, resource_id=res.id))
    assert agent.verdict(sp.public_key, "100.64.3.1", "10.0.0.1") is REJECT
    assert agent.verdict(sp.public_key, "100.64.3.1", "10.7.0.1") is FORWARD
    assert agent.verdict(auth.client_public_key, "100.64.1.2", "10.0.0.1") is FORWARD

    agent.send(p.RejectAccess(client_public_key=auth.client_public_key, resource_id=res.id))
    assert not agent.core.firewall.has_peer(raw(auth.client_public_key))


def test_resource_updated_changes_filters_for_flows_and_static_peers_without_revoking() -> None:
    agent = Agent()
    res = resource("10.0.0.0/24")
    sp = static_peer(1, res)
    auth = authorization(2, res)
    agent.send(init(statics=(sp,), auths=(auth,)))
    narrowed = p.Resource(res.id, "cidr", res.address, (Filter("tcp", (PortRange(22, 22),)),))

    step = agent.send(p.ResourceUpdated(narrowed))
    assert not any(isinstance(c, ps.RemovePeer | ps.Revoke) for c in step.commands)
    for peer, src in ((sp.public_key, "100.64.3.1"), (auth.client_public_key, "100.64.1.2")):
        assert agent.verdict(peer, src, "10.0.0.1", port=22) is FORWARD
        assert agent.verdict(peer, src, "10.0.0.1", port=443) is REJECT


def test_add_static_peer_replaces_resources_and_remove_static_peer_removes_it() -> None:
    agent = Agent()
    agent.send(init())
    wide = static_peer(4, resource("10.0.0.0/24"), resource("10.8.0.0/24"))
    agent.send(p.AddStaticPeer(wide))
    assert agent.verdict(wide.public_key, "100.64.3.4", "10.8.0.1") is FORWARD

    narrow = static_peer(4, resource("10.0.0.0/24", rid=wide.resources[0].id), pub=wide.public_key)
    step = agent.send(p.AddStaticPeer(narrow))
    assert not any(isinstance(c, ps.RemovePeer) for c in step.commands)
    assert agent.verdict(wide.public_key, "100.64.3.4", "10.8.0.1") is REJECT
    assert agent.verdict(wide.public_key, "100.64.3.4", "10.0.0.1") is FORWARD

    agent.send(p.RemoveStaticPeer(wide.public_key))
    assert agent.core.firewall.peers() == []
    assert agent.send(p.RemoveStaticPeer(key())).commands == []  # unknown: ignored


def test_static_peer_with_no_resources_is_kept_without_access() -> None:
    agent = Agent()
    sp = static_peer(1)
    agent.send(init(statics=(sp,)))
    assert agent.core.firewall.has_peer(raw(sp.public_key))
    assert agent.verdict(sp.public_key, "100.64.3.1", "10.0.0.1") is REJECT


def test_changed_preshared_key_updates_the_peer_and_keeps_its_grants() -> None:
    agent = Agent()
    sp = static_peer(1, resource())
    agent.send(init(statics=(sp,)))
    rekeyed = p.StaticPeer(sp.public_key, key(), sp.ipv4, sp.ipv6, sp.resources)
    step = agent.send(p.AddStaticPeer(rekeyed))
    assert [type(c) for c in step.commands] == [ps.AddPeer]
    assert agent.verdict(sp.public_key, "100.64.3.1", "10.0.0.1") is FORWARD


def test_expire_forgets_flows_whose_time_passed() -> None:
    agent = Agent()
    auth = authorization(1, resource(), expires=NOW + 10)
    agent.send(init(auths=(auth,)))
    assert agent.state.expire(NOW + 5).commands == []
    step = agent.state.expire(NOW + 10)
    assert step.commands == [ps.RemovePeer(raw(auth.client_public_key))]


def test_an_uncommitted_step_leaves_the_wanted_state_unchanged() -> None:
    state = ps.GatewayState()
    state.commit(state.handle(init(), NOW))
    step = state.handle(p.CreateAuthorization(authorization(1, resource())), NOW)
    # not committed: the next identical message yields the same commands again
    again = state.handle(p.CreateAuthorization(authorization(1, resource())), NOW)
    assert len(step.commands) == len(again.commands) == 2


def test_commands_never_contain_secrets_in_repr() -> None:
    sp = static_peer(1, resource())
    step = ps.GatewayState().handle(init(statics=(sp,)), NOW)
    text = repr(step.commands)
    assert base64.b64encode(raw(sp.preshared_key)).decode() not in text
    assert "preshared_key" not in text


# --- reconnect decisions ----------------------------------------------------------------------


def test_backoff_grows_exponentially_with_jitter_and_caps_at_60_s() -> None:
    lows = ps.Backoff(rng=lambda: 0.0)
    highs = ps.Backoff(rng=lambda: 1.0)
    low = [lows.next_delay() for _ in range(10)]
    high = [highs.next_delay() for _ in range(10)]
    assert high[:7] == [1, 2, 4, 8, 16, 32, 60]
    assert low[:3] == [0.5, 1, 2]
    assert max(high) == 60 and min(low) > 0
    highs.reset()
    assert highs.next_delay() == 1


@pytest.mark.parametrize(
    ("code", "retry"),
    [
        (p.CloseCode.UNAUTHORIZED, False),
        (p.CloseCode.BAD_PARAMETERS, False),
        (p.CloseCode.REPLACED, False),
        (p.CloseCode.INCOMPATIBLE_VERSION, False),
        (p.CloseCode.GATEWAY_REMOVED, False),
        (p.CloseCode.TOO_MANY_GATEWAYS, False),
        (p.CloseCode.HEARTBEAT_TIMEOUT, True),
        (p.CloseCode.ACCOUNT_DISABLED, True),
        (1001, True),
        (1009, True),  # a frame over MAX_FRAME_BYTES: reconnect (the agent never sends one)
        (1011, True),
        (None, True),
    ],
)
def test_after_close_follows_the_close_code_table(code: int | None, retry: bool) -> None:
    decision = ps.after_close(code, ps.Backoff(rng=lambda: 0.5))
    assert decision.retry is retry


def test_a_disabled_account_is_retried_at_the_cap() -> None:
    backoff = ps.Backoff(rng=lambda: 0.0)
    assert ps.after_close(p.CloseCode.ACCOUNT_DISABLED, backoff).delay == 30.0
    assert ps.after_close(1001, ps.Backoff(rng=lambda: 0.0)).delay == 0.5


def test_heartbeat_sends_every_interval_and_declares_dead_after_three_missed_replies() -> None:
    hb = ps.Heartbeat(interval=10)
    hb.start(0.0)
    assert hb.poll(5.0) is None
    assert [hb.poll(t) for t in (10.0, 20.0, 30.0)] == ["send"] * 3
    assert hb.poll(35.0) is None
    assert hb.poll(40.0) == "dead"


def test_heartbeat_reply_resets_the_missed_count() -> None:
    hb = ps.Heartbeat(interval=10)
    hb.start(0.0)
    for t in (10.0, 20.0, 30.0):
        assert hb.poll(t) == "send"
        hb.on_reply()
    assert hb.poll(40.0) == "send"
