"""The gateway websocket endpoint (``/gateway/websocket``), protocol v1 (docs/protocol.md).

Thin by design: parse the connect parameters and frames into typed values, call services (in the
database thread), serialize. The only state kept here is the connection's own: which gateway it
holds, which groups it joined, when it last heard from the agent (the heartbeat watchdog).

Close codes cannot carry a reason through every ASGI server (daphne drops it), so before closing
the consumer sends an ``error`` frame whose ``code`` names the close code and whose ``reason``
says what was wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from agents import protocol
from firezone_site.logsafe import escaped
from gateways import clients, configs, presence, queries, services

log = logging.getLogger(__name__)

#: Presence (last_seen_at) is written at most this often per connection; the stale-gateway sweep
#: allows three heartbeat timeouts, far more than this.
PRESENCE_WRITE_INTERVAL_S = 15.0
#: State digests run on a thread of their own (with its own database connection), so a burst of
#: heartbeats from many gateways never queues ahead of the consumers' other database calls
#: (connects, presence) in Channels' single database thread; a connection whose previous digest
#: is still running gets a reply without one.
_DIGEST_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fz-digest")

#: Channel-layer group memberships expire (channels_redis group_expiry, one day by default);
#: long-lived sockets re-join well before that.
GROUP_REFRESH_INTERVAL_S = 3600.0

_PRINTABLE = re.compile(r"^[\x21-\x7e][\x20-\x7e]*$")


def _refuse(code: protocol.CloseCode, reason: str) -> services.GatewayRefused:
    return services.GatewayRefused(code, reason)


_valid_endpoint = configs.valid_endpoint


def parse_connect_params(query_string: bytes) -> services.GatewayParams:
    """Validate the query parameters; raises GatewayRefused (4005 / 4002) naming the problem."""
    try:
        raw = parse_qs(query_string.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise _refuse(protocol.CloseCode.BAD_PARAMETERS, "query string is not UTF-8") from exc

    def one(name: str, *, max_len: int = 255, required: bool = True) -> str:
        values = raw.get(name, [])
        if len(values) > 1:
            raise _refuse(protocol.CloseCode.BAD_PARAMETERS, f"{name}: given more than once")
        value = values[0].strip() if values else ""
        if not value:
            if required:
                raise _refuse(protocol.CloseCode.BAD_PARAMETERS, f"{name}: missing")
            return ""
        if len(value) > max_len or not _PRINTABLE.match(value):
            raise _refuse(
                protocol.CloseCode.BAD_PARAMETERS,
                f"{name}: at most {max_len} printable ASCII characters",
            )
        return value

    version_text = one("protocol", max_len=8)
    if not version_text.isdigit() or int(version_text) not in protocol.SUPPORTED_PROTOCOL_VERSIONS:
        supported = ", ".join(str(v) for v in sorted(protocol.SUPPORTED_PROTOCOL_VERSIONS))
        raise _refuse(
            protocol.CloseCode.INCOMPATIBLE_VERSION,
            f"protocol {version_text!r} is not supported; this portal speaks {supported}",
        )
    external_id = one("external_id")
    name = one("name")
    public_key = one("public_key", max_len=44)
    if not protocol.valid_public_key(public_key):
        raise _refuse(protocol.CloseCode.BAD_PARAMETERS, "public_key: expected base64 of 32 bytes")
    version = one("version", max_len=64)
    endpoint = one("endpoint", max_len=100, required=False)
    if endpoint and not _valid_endpoint(endpoint):
        raise _refuse(
            protocol.CloseCode.BAD_PARAMETERS, "endpoint: expected host:port or [ipv6]:port"
        )
    return services.GatewayParams(
        external_id=external_id,
        name=name,
        public_key=public_key,
        version=version,
        endpoint=endpoint,
    )


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str:
    for key, value in headers:
        if key.lower() == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
    raise _refuse(protocol.CloseCode.UNAUTHORIZED, "missing Authorization: Bearer <token> header")


class GatewayConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    gateway_id: uuid.UUID | None = None
    account_id: uuid.UUID | None = None  # both set once connect() authenticated the gateway
    _heartbeats = 0
    _digest_task: asyncio.Task[None] | None = None
    _last_resync = -float("inf")

    async def connect(self) -> None:
        self._closed = False
        self._joined: list[str] = []
        self._watchdog: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        self._last_presence = loop.time()
        self._last_join = loop.time()
        self._digest_cache = queries.DigestCache()
        # Accept first: only an accepted websocket can be closed with a 4000-range code.
        await self.accept()
        client = self.scope.get("client")
        remote_ip = client[0] if client else None
        try:
            params = parse_connect_params(self.scope.get("query_string", b""))
            secret = bearer_token(self.scope.get("headers", []))
            gateway = await database_sync_to_async(services.connect_gateway)(
                secret=secret, params=params, remote_ip=remote_ip, channel_name=self.channel_name
            )
        except services.GatewayRefused as exc:
            await self._close(exc.code, exc.reason)
            return
        self.gateway_id = gateway.pk
        self.account_id = gateway.account_id
        assert gateway.last_token_id is not None
        self._joined = [
            presence.gateway_group(gateway.pk),
            presence.site_group(gateway.site_id),
            presence.account_group(gateway.account_id),
            presence.token_group(gateway.last_token_id),
        ]
        await self._join()
        init = await database_sync_to_async(queries.init_message)(gateway, timezone.now())
        await self.send(text_data=protocol.dump(init))
        self._watchdog = loop.create_task(self._watch())

    async def _join(self) -> None:
        for group in self._joined:
            await self.channel_layer.group_add(group, self.channel_name)
        self._last_join = asyncio.get_running_loop().time()

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

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self._closed or self.gateway_id is None:
            return
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        try:
            message = protocol.parse_message(
                text_data if text_data is not None else (bytes_data or b""), sender="gateway"
            )
        except protocol.ProtocolError as exc:
            await self.send(text_data=protocol.dump(protocol.Error("invalid_message", exc.reason)))
            return
        if isinstance(message, protocol.Heartbeat):
            await self._reply_to_heartbeat()
            if loop.time() - self._last_presence >= PRESENCE_WRITE_INTERVAL_S:
                self._last_presence = loop.time()
                await self._heartbeat()
            if loop.time() - self._last_join >= GROUP_REFRESH_INTERVAL_S:
                await self._join()
        elif isinstance(message, protocol.AuthorizationAck):
            await self._answered(message.authorization_id, ok=True)
        elif isinstance(message, protocol.PeerStats):
            await database_sync_to_async(services.record_peer_stats)(self.gateway_id, message.peers)
        elif isinstance(message, protocol.ResyncRequest):
            await self._resync()
        elif isinstance(message, protocol.Error):
            if message.authorization_id is not None:  # it could not install that flow
                await self._answered(message.authorization_id, ok=False)
            # Both strings come from the agent: escaped, so a reason cannot forge log lines.
            log.warning(
                "gateway %s reported %s: %s",
                self.gateway_id,
                escaped(message.code),
                escaped(message.reason),
            )

    async def _answered(self, authorization_id: uuid.UUID, *, ok: bool) -> None:
        assert self.gateway_id is not None and self.account_id is not None
        # Off the shared database thread: acks of many gateways are answered in parallel.
        envelopes = await database_sync_to_async(clients.gateway_answered, thread_sensitive=False)(
            self.account_id, self.gateway_id, authorization_id, ok=ok
        )
        try:
            await presence.send_async(envelopes)
        except Exception:  # the client's request then times out and fails closed
            log.exception("could not forward the answer for authorization %s", authorization_id)

    async def _reply_to_heartbeat(self) -> None:
        """Answer at once, or - when this heartbeat carries the state digest - from a task of its
        own: the consumer handles one message at a time, and a push (a revocation) must never
        wait for a digest query queued behind other connections' in the database thread."""
        every = int(settings.FZ_STATE_DIGEST_EVERY)
        self._heartbeats += 1
        busy = self._digest_task is not None and not self._digest_task.done()
        if every <= 0 or self._heartbeats % every or busy or self.account_id is None:
            await self.send(text_data=protocol.dump(protocol.HeartbeatReply()))
            return
        self._digest_task = asyncio.get_running_loop().create_task(self._send_digest())

    async def _send_digest(self) -> None:
        digest = await self._state_digest()
        if not self._closed:
            with contextlib.suppress(Exception):  # the socket may be closing
                await self.send(text_data=protocol.dump(protocol.HeartbeatReply(digest)))

    async def _state_digest(self) -> str | None:
        assert self.gateway_id is not None and self.account_id is not None
        try:
            digest: str | None = await database_sync_to_async(
                queries.state_digest, thread_sensitive=False, executor=_DIGEST_EXECUTOR
            )(self.account_id, self.gateway_id, timezone.now(), self._digest_cache)
        except DatabaseError:  # the reply still proves liveness; the next one carries a digest
            log.warning("no state digest for gateway %s (database error)", self.gateway_id)
            return None
        return digest

    async def _resync(self) -> None:
        """Send ``init`` again (the agent found its state digest differs from ours). At most
        one per half heartbeat interval: the agent backs off itself, this bounds a bad one."""
        if self.gateway_id is None or self.account_id is None:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_resync < float(settings.FZ_HEARTBEAT_INTERVAL_S) / 2:
            return
        self._last_resync = loop.time()
        init = await database_sync_to_async(queries.gateway_init)(
            self.account_id, self.gateway_id, timezone.now()
        )
        if init is not None:
            log.info("gateway %s asked for a resync", self.gateway_id)
            await self.send(text_data=protocol.dump(init))

    async def _heartbeat(self) -> None:
        assert self.gateway_id is not None
        result = await database_sync_to_async(services.gateway_heartbeat)(
            self.gateway_id, self.channel_name
        )
        if result == services.HeartbeatResult.REMOVED:
            await self._close(protocol.CloseCode.GATEWAY_REMOVED, "the gateway was deleted")
        elif result == services.HeartbeatResult.REPLACED:
            await self._close(
                protocol.CloseCode.REPLACED, "another connection for this gateway took over"
            )

    # --- channel layer events (presence.PUSH / presence.CLOSE) -----------------------------------

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
        with contextlib.suppress(Exception):  # the peer may already be gone
            await self.send(
                text_data=protocol.dump(protocol.Error(code=code.name.lower(), reason=reason))
            )
        # Presence first: once the agent sees the close, the portal already shows it offline.
        await self._cleanup()
        await self.close(code=int(code), reason=reason)

    async def disconnect(self, code: int) -> None:
        await self._cleanup()

    async def _cleanup(self) -> None:
        if getattr(self, "_cleaned", False):
            return
        self._cleaned = True
        self._closed = True
        for name in ("_watchdog", "_digest_task"):
            task = getattr(self, name, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        for group in getattr(self, "_joined", []):
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(group, self.channel_name)
        self._joined = []
        gateway_id, self.gateway_id = self.gateway_id, None
        if gateway_id is not None:
            await database_sync_to_async(services.disconnect_gateway)(gateway_id, self.channel_name)
