"""The wire-protocol decoder (`agents.protocol.parse_message`) for both senders.

Documented invalid input: `ProtocolError` (the decoder's contract: it never raises anything else).
Properties: a frame accepted for a sender is one of that sender's message types and is accepted
alike without a sender; `dump` of an accepted message parses back to an equal message and dumps
to the same text (round trip).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from agents import protocol

INVALID: tuple[type[BaseException], ...] = (protocol.ProtocolError,)

_GATEWAY_TYPES = (protocol.Heartbeat, protocol.AuthorizationAck, protocol.Error)
_SENDERS: tuple[Literal["portal", "gateway"], ...] = ("portal", "gateway")


def reset() -> None:
    """Stateless."""


def _parse(frame: str | bytes, sender: Literal["portal", "gateway"] | None) -> object | None:
    try:
        return protocol.parse_message(frame, sender=sender)
    except INVALID:
        return None


def _check_round_trip(message: protocol.Message) -> None:
    text = protocol.dump(message)
    again = protocol.parse_message(text)
    assert again == message, (message, again)
    assert protocol.dump(again) == text


def one_input(data: bytes) -> None:
    frames: list[str | bytes] = [data]
    with contextlib.suppress(UnicodeDecodeError):
        frames.append(data.decode("utf-8"))
    for frame in frames:
        anyone = _parse(frame, None)
        for sender in _SENDERS:
            message = _parse(frame, sender)
            if message is None:
                continue
            assert message == anyone, "a sender-specific parse differs from the general one"
            if sender == "gateway":
                assert isinstance(message, _GATEWAY_TYPES)
        if anyone is not None:
            _check_round_trip(anyone)  # type: ignore[arg-type]


_KEY = "mTtWgm2s0eNw0cJwSg5T0XxqO0AzUj9aCk3fQm1i4Fs="


def seeds() -> Iterator[tuple[str, bytes]]:
    docs = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
    blocks = re.findall(r"```json\n(.*?)```", docs.read_text(encoding="utf-8"), re.S)
    decoder = json.JSONDecoder()
    frames: list[str] = []
    for block in blocks:  # a block may hold several frames one after the other
        rest = block.strip()
        while rest:
            _, end = decoder.raw_decode(rest)
            frames.append(rest[:end])
            rest = rest[end:].strip()
    for i, raw in enumerate(frames):
        name = json.loads(raw)["type"]
        yield f"docs-{i}-{name}", raw.encode()
        if '"..."' in raw:
            # The docs elide keys and ids; the same frame with real values parses.
            filled = raw.replace('"id": "..."', f'"id": "{uuid.UUID(int=i)}"')
            filled = filled.replace('"..."', f'"{_KEY}"')
            yield f"docs-{i}-{name}-filled", filled.encode()
    compact = [
        protocol.Heartbeat(),
        protocol.HeartbeatReply(),
        protocol.Error("invalid_message", "type: missing"),
        protocol.AuthorizationAck(uuid.UUID(int=7)),
        protocol.RemoveStaticPeer(_KEY),
    ]
    for message in compact:
        yield f"dump-{message.TYPE}", protocol.dump(message).encode()
    yield "not-json", b"{type: heartbeat}"
    yield "array", b'[{"type": "heartbeat"}]'
    yield "deep-nesting", b'{"type": "heartbeat", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    yield "utf16", '{"type": "heartbeat"}'.encode("utf-16")
    yield (
        "bad-port",
        (
            b'{"type":"resource_updated","resource":{"id":"r","type":"cidr",'
            b'"address":"10.0.0.0/24","filters":[{"protocol":"tcp","ports":["70000"]}]}}'
        ),
    )
