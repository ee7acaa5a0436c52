"""The client websocket endpoint (``/client/websocket``), client protocol v1 (docs/protocol.md).

Thin like the gateway's: parse, authenticate, call :mod:`gateways.clients` in the database
thread, serialize. Connection state kept here: the session, the resources the client was last
told about (to send only differences), and the authorizations waiting for their gateway's ack,
each with its fail-closed timer.

Channels dispatches a consumer's messages one at a time, so an ack that arrives while
``request_authorization`` is still being answered is handled after the pending entry exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from agents import protocol
from firezone_site.logsafe import escaped
from gateways import clients, consumers, context, presence, services

log = logging.getLogger(__name__)


class ClientConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    session: clients.ClientSession | None = None

    async def connect(self) -> None:
        self._closed = False
        self._joined: list[str] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._resources: dict[uuid.UUID, protocol.ClientResource] = {}
        self._pending: dict[uuid.UUID, tuple[clients.Pending, asyncio.Task[None]]] = {}
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        self._last_presence = loop.time()
        await self.accept()
        peer = self.scope.get("client")
        headers = self.scope.get("headers", [])
        ip = context.remote_ip(peer[0] if peer else None, headers, settings.FZ_TRUSTED_PROXIES)
        remote_ip = str(ip) if ip is not None else None
        try:
            raw = consumers.parse_connect_params(self.scope.get("query_string", b""))
            params = clients.ClientParams(
                external_id=raw.external_id,
                name=raw.name,
                public_key=raw.public_key,
                version=raw.version,
            )
            secret = consumers.bearer_token(headers)
            session = await database_sync_to_async(clients.connect_client)(
                secret=secret, params=params, remote_ip=remote_ip, channel_name=self.channel_name
            )
        except services.GatewayRefused as exc:
            await self._close(exc.code, exc.reason)
            return
        self.session = session
        self._joined = [
            presence.client_group(session.device_id),
            presence.client_actor_group(session.actor_id),
            presence.client_account_group(session.account_id),
            presence.token_group(session.token_id),
            presence.account_group(session.account_id),
        ]
        for group in self._joined:
            await self.channel_layer.group_add(group, self.channel_name)
        init = await database_sync_to_async(clients.init_message)(session)
        self._resources = {r.id: r for r in init.resources}
        await self.send(text_data=protocol.dump(init))
        self._watchdog = loop.create_task(self._watch())

    async def _watch(self) -> None:
        timeout = float(settings.FZ_HEARTBEAT_TIMEOUT_S)
        loop = asyncio.get_running_loop()
        while not self._closed:
            remaining = self._last_rx + timeout - loop.time()
            if remaining <= 0:
                await self._close(
                    protocol.CloseCode.HEARTBEAT_TIMEOUT, f"nothing received for {timeout:g} s"
                )
                return
            await asyncio.sleep(remaining)

    async def _send(self, message: protocol.Message) -> None:
        if not self._closed:
            await self.send(text_data=protocol.dump(message))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closed or self.session is None:
            return
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        try:
            message = protocol.parse_message(
                text_data if text_data is not None else (bytes_data or b""), sender="client"
            )
        except protocol.ProtocolError as exc:
            await self._send(protocol.Error("invalid_message", exc.reason))
            return
        if isinstance(message, protocol.Heartbeat):
            await self._send(protocol.HeartbeatReply())
            if loop.time() - self._last_presence >= consumers.PRESENCE_WRITE_INTERVAL_S:
                self._last_presence = loop.time()
                held = await database_sync_to_async(clients.client_heartbeat)(
                    self.session, self.channel_name
                )
                if not held:
                    await self._close(
                        protocol.CloseCode.REPLACED, "another connection for this device took over"
                    )
        elif isinstance(message, protocol.RequestAuthorization):
            await self._request(message)
        elif isinstance(message, protocol.Error):
            log.warning(
                "client %s reported %s: %s",
                self.session.device_id,
                escaped(message.code),
                escaped(message.reason),
            )

    async def _request(self, message: protocol.RequestAuthorization) -> None:
        assert self.session is not None
        try:
            # Off the shared database thread (each worker thread has its own connection), so
            # many clients' requests are decided in parallel.
            outcome = await database_sync_to_async(
                clients.request_authorization, thread_sensitive=False
            )(self.session, message)
        except services.GatewayRefused as exc:
            await self._close(exc.code, exc.reason)
            return
        if isinstance(outcome, protocol.AuthorizationCreationFailed):
            await self._send(outcome)
            return
        timer = asyncio.get_running_loop().create_task(self._ack_timeout(outcome))
        self._pending[outcome.authorization_id] = (outcome, timer)
        try:
            await presence.send_async(outcome.push)  # committed: now the gateway may install it
        except Exception:  # the channel layer failed: fail closed now, not after the timeout
            log.exception("create_authorization push failed for %s", outcome.authorization_id)
            entry = self._pending.pop(outcome.authorization_id, None)
            if entry is not None:
                entry[1].cancel()
                await database_sync_to_async(clients.abandon_authorization)(
                    self.session.account_id, outcome.authorization_id, reason="push_failed"
                )
                await self._send(
                    protocol.AuthorizationCreationFailed(outcome.created.resource_id, "offline")
                )

    async def _ack_timeout(self, pending: clients.Pending) -> None:
        await asyncio.sleep(float(settings.FZ_AUTHORIZATION_ACK_TIMEOUT_S))
        if self._pending.pop(pending.authorization_id, None) is None or self.session is None:
            return
        # Fail closed: the gateway drops the half-made flow (reject_access after the commit).
        await database_sync_to_async(clients.abandon_authorization)(
            self.session.account_id, pending.authorization_id, reason="gateway_ack_timeout"
        )
        await self._send(
            protocol.AuthorizationCreationFailed(pending.created.resource_id, "offline")
        )

    # --- channel layer events --------------------------------------------------------------------

    async def client_ack(self, event: dict[str, Any]) -> None:
        entry = self._pending.pop(uuid.UUID(event["authorization_id"]), None)
        if entry is None:
            return  # timed out already, or another connection's
        pending, timer = entry
        timer.cancel()
        if event.get("ok"):
            await self._send(pending.created)
        else:
            await self._send(
                protocol.AuthorizationCreationFailed(pending.created.resource_id, "offline")
            )

    async def client_refresh(self, event: dict[str, Any]) -> None:
        if self._closed or self.session is None:
            return
        current = await database_sync_to_async(clients.visible_resources)(self.session)
        for resource_id in [r for r in self._resources if r not in current]:
            await self._send(protocol.ResourceDeleted(resource_id))
        for resource_id, resource in current.items():
            if self._resources.get(resource_id) != resource:
                await self._send(protocol.ResourceCreatedOrUpdated(resource))
        self._resources = current

    async def gateway_push(self, event: dict[str, Any]) -> None:
        if self._closed:
            return
        for frame in event["frames"]:
            await self.send(text_data=frame)

    async def gateway_close(self, event: dict[str, Any]) -> None:
        await self._close(protocol.CloseCode(event["code"]), str(event.get("reason", "")))

    # --- closing ---------------------------------------------------------------------------------

    async def _close(self, code: protocol.CloseCode, reason: str) -> None:
        if self._closed:
            return
        with contextlib.suppress(Exception):
            await self.send(
                text_data=protocol.dump(protocol.Error(code=code.name.lower(), reason=reason))
            )
        await self._cleanup()
        await self.close(code=int(code), reason=reason)

    async def disconnect(self, code: int) -> None:
        await self._cleanup()

    async def _cleanup(self) -> None:
        if getattr(self, "_cleaned", False):
            return
        self._cleaned = True
        self._closed = True
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None and watchdog is not asyncio.current_task():
            watchdog.cancel()
        session = self.session
        # Requests still waiting for their gateway fail closed: nobody would use them.
        for pending, timer in list(getattr(self, "_pending", {}).values()):
            if timer is not asyncio.current_task():
                timer.cancel()
            if session is not None:
                with contextlib.suppress(Exception):
                    await database_sync_to_async(clients.abandon_authorization)(
                        session.account_id, pending.authorization_id, reason="client_disconnected"
                    )
        self._pending = {}
        for group in getattr(self, "_joined", []):
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)
        self._joined = []
        if session is not None:
            await database_sync_to_async(clients.disconnect_client)(session, self.channel_name)
