"""Client protocol v1 (agents/protocol.py): every message round-trips, bad frames are refused
with a reason naming the field, and each direction only accepts its own types."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address

import pytest

from agents.protocol import (
    AuthorizationCreated,
    AuthorizationCreationFailed,
    AuthorizationRevoked,
    ClientInit,
    ClientResource,
    CloseCode,
    Error,
    Filter,
    Heartbeat,
    HeartbeatReply,
    Init,
    Message,
    PortRange,
    ProtocolError,
    Relay,
    RequestAuthorization,
    ResourceCreatedOrUpdated,
    ResourceDeleted,
    dump,
    parse_message,
    versions_compatible,
)

KEY = "mTtWgm2s0eNw0cJwSg5T0XxqO0AzUj9aCk3fQm1i4Fs="
PSK = "3q2+7z0lGmYl8bN0t2hQy0qv9cV8cQw0Qp3b8oXk7Vw="
RID = uuid.UUID("6a0c1a9e-7f6d-4c3e-8a8e-2f3b4c5d6e7f")
SID = uuid.UUID("1b2c3d4e-5f60-4172-8394-a5b6c7d8e9f0")
GID = uuid.UUID("8d6f2a8e-3f0c-4a53-9b1e-1e1f0f7c2d11")

RESOURCE = ClientResource(
    id=RID,
    type="cidr",
    address="10.0.0.0/24",
    name="intranet",
    site_id=SID,
    address_description="http://10.0.0.5",
    filters=(Filter(protocol="tcp", ports=(PortRange(443, 443),)),),
)

TO_CLIENT: list[Message] = [
    ClientInit(
        client_id=uuid.uuid4(),
        ipv4=IPv4Address("100.64.1.2"),
        ipv6=IPv6Address("fd00:2021:1111::102"),
        resources=(RESOURCE,),
        relays=(Relay("turn:198.51.100.9:3478", "u", "p", None),),
    ),
    ResourceCreatedOrUpdated(RESOURCE),
    ResourceDeleted(RID),
    AuthorizationCreated(
        authorization_id=uuid.uuid4(),
        resource_id=RID,
        gateway_id=GID,
        gateway_public_key=KEY,
        gateway_endpoints=("198.51.100.1:51820", "[2001:db8::1]:51820"),
        preshared_key=PSK,
        gateway_ipv4=IPv4Address("100.64.12.7"),
        gateway_ipv6=IPv6Address("fd00:2021:1111::c07"),
        client_ipv4=IPv4Address("100.64.1.2"),
        client_ipv6=IPv6Address("fd00:2021:1111::102"),
        expires_at=datetime(2026, 6, 1, 17, 0, tzinfo=UTC),
    ),
    AuthorizationCreationFailed(RID, "forbidden", ("remote_ip", "remote_ip_location_region")),
    AuthorizationCreationFailed(RID, "offline"),
    AuthorizationRevoked((uuid.uuid4(),)),
    HeartbeatReply(),
    Error("invalid_message", "type: missing"),
]
FROM_CLIENT: list[Message] = [
    RequestAuthorization(RID, (GID,)),
    RequestAuthorization(RID, (), (GID,)),
    RequestAuthorization(RID),
    Heartbeat(),
    Error("bad", "x"),
]


@pytest.mark.parametrize("message", TO_CLIENT, ids=lambda m: m.TYPE)
def test_portal_to_client_messages_round_trip(message: Message) -> None:
    text = dump(message)
    assert parse_message(text, sender="portal_to_client") == message


@pytest.mark.parametrize("message", FROM_CLIENT, ids=lambda m: m.TYPE)
def test_client_messages_round_trip(message: Message) -> None:
    assert parse_message(dump(message), sender="client") == message


def test_a_client_cannot_send_portal_or_gateway_messages() -> None:
    for message in (ResourceDeleted(RID), HeartbeatReply()):
        with pytest.raises(ProtocolError, match="unknown message type"):
            parse_message(dump(message), sender="client")
    with pytest.raises(ProtocolError, match="from the client"):
        ack = json.dumps({"type": "authorization_ack", "authorization_id": str(RID)})
        parse_message(ack, sender="client")


def test_the_client_init_is_not_the_gateway_init() -> None:
    client_init = dump(TO_CLIENT[0])
    with pytest.raises(ProtocolError, match="gateway_id"):
        parse_message(client_init, sender="portal")
    assert isinstance(parse_message(client_init, sender="portal_to_client"), ClientInit)
    assert not isinstance(parse_message(client_init, sender="portal_to_client"), Init)


def test_request_authorization_wire_form_and_defaults() -> None:
    text = dump(RequestAuthorization(RID, (GID,)))
    assert json.loads(text) == {
        "type": "request_authorization",
        "resource_id": str(RID),
        "connected_gateway_ids": [str(GID)],
        "failed_gateway_ids": [],
    }
    bare = parse_message(
        f'{{"type":"request_authorization","resource_id":"{RID}"}}', sender="client"
    )
    assert bare == RequestAuthorization(RID, ())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ({"type": "request_authorization"}, "request_authorization.resource_id"),
        ({"type": "request_authorization", "resource_id": "nope"}, "not a UUID"),
        (
            {
                "type": "request_authorization",
                "resource_id": str(RID),
                "connected_gateway_ids": "x",
            },
            "connected_gateway_ids: expected a list",
        ),
        (
            {
                "type": "request_authorization",
                "resource_id": str(RID),
                "connected_gateway_ids": [str(GID)] * 1001,
            },
            "more than 1000",
        ),
    ],
)
def test_malformed_client_frames_name_the_field(frame: dict[str, object], reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_message(json.dumps(frame), sender="client")


def _created(**override: object) -> str:
    data = json.loads(dump(TO_CLIENT[3]))
    data.update(override)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"gateway_endpoints": []}, "at least one endpoint"),
        ({"gateway_endpoints": ["198.51.100.1"]}, "host:port"),
        ({"gateway_endpoints": ["198.51.100.1:0"]}, "host:port"),
        ({"gateway_endpoints": ["[2001:db8::1:51820"]}, "brackets"),
        ({"preshared_key": "short"}, "preshared_key"),
        ({"gateway_ipv4": "fd00::1"}, "gateway_ipv4"),
        ({"expires_at": "2026-06-01T17:00:00"}, "UTC offset"),
    ],
)
def test_malformed_authorization_created_is_refused(
    override: dict[str, object], reason: str
) -> None:
    with pytest.raises(ProtocolError, match=reason):
        parse_message(_created(**override), sender="portal_to_client")


def test_failure_reasons_are_a_closed_set() -> None:
    for reason in ("not_found", "offline", "forbidden", "version_mismatch"):
        frame = json.dumps(
            {"type": "authorization_creation_failed", "resource_id": str(RID), "reason": reason}
        )
        parsed = parse_message(frame, sender="portal_to_client")
        assert isinstance(parsed, AuthorizationCreationFailed) and parsed.reason == reason
    bad = json.dumps(
        {"type": "authorization_creation_failed", "resource_id": str(RID), "reason": "nope"}
    )
    with pytest.raises(ProtocolError, match="reason"):
        parse_message(bad, sender="portal_to_client")


def test_client_resource_keeps_the_resource_invariants() -> None:
    data = json.loads(dump(ResourceCreatedOrUpdated(RESOURCE)))
    data["resource"]["address"] = "10.0.0.0/24x"
    with pytest.raises(ProtocolError, match="not an IP network"):
        parse_message(json.dumps(data), sender="portal_to_client")
    data["resource"]["address"] = "10.0.0.0/24"
    del data["resource"]["site_id"]
    with pytest.raises(ProtocolError, match="site_id"):
        parse_message(json.dumps(data), sender="portal_to_client")


def test_the_preshared_key_stays_out_of_reprs() -> None:
    assert PSK not in repr(TO_CLIENT[3])


def test_empty_authorization_revoked_is_refused() -> None:
    with pytest.raises(ProtocolError, match="empty"):
        parse_message(
            '{"type":"authorization_revoked","authorization_ids":[]}', sender="portal_to_client"
        )


@pytest.mark.parametrize(
    ("client", "gateway", "ok"),
    [
        ("0.1.0", "0.1.7", True),
        ("0.1.0", "0.2.0", False),
        ("1.2.0", "1.4.1", True),
        ("1.2.0", "2.0.0", False),
        ("v1.0.0-rc1", "1.0.0", True),
        ("garbage", "0.1.0", False),
    ],
)
def test_version_compatibility(client: str, gateway: str, ok: bool) -> None:
    assert versions_compatible(client, gateway) is ok


def test_device_disabled_close_code_does_not_retry() -> None:
    assert int(CloseCode.DEVICE_DISABLED) == 4009
    assert not CloseCode.DEVICE_DISABLED.retry
