"""Portal mode of the gateway agent: ``firezone-gateway --portal-url URL --token TOKEN``.

Theory of operation
-------------------
Two threads share one `GatewayCore`:

* the **main thread** runs the data plane (`agents.io.runtime.serve`: TUN device, UDP socket,
  nftables masquerade, IO driver) once the portal's first ``init`` named the gateway's tunnel
  addresses, until SIGTERM/SIGINT or a fatal portal answer;
* the **portal thread** runs an asyncio loop holding the websocket: it connects (bearer token,
  query parameters of docs/protocol.md), feeds every portal message to the sans-IO
  `GatewayState` (agents/gateway/portal_state.py) and applies the resulting commands to the core,
  sends heartbeats, and reconnects with backoff when the socket goes away.

The core is not thread-safe, so `SharedCore` puts one lock around every core call: the IO driver
takes it per packet, or per batch in the offload modes (uncontended, well under a microsecond),
the portal thread takes it to apply a batch of commands - a revocation is effective for the very
next packet (or batch), with no wake-up of the IO loop needed.

While the portal is unreachable nothing changes in the data plane: authorizations stay until they
expire (the firewall checks expiry per packet). A reconnect's ``init`` is diffed against what is
installed (retain-only), the TUN device stays up.

Exit codes: 0 stopped by a signal, 2 bad configuration, 3 the portal refused the gateway for good
(invalid token, replaced by another agent with the same external id, gateway removed, protocol
version not supported) - a service manager should not restart on 3.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from agents import protocol as p
from agents.gateway import portal_state as ps
from agents.gateway.core import GatewayCore, Output
from agents.net.filter import TUNNEL_IPV4, TUNNEL_IPV6
from agents.wireguard.device import Device, Transmit

log = logging.getLogger("agents.gateway.portal")

AGENT_VERSION = "0.1.0"
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_REFUSED = 3
DEFAULT_STATE_DIR = "/var/lib/firezone-gateway"
DEFAULT_LISTEN_PORT = 51820
WEBSOCKET_PATH = "/gateway/websocket"
INIT_TIMEOUT_S = 15.0
EXPIRY_CHECK_S = 1.0  # the firewall refuses expired flows per packet; this only frees them
Endpoint = tuple[str, int]


class ConfigurationError(ValueError):
    """A flag, file or environment variable is wrong; the message says which."""


# --- configuration -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    portal_url: str
    tokens: tuple[str, ...] = field(repr=False)  # candidates, best first
    external_id: str
    name: str
    endpoint: str | None
    listen_port: int
    io_mode: str
    state_dir: Path
    token_file: Path | None
    ifname: str | None = None


def websocket_url(base: str, params: dict[str, str]) -> str:
    """``http(s)://host[:port][/prefix]`` or ``ws(s)://...`` -> the gateway websocket URL."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ConfigurationError(
            f"--portal-url {base!r}: expected http(s)://host[:port] or ws(s)://host[:port]"
        )
    path = parts.path.rstrip("/")
    if not path.endswith(WEBSOCKET_PATH):
        path += WEBSOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, urlencode(params), ""))


def default_external_id(state_dir: Path) -> str:
    """A stable id for this machine: SHA-256 of /etc/machine-id (never the raw id, which is
    meant to stay private), else a random id kept in the state directory."""
    for path in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        with contextlib.suppress(OSError):
            raw = path.read_text().strip()
            if raw:
                return hashlib.sha256(f"firezone-gateway:{raw}".encode()).hexdigest()
    stored = state_dir / "external_id"
    with contextlib.suppress(OSError):
        value = stored.read_text().strip()
        if value:
            return value
    value = uuid.uuid4().hex
    _write_private(stored, value + "\n")
    return value


