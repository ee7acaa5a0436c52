"""The gateway agent never sends a frame over the protocol's limit (real websockets, loopback)."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from agents import protocol as p
from agents.gateway import portal


async def test_it_refuses_to_send_an_oversized_frame_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[dict[str, object]] = []
    got_small = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for frame in ws:
            received.append(json.loads(frame))
            got_small.set()

    oversized = p.Error("authorization_failed", "x" * p.MAX_FRAME_BYTES)
    small = p.Error("authorization_failed", "small")
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
            with caplog.at_level(logging.ERROR, logger="agents.gateway.portal"):
                await portal.PortalClient._send_all(ws, [oversized, small])
            await asyncio.wait_for(got_small.wait(), 5)
    # Only the small frame went out; the oversized one was logged with its size and the limit.
    assert [frame["reason"] for frame in received] == ["small"]
    [record] = [r for r in caplog.records if "larger than the protocol allows" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.limit == p.MAX_FRAME_BYTES  # type: ignore[attr-defined]
    assert record.bytes > p.MAX_FRAME_BYTES  # type: ignore[attr-defined]
    assert record.type == "error"  # type: ignore[attr-defined]


async def test_a_frame_of_exactly_the_limit_is_sent() -> None:
    received: list[int] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        async for frame in ws:
            received.append(len(frame))
            done.set()

    base = len(p.dump(p.Error("e", "")))
    exact = p.Error("e", "x" * (p.MAX_FRAME_BYTES - base))
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
            await portal.PortalClient._send_all(ws, [exact])
            await asyncio.wait_for(done.wait(), 5)
    assert received == [p.MAX_FRAME_BYTES]
