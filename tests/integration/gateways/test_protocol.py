"""The wire protocol: round trips and the errors parse_message raises (no database)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

import pytest

from agents import protocol as p

KEY = "mTtWgm2s0eNw0cJwSg5T0XxqO0AzUj9aCk3fQm1i4Fs="
PSK = "3q2+7z0lGmYl8bN0t2hQy0qv9cV8cQw0Qp3b8oXk7Vw="


def resource() -> p.Resource:
    return p.Resource(
        id=uuid.uuid4(),
        type="cidr",
        address="10.0.0.0/24",
        filters=(p.Filter("tcp", (p.PortRange(443, 443), p.PortRange(8000, 8080))),),
    )


def authorization() -> p.Authorization:
    return p.Authorization(
        id=uuid.uuid4(),
        client_public_key=KEY,
        preshared_key=PSK,
        client_ipv4=IPv4Address("100.64.0.2"),
        client_ipv6=IPv6Address("fd00:2021:1111::2"),
        resource=resource(),
        expires_at=datetime(2030, 1, 1, 17, 0, tzinfo=UTC),
    )


ALL_MESSAGES: list[p.Message] = [
    p.Init(
        gateway_id=uuid.uuid4(),
        ipv4=IPv4Address("100.64.0.1"),
        ipv6=IPv6Address("fd00:2021:1111::1"),
        static_peers=(
            p.StaticPeer(
                KEY, PSK, IPv4Address("100.64.0.3"), IPv6Address("fd00:2021:1111::3"), (resource(),)
            ),
        ),
        authorizations=(authorization(),),
    ),
    p.CreateAuthorization(authorization()),
    p.RejectAccess(authorization_ids=(uuid.uuid4(), uuid.uuid4())),
    p.RejectAccess(client_public_key=KEY, resource_id=uuid.uuid4()),
    p.ResourceUpdated(resource()),
    p.AddStaticPeer(
        p.StaticPeer(KEY, PSK, IPv4Address("100.64.0.3"), IPv6Address("fd00:2021:1111::3"), ())
    ),
    p.RemoveStaticPeer(KEY),
    p.HeartbeatReply(),
    p.TokenRotated(token="fzg_abc_def", grace_until=datetime(2030, 1, 1, tzinfo=UTC)),
    p.Heartbeat(),
    p.AuthorizationAck(uuid.uuid4()),
    p.Error("authorization_failed", "no route", uuid.uuid4()),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: p.Message) -> None:
    text = p.dump(message)
    assert json.loads(text)["type"] == message.TYPE
    assert p.parse_message(text) == message


def test_it_refuses_messages_from_the_wrong_side() -> None:
    with pytest.raises(p.ProtocolError, match="unknown message type 'init' from the gateway"):
        p.parse_message(p.dump(ALL_MESSAGES[0]), sender="gateway")
    with pytest.raises(p.ProtocolError, match="heartbeat"):
        p.parse_message('{"type": "heartbeat"}', sender="portal")
    assert p.parse_message('{"type": "heartbeat"}', sender="gateway") == p.Heartbeat()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        ('{"no": "type"}', "type: missing"),
        ('{"type": "bogus"}', "unknown message type"),
        ('{"type": "remove_static_peer", "public_key": "short"}', "public_key"),
        ('{"type": "authorization_ack", "authorization_id": "nope"}', "not a UUID"),
        ('{"type": "reject_access", "authorization_ids": []}', "nothing to reject"),
        ('{"type": "reject_access", "resource_id": "' + str(uuid.uuid4()) + '"}', "together"),
        (
            '{"type": "resource_updated", "resource": {"id": "'
            + str(uuid.uuid4())
            + '", "type": "cidr", "address": "10.0.0.0/8", "filters": [{"protocol": "sctp"}]}}',
            "protocol",
        ),
        (
            '{"type": "resource_updated", "resource": {"id": "'
            + str(uuid.uuid4())
            + '", "type": "cidr", "address": "10.0.0.0/8", '
            '"filters": [{"protocol": "tcp", "ports": ["0"]}]}}',
            "1-65535",
        ),
        (
            '{"type": "resource_updated", "resource": {"id": "'
            + str(uuid.uuid4())
            + '", "type": "ip", "address": "10.0.0.0/8"}}',
            "single address",
        ),
        ('{"type": "token_rotated", "token": "x", "grace_until": "yesterday"}', "ISO 8601"),
    ],
)
def test_it_raises_one_error_type_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(p.ProtocolError) as info:
        p.parse_message(text)
    assert reason in info.value.reason


def test_it_ignores_unknown_members_for_forward_compatibility() -> None:
    assert p.parse_message('{"type": "heartbeat", "future": 1}') == p.Heartbeat()


def test_keys_must_be_32_bytes_of_base64() -> None:
    assert p.valid_public_key(KEY)
    assert not p.valid_public_key(KEY[:-2] + "==")  # 31 bytes
    assert not p.valid_public_key("!" * 44)
    assert not p.valid_public_key(None)


def test_close_codes_say_whether_to_retry() -> None:
    assert not p.CloseCode.UNAUTHORIZED.retry
    assert not p.CloseCode.REPLACED.retry
    assert not p.CloseCode.INCOMPATIBLE_VERSION.retry
    assert p.CloseCode.HEARTBEAT_TIMEOUT.retry
    assert p.CloseCode.ACCOUNT_DISABLED.retry


def test_token_rotated_keeps_the_secret_out_of_repr() -> None:
    assert "fzg_secret" not in repr(p.TokenRotated(token="fzg_secret", grace_until=None))