def _write_private(path: Path, text: str) -> None:
    """Atomically (re)write a 0600 file: a crash leaves the old or the new content."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_or_create_private_key(state_dir: Path) -> bytes:
    """The WireGuard private key from ``<state_dir>/private_key`` (base64), created on first
    start, so the gateway keeps its public key across restarts."""
    path = state_dir / "private_key"
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

        raw = X25519PrivateKey.generate().private_bytes_raw()
        _write_private(path, base64.b64encode(raw).decode() + "\n")
        log.info("generated a new WireGuard key", extra={"path": str(path)})
        return raw
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise ConfigurationError(f"{path}: not a base64 WireGuard key") from exc
    if len(raw) != 32:
        raise ConfigurationError(f"{path}: not a base64 WireGuard key (32 bytes)")
    return raw


def public_key_of(private_key: bytes) -> str:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = X25519PrivateKey.from_private_bytes(private_key).public_key()
    return base64.b64encode(pub.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def _decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts e.g. superscripts, which int() refuses."""
    return text.isascii() and text.isdigit()


def parse_endpoint(text: str) -> str:
    """Validate ``host:port`` / ``[v6]:port``; returns it unchanged."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not _decimal(port) or not 1 <= int(port) <= 65535:
        raise ConfigurationError(f"--endpoint {text!r}: expected host:port or [ipv6]:port")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ConfigurationError(f"--endpoint {text!r}: unbalanced brackets")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise ConfigurationError(f"--endpoint {text!r}: {exc}") from exc
    elif ":" in host:
        raise ConfigurationError(f"--endpoint {text!r}: write IPv6 addresses as [addr]:port")
    return text


def add_portal_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The portal mode's own flags (``firezone-gateway --help`` lists them beside static mode's)."""
    parser.add_argument("--portal-url", metavar="URL", help="e.g. https://portal.example.com")
    parser.add_argument(
        "--token-file", metavar="FILE", type=Path, help="file holding the gateway token (preferred)"
    )
    parser.add_argument(
        "--token", metavar="TOKEN", help="the token itself (visible in ps; prefer --token-file)"
    )
    parser.add_argument(
        "--external-id", metavar="ID", help="stable id (default: hash of /etc/machine-id)"
    )
    parser.add_argument("--name", metavar="NAME", help="display name (default: the hostname)")
    parser.add_argument(
        "--endpoint",
        metavar="HOST:PORT",
        help="where clients reach the WireGuard port (default: guessed by the portal from the "
        "websocket's source address; set it behind NAT or a proxy; an endpoint an admin sets "
        "for the gateway in the portal wins)",
    )
    parser.add_argument(
        "--listen-port",
        metavar="N",
        type=int,
        default=DEFAULT_LISTEN_PORT,
        help=f"WireGuard UDP port (default: {DEFAULT_LISTEN_PORT})",
    )
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        type=Path,
        default=Path(DEFAULT_STATE_DIR),
        help=f"private key, rotated token, external id (default: {DEFAULT_STATE_DIR})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The portal mode alone (``agents.gateway.cli`` builds the combined parser)."""
    from agents.io.runtime import add_runtime_arguments

    parser = argparse.ArgumentParser(
        prog="firezone-gateway",
        description="Gateway agent, controlled by the portal over a websocket.",
    )
    add_portal_arguments(parser)
    add_runtime_arguments(parser, log_level_default=os.environ.get("FIREZONE_LOG_LEVEL", "info"))
    return parser


