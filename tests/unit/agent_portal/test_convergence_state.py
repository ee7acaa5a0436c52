"""State digests and resync decisions of the agent (sans-IO: messages stepped by hand)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address

from agents import protocol as p
from agents.gateway import portal_state as ps

from .test_portal_state import NOW, authorization, resource, static_peer


def init(peers: tuple[p.StaticPeer, ...] = (), auths: tuple[p.Authorization, ...] = ()) -> p.Init:
    return p.Init(
        gateway_id=uuid.uuid4(),
        ipv4=IPv4Address("100.64.0.1"),
        ipv6=IPv6Address("fd00:2021:1111::1"),
        static_peers=peers,
        authorizations=auths,
        heartbeat_interval_s=1.0,
    )


def step(state: ps.GatewayState, message: p.PortalMessage, now: float = NOW) -> ps.Step:
    result = state.handle(message, now)
    state.commit(result)
    return result


def reply(state: ps.GatewayState, digest: str, now: float = NOW) -> list[p.GatewayMessage]:
    return step(state, p.HeartbeatReply(digest), now).replies


def test_the_digest_ignores_order_and_matches_the_portals_view() -> None:
    r1, r2 = resource("10.0.0.0/24"), resource("10.9.0.0/24")
    a, b = authorization(1, r1), authorization(2, r2)
    sp = static_peer(3, r1, r2)
    portal = p.state_digest([sp], [a, b])
    assert portal == p.state_digest([replace(sp, resources=(r2, r1))], [b, a])
    state = ps.GatewayState()
    step(state, init((sp,), (a,)))
    step(state, p.CreateAuthorization(b))
    assert state.state_digest(NOW) == portal
    assert reply(state, portal) == []


def test_a_lost_reject_access_is_noticed_and_a_resync_repairs_it() -> None:
    r = resource()
    revoked, kept = authorization(1, r), authorization(2, r)
    state = ps.GatewayState()
    step(state, init(auths=(revoked, kept)))
    portal = p.state_digest([], [kept])  # the portal revoked one; its push never arrived
    asked = reply(state, portal)
    assert asked == [p.ResyncRequest(state.state_digest(NOW))]
    repaired = step(state, init(auths=(kept,)))
    assert [type(c) for c in repaired.commands] == [ps.RemovePeer]  # only the revoked client
    assert set(state.wanted.authorizations) == {kept.id}
    assert reply(state, portal, NOW + 1) == []


def test_a_mismatch_the_resync_does_not_fix_backs_off() -> None:
    state = ps.GatewayState()
    step(state, init())
    other = "0" * 64
    times = [NOW + t for t in range(0, 40)]
    sent = [t for t in times if reply(state, other, t)]
    # 1 s heartbeats: resyncs at +0, +1, +3, +7, +15, +31 (pause doubles up to 32 intervals)
    assert [t - NOW for t in sent] == [0, 1, 3, 7, 15, 31]
    assert state.resyncs == 6
    assert reply(state, state.state_digest(NOW + 40), NOW + 40) == []
    assert reply(state, other, NOW + 41), "a match resets the pause"


def test_no_digest_from_an_older_portal_means_no_resync() -> None:
    state = ps.GatewayState()
    step(state, init(auths=(authorization(1, resource()),)))
    assert step(state, p.HeartbeatReply()).replies == []


def test_what_the_gateway_cannot_enforce_still_counts_in_the_digest() -> None:
    dns = resource("*.corp.example", "dns")
    cidr = resource("10.0.0.0/24")
    unsupported = authorization(1, dns)
    sp = static_peer(2, cidr, dns)
    state = ps.GatewayState()
    first = step(state, init((sp,), (unsupported,)))
    assert [e.code for e in first.replies if isinstance(e, p.Error)] == ["authorization_failed"]
    assert unsupported.id not in state.wanted.authorizations  # not enforced ...
    assert reply(state, p.state_digest([sp], [unsupported])) == []  # ... but no resync loop
    later = authorization(3, dns)
    step(state, p.CreateAuthorization(later))
    assert reply(state, p.state_digest([sp], [unsupported, later])) == []


def test_expired_flows_leave_the_digest_at_their_expiry() -> None:
    r = resource()
    short = authorization(1, r, expires=NOW + 5)
    state = ps.GatewayState()
    step(state, init(auths=(short,)))
    assert state.state_digest(NOW) == p.state_digest([], [short])
    assert state.state_digest(NOW + 5) == p.state_digest([], [])
    state.commit(state.expire(NOW + 6))
    assert state.mirror.authorizations == {}
    assert reply(state, p.state_digest([], []), NOW + 6) == []


def test_incremental_messages_keep_the_mirror_in_step_with_the_portal() -> None:
    r = resource("10.0.0.0/24")
    sp = static_peer(1, r)
    a = authorization(2, r)
    state = ps.GatewayState()
    step(state, init((sp,), (a,)))
    narrowed = replace(r, filters=(p.Filter("tcp", (p.PortRange(22, 22),)),))
    step(state, p.ResourceUpdated(narrowed))
    step(state, p.RemoveStaticPeer(sp.public_key))
    sp2 = static_peer(3, narrowed)
    step(state, p.AddStaticPeer(sp2))
    step(state, p.RejectAccess(authorization_ids=(a.id,)))
    assert state.state_digest(NOW) == p.state_digest([sp2], [])
    # and a message that was lost shows: the portal also removed sp2
    assert reply(state, p.state_digest([], [])) != []


def test_resync_request_round_trips_on_the_wire() -> None:
    digest = "a" * 64
    assert p.parse_message(p.dump(p.ResyncRequest(digest)), sender="gateway") == p.ResyncRequest(
        digest
    )
    assert p.parse_message('{"type":"resync_request"}', sender="gateway") == p.ResyncRequest()
    assert p.parse_message(p.dump(p.HeartbeatReply(digest)), sender="portal") == p.HeartbeatReply(
        digest
    )
    assert p.parse_message('{"type":"heartbeat_reply"}', sender="portal") == p.HeartbeatReply()
    for bad in ('"x"', "1", '"' + "A" * 64 + '"'):
        try:
            p.parse_message('{"type":"heartbeat_reply","state_digest":' + bad + "}")
        except p.ProtocolError as exc:
            assert "state_digest" in exc.reason
        else:
            raise AssertionError(f"{bad} accepted")
