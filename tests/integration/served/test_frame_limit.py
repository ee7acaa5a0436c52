"""One frame-size limit (agents.protocol.MAX_FRAME_BYTES) on a real served portal (daphne)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from accounts.models import Account
from agents import protocol as p
from gateways import services

from .conftest import ServedPortal, http_get, settled

pytestmark = pytest.mark.django_db(transaction=True)


async def open_socket(portal: ServedPortal, secret: str, external_id: str) -> ClientConnection:
    query = urlencode(
        {
            "external_id": external_id,
            "name": external_id,
            "public_key": services.generate_key_pair()[1],
            "version": "0.1.0",
            "protocol": "1",
        }
    )
    return await connect(
        f"{portal.ws_url}/gateway/websocket?{query}",
        additional_headers={"Authorization": f"Bearer {secret}"},
        max_size=None,
        ping_interval=None,
        compression=None,
        open_timeout=10,
    )


async def next_frame(ws: ClientConnection) -> dict[str, Any]:
    while True:
        frame = json.loads(await ws.recv())
        if frame["type"] != "heartbeat_reply":
            return frame  # type: ignore[no-any-return]


async def test_it_accepts_a_frame_of_the_limit_and_closes_1009_one_byte_over(
    served_portal: ServedPortal, acme: Account
) -> None:
    _site, issued = await database_sync_to_async(services.create_site_with_token)(acme, name="F")
    ws = await open_socket(served_portal, issued.secret, "gw-frames")
    try:
        assert (await next_frame(ws))["type"] == "init"
        # Exactly the limit passes the server (daphne's own default would drop it at 1 MiB): the
        # consumer gets it and answers that it is no JSON message, and the socket stays open.
        await ws.send("x" * p.MAX_FRAME_BYTES)
        answer = await next_frame(ws)
        assert answer["type"] == "error" and answer["code"] == "invalid_message"
        await ws.send(p.dump(p.Heartbeat()))
        assert json.loads(await ws.recv())["type"] == "heartbeat_reply"
        # One byte over: a websocket close with 1009 (message too big), not a silent TCP drop.
        await ws.send("x" * (p.MAX_FRAME_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009
    finally:
        await ws.close()
    # The portal is still up: plain HTTP and a new gateway connection work.
    assert served_portal.alive()
    assert http_get(served_portal.port, "/healthz")[0] == 200
    again = await open_socket(served_portal, issued.secret, "gw-frames")
    try:
        assert (await next_frame(again))["type"] == "init"
    finally:
        await again.close()
    await settled("gw-frames")