def options_from_args(args: argparse.Namespace, env: dict[str, str] | os._Environ[str]) -> Options:
    state_dir: Path = args.state_dir
    configured: str | None = None
    token_file: Path | None = args.token_file
    if token_file is not None:
        try:
            configured = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"--token-file {token_file}: {exc.strerror}") from exc
    elif args.token:
        configured = args.token.strip()
    elif env.get("FIREZONE_TOKEN"):
        configured = env["FIREZONE_TOKEN"].strip()
    tokens: list[str] = []
    if token_file is None:
        # A token the portal rotated earlier (kept because there is no token file to rewrite).
        with contextlib.suppress(OSError):
            rotated = (state_dir / "token").read_text().strip()
            if rotated:
                tokens.append(rotated)
    if configured:
        tokens.append(configured)
    if not tokens:
        raise ConfigurationError("no token: pass --token-file FILE, FIREZONE_TOKEN or --token")
    if not 1 <= args.listen_port <= 65535:
        raise ConfigurationError(f"--listen-port {args.listen_port}: expected 1-65535")
    endpoint = parse_endpoint(args.endpoint) if args.endpoint else None
    if endpoint is None:
        # The portal then guesses from the websocket's source address: wrong behind NAT, a
        # proxy, or on loopback, and static devices would get an unreachable Endpoint.
        log.warning(
            "no --endpoint: the portal will guess this gateway's endpoint from the websocket's "
            "source address and port 51820; pass --endpoint HOST:PORT if clients reach it "
            "another way (NAT, proxy, other port), or set the gateway's public endpoint in the "
            "portal (site page), which wins over both",
            extra={"listen_port": args.listen_port},
        )
    if args.ifname:
        from agents.io.tun import validate_name

        try:
            validate_name(args.ifname)
        except ValueError as exc:
            raise ConfigurationError(f"--ifname: {exc}") from exc
    name = args.name or socket.gethostname()
    external_id = args.external_id or default_external_id(state_dir)
    for flag, value in (("--name", name), ("--external-id", external_id)):
        if not 1 <= len(value) <= 255:
            raise ConfigurationError(f"{flag}: 1-255 characters")
    websocket_url(args.portal_url, {})  # validate early
    return Options(
        portal_url=args.portal_url,
        tokens=tuple(dict.fromkeys(tokens)),
        external_id=external_id,
        name=name,
        endpoint=endpoint,
        listen_port=args.listen_port,
        io_mode=args.io_mode,
        state_dir=state_dir,
        token_file=token_file,
        ifname=args.ifname,
    )


# --- the shared core ---------------------------------------------------------------------------


_EncryptBatch = Callable[
    [bytes, list[bytes], float], tuple[Endpoint | None, list[bytes], list[Transmit]]
]


class SharedCore:
    """`GatewayCore` behind one lock, for the IO driver and the portal thread.

    Per packet this costs one uncontended lock and one extra call (~0.5 us measured on the
    2-core test machine); the core's methods are bound once so the wrapper does no lookups.
    """

    __slots__ = (
        "_encrypt",
        "_net",
        "_net_batch",
        "_route",
        "_timeout",
        "_tun",
        "_wall_offset",
        "core",
        "lock",
    )

    def __init__(self, core: GatewayCore, wall_offset: Callable[[], float]) -> None:
        self.core = core
        self.lock = threading.Lock()
        self._wall_offset = wall_offset
        self._net = core.handle_network_input
        self._net_batch = core.handle_network_batch
        self._tun = core.handle_tun_input
        self._timeout = core.handle_timeout
        self._route = core.route
        self._encrypt: _EncryptBatch | None = getattr(core.device, "encrypt_batch", None)

    def handle_network_input(self, data: bytes, source: Endpoint, now: float) -> Output:
        with self.lock:
            return self._net(data, source, now)

    # The offload drivers' batch fast path (see agents/io/engine.py), one lock hold per batch.
    # Between `route` and `encrypt_batch` the portal may revoke the flow; the segments of that
    # one super-packet then still leave, as if read just before the revocation (a removed peer
    # gets nothing: `encrypt_batch` drops packets for unknown peers).

    def handle_network_batch(
        self, datagrams: Sequence[bytes], source: Endpoint, now: float
    ) -> Output:
        with self.lock:
            return self._net_batch(datagrams, source, now)

    def route(self, packet: bytes, now: float) -> bytes | None:
        with self.lock:
            return self._route(packet, now)

    def encrypt_batch(
        self, public_key: bytes, packets: list[bytes], now: float
    ) -> tuple[Endpoint | None, list[bytes], list[Transmit]]:
        if self._encrypt is None:  # a device without the batch path: seal one by one
            udp: list[Transmit] = []
            with self.lock:
                for packet in packets:
                    udp.extend(self.core.device.encapsulate(public_key, packet, now))
            return None, [], udp
        with self.lock:
            return self._encrypt(public_key, packets, now)

    def handle_tun_input(self, packet: bytes, now: float) -> Output:
        with self.lock:
            return self._tun(packet, now)

    def handle_timeout(self, now: float) -> Output:
        with self.lock:
            out = self._timeout(now)
            # The portal state forgets expired flows itself; drop the core's report of them.
            self.core.take_expired()
            return out

    def poll_timeout(self) -> float | None:
        with self.lock:
            return self.core.poll_timeout()

    def peer_stats(self, public_keys: Sequence[str]) -> list[p.PeerStat]:
        """What the WireGuard device knows about these peers (unknown keys are left out)."""
        device = self.core.device
        if not isinstance(device, Device):  # a substitute device keeps no statistics
            return []
        offset = self._wall_offset()
        raw: list[tuple[str, float | None, tuple[int, int], Endpoint | None]] = []
        with self.lock:
            for key in public_keys:
                public = base64.b64decode(key)
                transfer = device.peer_transfer(public)
                if transfer is not None:
                    handshake = device.peer_last_handshake(public)
                    raw.append((key, handshake, transfer, device.peer_endpoint(public)))
        return [
            p.PeerStat(
                public_key=key,
                # Whole seconds: the report is for people, and an unchanged peer stays unchanged.
                last_handshake_at=None
                if handshake is None
                else datetime.fromtimestamp(int(handshake + offset), UTC),
                rx_bytes=rx,
                tx_bytes=tx,
                endpoint=_format_endpoint(endpoint),
            )
            for key, handshake, (rx, tx), endpoint in raw
        ]

    def apply(self, commands: Sequence[ps.Command]) -> None:
        if not commands:
            return
        offset = self._wall_offset()
        with self.lock:
            ps.apply(self.core, commands, offset)


