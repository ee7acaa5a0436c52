"""The portal's gateway websocket consumer: frame parse + dispatch (`GatewayConsumer.receive`),
and the connect path's query-string parsing (`parse_connect_params`).

The consumer runs in-process on its own event loop with Django set up (the test settings), as a
connected gateway: the only stand-in is the ASGI transport, whose `send` records the frames. The
periodic presence write and group refresh (database and channel layer, covered by the integration
tests) are kept out of the way by marking them as just done before each frame.

Documented invalid input: a frame the wire protocol refuses (`ProtocolError` inside) is answered
with one ``error`` frame of code ``invalid_message``; nothing may raise out of `receive`.
Properties: every frame sent parses as a portal message; a heartbeat is answered with exactly one
``heartbeat_reply``; an ``authorization_ack`` or ``error`` gets no answer, an ``error`` is logged
once; text and binary frames are handled alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

from agents import protocol

INVALID: tuple[type[BaseException], ...] = ()  # refusals are error frames, never exceptions

_LOOP: asyncio.AbstractEventLoop | None = None
_CONSUMER: Any = None


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _setup() -> tuple[asyncio.AbstractEventLoop, Any]:
    global _LOOP, _CONSUMER
    if _CONSUMER is None:
        from django.conf import settings

        if not settings.configured:
            import django

            import firezone_site.pytest_env  # noqa: F401  (the test environment's defaults)

            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "firezone_site.settings")
            django.setup()
        from gateways.consumers import GatewayConsumer

        class RecordingConsumer(GatewayConsumer):  # type: ignore[misc]
            """A connected gateway whose ASGI transport is a list."""

            async def send(
                self,
                text_data: str | None = None,
                bytes_data: bytes | None = None,
                close: bool = False,
            ) -> None:
                self.sent.append(text_data if text_data is not None else bytes_data)

            async def _answered(self, authorization_id: uuid.UUID, *, ok: bool) -> None:
                # The database side of an ack (forwarding it to the client that asked) is
                # covered by tests/integration/gateways/test_clients.py; here: parsing only.
                self.answered.append((authorization_id, ok))

        consumer = RecordingConsumer()
        consumer.answered = []
        consumer.sent = []
        consumer._closed = False
        consumer.gateway_id = uuid.UUID("8d6f2a8e-3f0c-4a53-9b1e-1e1f0f7c2d11")
        _LOOP = asyncio.new_event_loop()
        _CONSUMER = consumer
    assert _LOOP is not None
    return _LOOP, _CONSUMER


def reset() -> None:
    """Stateless between frames (the consumer keeps only its connection's clocks)."""


def _receive(frame: str | bytes) -> tuple[list[Any], list[logging.LogRecord]]:
    loop, consumer = _setup()
    consumer.sent = []
    now = loop.time()
    consumer._last_rx = consumer._last_presence = consumer._last_join = now
    records = _Records()
    logger = logging.getLogger("gateways.consumers")
    propagate = logger.propagate
    logger.addHandler(records)
    logger.propagate = False  # thousands of inputs per second: keep the console quiet
    try:
        if isinstance(frame, str):
            loop.run_until_complete(consumer.receive(text_data=frame))
        else:
            loop.run_until_complete(consumer.receive(bytes_data=frame))
    finally:
        logger.removeHandler(records)
        logger.propagate = propagate
    return list(consumer.sent), records.records


def _check_connect_params(query_string: bytes) -> None:
    """The connect path's parsing: a query string is accepted or refused with GatewayRefused
    (4002 / 4005 and a reason), never anything else."""
    _setup()
    from gateways.consumers import parse_connect_params
    from gateways.services import GatewayRefused

    try:
        params = parse_connect_params(query_string)
    except GatewayRefused as exc:
        assert exc.code in (
            protocol.CloseCode.BAD_PARAMETERS,
            protocol.CloseCode.INCOMPATIBLE_VERSION,
        ), exc.code
        assert exc.reason
        return
    assert protocol.valid_public_key(params.public_key)
    assert params.external_id and params.name and params.version


def one_input(data: bytes) -> None:
    _check_connect_params(data)
    frames: list[str | bytes] = [data]
    with contextlib.suppress(UnicodeDecodeError):
        frames.append(data.decode("utf-8"))
    for frame in frames:
        sent, records = _receive(frame)
        for out in sent:
            assert isinstance(out, str)
            protocol.parse_message(out, sender="portal")  # raises if the portal sent garbage
        try:
            message = protocol.parse_message(frame, sender="gateway")
        except protocol.ProtocolError as exc:
            assert sent == [protocol.dump(protocol.Error("invalid_message", exc.reason))], sent
            continue
        if isinstance(message, protocol.Heartbeat):
            assert sent == [protocol.dump(protocol.HeartbeatReply())], sent
        elif isinstance(message, protocol.AuthorizationAck):
            assert sent == [], sent
        elif isinstance(message, protocol.ResyncRequest):
            assert sent == [], sent  # this harness's consumer has no account to build init from
        else:
            assert isinstance(message, protocol.Error)
            assert sent == [], sent
            warnings = [r for r in records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, records


def seeds() -> Iterator[tuple[str, bytes]]:
    yield "heartbeat", b'{"type": "heartbeat"}'
    yield "heartbeat-extra-members", b'{"type": "heartbeat", "digest": "abc", "n": 1}'
    auth = b'"authorization_id": "0b5e3c1d-2a4f-4e6b-9c8d-7e6f5a4b3c2d"'
    yield "ack", b'{"type": "authorization_ack", ' + auth + b"}"
    yield "ack-bad-uuid", b'{"type": "authorization_ack", "authorization_id": "nope"}'
    yield (
        "error",
        (
            b'{"type": "error", "code": "authorization_failed", "reason": "unknown resource type",'
            b' "authorization_id": "0b5e3c1d-2a4f-4e6b-9c8d-7e6f5a4b3c2d"}'
        ),
    )
    yield (
        "error-log-injection",
        (
            b'{"type": "error", "code": "x\\nforged", "reason": "line\\n2026-01-01 CRITICAL'
            b' forged \\u001b[31mred\\u001b[0m"}'
        ),
    )
    yield "portal-type-from-gateway", b'{"type": "init"}'
    yield "unknown-type", b'{"type": "shutdown"}'
    yield "empty", b""
    yield "binary-garbage", bytes(range(256))
    yield (
        "connect-query",
        (
            b"external_id=gw-1&name=berlin-1&public_key=mTtWgm2s0eNw0cJwSg5T0XxqO0AzUj9aCk3fQm1i4Fs%3D"
            b"&version=0.1.0&protocol=1&endpoint=%5B2001%3Adb8%3A%3A1%5D%3A51820"
        ),
    )
    yield (
        "connect-query-bad-endpoint",
        (
            b"external_id=gw-1&name=n&public_key=mTtWgm2s0eNw0cJwSg5T0XxqO0AzUj9aCk3fQm1i4Fs%3D"
            b"&version=1&protocol=1&endpoint=gw.example.com%3A%C2%B2"
        ),
    )