def _format_endpoint(endpoint: Endpoint | None) -> str | None:
    if endpoint is None:
        return None
    host, port = endpoint[0], endpoint[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# --- the portal connection ---------------------------------------------------------------------


class Refused(Exception):
    """The portal refused this gateway for good (close code without retry)."""


class PortalClient:
    """Keeps the websocket to the portal up and drives the shared core from its messages."""

    def __init__(
        self,
        options: Options,
        public_key: str,
        core: SharedCore,
        *,
        on_init: Callable[[ps.GatewayState], None] = lambda _s: None,
        backoff: ps.Backoff | None = None,
    ) -> None:
        self.options = options
        self.public_key = public_key
        self.core = core
        self.state = ps.GatewayState()
        self.on_init = on_init
        self.backoff = backoff or ps.Backoff()
        self.tokens = list(options.tokens)
        self.connected = False
        self.inits = 0
        self._announced: p.CloseCode | None = None
        self._stats_sent: dict[str, p.PeerStat] = {}
        self._stats_unsupported = False  # the portal said it does not know peer_stats
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def stop_threadsafe(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stop.set)

    async def run(self) -> int:
        """Connect, serve, reconnect until stopped (EXIT_OK) or refused (EXIT_REFUSED)."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        expiry = asyncio.create_task(self._expire_periodically())
        try:
            return await self._connect_loop()
        finally:
            expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiry

    async def _expire_periodically(self) -> None:
        # Also while the portal is unreachable: a dynamic client whose last flow expired is
        # removed from the WireGuard device without waiting for the next init.
        while True:
            await asyncio.sleep(min(EXPIRY_CHECK_S, self.state.heartbeat_interval_s))
            self._expire()

    async def _connect_loop(self) -> int:
        assert self._stop is not None
        stop = self._stop
        while not stop.is_set():
            code = await self._session()
            if stop.is_set():
                break
            decision = ps.after_close(code, self.backoff)
            if not decision.retry and code == p.CloseCode.UNAUTHORIZED and len(self.tokens) > 1:
                # The first candidate (a rotated token) was refused: fall back to the next.
                self.tokens.pop(0)
                decision = ps.CloseDecision(True, self.backoff.next_delay(), "next token")
            if not decision.retry:
                log.error(
                    "portal refused the gateway; not retrying",
                    extra={"close_code": code, "why": decision.reason},
                )
                return EXIT_REFUSED
            log.info(
                "reconnecting",
                extra={"in_s": round(decision.delay, 2), "why": decision.reason},
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), decision.delay)
        return EXIT_OK

    # -- one connection ----------------------------------------------------------------------
    def url(self) -> str:
        params = {
            "external_id": self.options.external_id,
            "name": self.options.name,
            "public_key": self.public_key,
            "version": AGENT_VERSION,
            "protocol": str(p.PROTOCOL_VERSION),
        }
        if self.options.endpoint:
            params["endpoint"] = self.options.endpoint
        return websocket_url(self.options.portal_url, params)

    async def _session(self) -> int | None:
        """One websocket connection; returns the close code received (None if none)."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        assert self._stop is not None
        self._announced = None
        # A new connection (maybe another portal process, maybe upgraded) gets them all.
        self._stats_sent = {}
        self._stats_unsupported = False
        try:
            async with connect(
                self.url(),
                additional_headers={"Authorization": f"Bearer {self.tokens[0]}"},
                user_agent_header=f"firezone-gateway/{AGENT_VERSION}",
                max_size=p.MAX_FRAME_BYTES,
                open_timeout=10,
                close_timeout=2,
                ping_interval=None,  # the protocol's own heartbeat is the liveness check
                compression=None,
            ) as ws:
                self.connected = True
                log.info("connected to the portal", extra={"url": self.options.portal_url})
                try:
                    await self._serve(ws)
                finally:
                    self.connected = False
                return self._close_code(ws.close_code)
        except InvalidStatus as exc:
            log.warning(
                "portal rejected the websocket handshake",
                extra={"status": exc.response.status_code},
            )
            return None
        except ConnectionClosed as exc:
            code = self._close_code(exc.rcvd.code if exc.rcvd is not None else None)
            reason = exc.rcvd.reason if exc.rcvd is not None else ""
            log.warning("portal connection closed", extra={"close_code": code, "reason": reason})
            return code
        except (OSError, TimeoutError, WebSocketException) as exc:
            log.warning("portal unreachable", extra={"error": f"{type(exc).__name__}: {exc}"})
            return None

    def _close_code(self, received: int | None) -> int | None:
        """The received close code, or the one the portal announced in an error frame when
        the server did not pass a 4000-range code through."""
        if received is not None and 4000 <= received < 5000:
            return received
        return int(self._announced) if self._announced is not None else received

    async def _serve(self, ws: Any) -> None:
        assert self._stop is not None
        try:
            raw = await asyncio.wait_for(ws.recv(), INIT_TIMEOUT_S)
        except TimeoutError:
            log.warning("no init from the portal; reconnecting")
            await ws.close(1002, "no init")
            return
        msg, replies = self._handle_frame(raw)
        if not isinstance(msg, p.Init):
            log.warning("the first message was not init; reconnecting")
            await ws.close(1002, "expected init")
            return
        await self._send_all(ws, replies)
        self.backoff.reset()
        heart = ps.Heartbeat(interval=self.state.heartbeat_interval_s)
        heart.start(time.monotonic())
        stop_task = asyncio.ensure_future(self._stop.wait())
        recv_task: asyncio.Future[Any] = asyncio.ensure_future(ws.recv())
        try:
            while True:
                assert heart.next_at is not None
                timeout = max(0.0, heart.next_at - time.monotonic())
                done, _ = await asyncio.wait(
                    {recv_task, stop_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stop_task in done:
                    await ws.close(1001, "gateway stopping")
                    return
                if recv_task in done:
                    raw = recv_task.result()  # raises ConnectionClosed when the socket ends
                    recv_task = asyncio.ensure_future(ws.recv())
                    msg, replies = self._handle_frame(raw)
                    if isinstance(msg, p.HeartbeatReply):
                        heart.on_reply()
                    await self._send_all(ws, replies)
                action = heart.poll(time.monotonic())
                if action == "dead":
                    log.warning(
                        "portal stopped answering heartbeats; reconnecting",
                        extra={"missed": heart.unanswered},
                    )
                    ws.transport.abort()
                    return
                if action == "send":
                    await ws.send(p.dump(p.Heartbeat()))
                    stats = self.peer_stats_report()
                    if stats is not None:
                        await ws.send(p.dump(stats))
        finally:
            for task in (recv_task, stop_task):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    def peer_stats_report(self) -> p.PeerStats | None:
        """The static peers whose statistics changed since the last report (None: none did).
        Sent with a heartbeat, so at most once per heartbeat interval."""
        if self._stats_unsupported:
            return None
        current = self.core.peer_stats(sorted(self.state.wanted.static_peers))
        changed = tuple(s for s in current if self._stats_sent.get(s.public_key) != s)
        if not changed:
            return None
        self._stats_sent = {s.public_key: s for s in current}
        return p.PeerStats(changed)

    @staticmethod
    async def _send_all(ws: Any, messages: Sequence[p.GatewayMessage]) -> None:
        for m in messages:
            frame = p.dump(m)
            size = len(frame.encode("utf-8"))
            if size > p.MAX_FRAME_BYTES:
                # The portal would close the socket with 1009 and this frame would be lost anyway.
                log.error(
                    "not sending a frame larger than the protocol allows",
                    extra={"type": m.TYPE, "bytes": size, "limit": p.MAX_FRAME_BYTES},
                )
                continue
            await ws.send(frame)

    def _expire(self) -> None:
        step = self.state.expire(time.time())
        if step.commands:
            self.core.apply(step.commands)
            self.state.commit(step)
            log.info("authorizations expired", extra={"peers": self.state.peer_count})

    def _handle_frame(self, raw: str | bytes) -> tuple[p.Message | None, list[p.GatewayMessage]]:
        try:
            msg = p.parse_message(raw, sender="portal")
        except p.ProtocolError as exc:
            log.warning("invalid message from the portal", extra={"reason": exc.reason})
            return None, []
        assert not isinstance(msg, p.Heartbeat | p.AuthorizationAck | p.PeerStats | p.ResyncRequest)
        return msg, self.handle(msg)

    def handle(self, msg: p.PortalMessage) -> list[p.GatewayMessage]:
        """Apply one portal message; returns the replies to send."""
        if isinstance(msg, p.TokenRotated):
            self._store_token(msg.token)
            return []
        if isinstance(msg, p.Error):
            log.warning("portal reported an error", extra={"code": msg.code, "why": msg.reason})
            # The portal names its close code in an error frame right before closing, because
            # not every ASGI server passes the close code/reason through.
            self._announced = p.CloseCode.__members__.get(msg.code.upper(), self._announced)
            if msg.code == "invalid_message" and f"'{p.PeerStats.TYPE}'" in msg.reason:
                self._stats_unsupported = True  # an older portal: peer_stats is optional
            return []
        if isinstance(msg, p.HeartbeatReply):
            replies = self.state.handle(msg, time.time()).replies
            if replies:
                log.warning(
                    "state differs from the portal's; asking for a resync",
                    extra={"resyncs": self.state.resyncs},
                )
            return replies
        previous = (self.state.ipv4, self.state.ipv6)
        step = self.state.handle(msg, time.time())
        try:
            self.core.apply(step.commands)
        except (ValueError, KeyError) as exc:
            log.error(
                "could not apply a portal message",
                extra={"type": msg.TYPE, "error": f"{type(exc).__name__}: {exc}"},
            )
            if isinstance(msg, p.CreateAuthorization):
                return [p.Error("authorization_failed", str(exc), msg.authorization.id)]
            return []
        self.state.commit(step)
        self._log_step(msg, step)
        if isinstance(msg, p.Init):
            self.inits += 1
            if self.inits > 1 and previous != (msg.ipv4, msg.ipv6):
                log.warning(
                    "the portal changed this gateway's tunnel addresses; restart to apply",
                    extra={"ipv4": str(msg.ipv4), "ipv6": str(msg.ipv6)},
                )
            self.on_init(self.state)
        return step.replies

    def _log_step(self, msg: p.PortalMessage, step: ps.Step) -> None:
        extra: dict[str, Any] = {"changes": len(step.commands), "peers": self.state.peer_count}
        if isinstance(msg, p.Init):
            extra.update(
                gateway_id=str(msg.gateway_id),
                static_peers=len(msg.static_peers),
                authorizations=len(msg.authorizations),
                reconnect=self.inits > 0,
            )
        elif isinstance(msg, p.CreateAuthorization):
            extra.update(
                authorization_id=str(msg.authorization.id),
                resource_id=str(msg.authorization.resource.id),
            )
        elif isinstance(msg, p.RejectAccess):
            extra.update(authorization_ids=",".join(str(i) for i in msg.authorization_ids))
            if msg.resource_id is not None:
                extra.update(resource_id=str(msg.resource_id))
        elif isinstance(msg, p.ResourceUpdated):
            extra.update(resource_id=str(msg.resource.id))
        elif isinstance(msg, p.AddStaticPeer):
            extra.update(peer=msg.peer.public_key, resources=len(msg.peer.resources))
        elif isinstance(msg, p.RemoveStaticPeer):
            extra.update(peer=msg.public_key)
        log.info(msg.TYPE, extra=extra)

    def _store_token(self, token: str) -> None:
        path = self.options.token_file or (self.options.state_dir / "token")
        try:
            _write_private(path, token + "\n")
        except OSError as exc:
            extra = {"path": str(path), "error": exc.strerror}
            log.error("could not store the rotated token", extra=extra)
        self.tokens = [token, *(t for t in self.tokens if t != token)]
        log.info("gateway token rotated", extra={"path": str(path)})


# --- the process -------------------------------------------------------------------------------


class _PortalThread:
    """The asyncio loop of the `PortalClient`, in a daemon thread."""

    def __init__(self, client: PortalClient) -> None:
        self.client = client
        self.exit_code: int | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name="fz-portal", daemon=True)

    def _main(self) -> None:
        try:
            self.exit_code = asyncio.run(self.client.run())
        except BaseException:
            log.exception("portal connection failed")
            self.exit_code = 1
        finally:
            self.done.set()

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.client.stop_threadsafe()
        self.done.wait(timeout)


def run(options: Options) -> int:
    """Run the agent until a signal or a refusal by the portal; returns the exit code."""
    from agents.io.runtime import DataPlaneSpec, serve, wall_offset
    from agents.wireguard.device import Device

    options.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_key = load_or_create_private_key(options.state_dir)
    public_key = public_key_of(private_key)
    device = Device(private_key, wall_offset=wall_offset())
    shared = SharedCore(GatewayCore(device), wall_offset)
    first_init = threading.Event()
    stop = threading.Event()
    client = PortalClient(options, public_key, shared, on_init=lambda _s: first_init.set())
    portal = _PortalThread(client)

    def wake_on_portal_exit() -> None:
        portal.done.wait()
        stop.set()
        first_init.set()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()
        first_init.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info(
        "gateway agent starting",
        extra={
            "version": AGENT_VERSION,
            "external_id": options.external_id,
            "gateway_name": options.name,
            "public_key": public_key,
            "portal_url": options.portal_url,
        },
    )
    portal.start()
    threading.Thread(target=wake_on_portal_exit, name="fz-portal-watch", daemon=True).start()
    try:
        first_init.wait()
        if stop.is_set():
            return portal.exit_code if portal.exit_code is not None else EXIT_OK
        state = client.state
        assert state.ipv4 is not None and state.ipv6 is not None
        spec = DataPlaneSpec(
            addresses=[
                ipaddress.ip_interface(f"{state.ipv4}/32"),
                ipaddress.ip_interface(f"{state.ipv6}/128"),
            ],
            routes=[TUNNEL_IPV4, TUNNEL_IPV6],
            listen_port=options.listen_port,
            ifname=options.ifname,
            io_mode=options.io_mode,
            masquerade=True,
            extra_log={"gateway_id": str(state.gateway_id)},
        )
        code = serve(shared, spec, stop=stop)
        return portal.exit_code if portal.exit_code not in (None, EXIT_OK) else code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        portal.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.portal_url:
        parser.error("--portal-url URL is required")
    return run_from_args(args)


def run_from_args(args: argparse.Namespace) -> int:
    """Run portal mode from parsed arguments (shared by both parsers)."""
    from agents.logging import configure

    configure(json_logs=args.log_json, level=args.log_level)
    try:
        options = options_from_args(args, os.environ)
        return run(options)
    except ConfigurationError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        return EXIT_CONFIG


if __name__ == "__main__":
    raise SystemExit(main())
