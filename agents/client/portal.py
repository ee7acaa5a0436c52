"""Portal mode of the client: ``firezone-client --portal-url URL --token-file F``.

Theory of operation
-------------------
Like the gateway agent's portal mode (agents/gateway/portal.py, whose reconnect schedule,
close-code decisions and heartbeat watchdog it reuses), two threads share one data plane:

* the **portal thread** runs an asyncio loop holding ``/client/websocket`` (bearer token from
  the token file that ``firezone-client sign-in`` wrote, or a service-account token); every
  portal message becomes an event of the sans-IO `ClientState` (agents/client/portal_state.py);
* the **main thread** runs the data plane (`agents.io.runtime.serve`) once the first ``init``
  named the tunnel addresses: a TUN device with a route per cidr/ip resource (changed live as
  resources come and go), the UDP socket, and `DynamicClient` as the engine.

`DynamicClient` wraps the `ClientCore` (the WireGuard initiator) and the state behind one lock.
A TUN packet the core has no gateway for goes to the state: a packet to a resource is held and a
``request_authorization`` is queued to the portal thread; any other packet is answered with ICMP
"administratively prohibited" so the application fails at once. Effects that arise on the portal
thread (a granted flow's held packets, now encrypted) wait in an outbox that the IO loop drains
at its next timer call; the driver is kicked so that is immediate. An ICMP "administratively
prohibited" arriving from a gateway, and a handshake that gets no answer within the rekey timeout,
make the state ask again for another gateway (failover).

While the portal is unreachable, flows keep working until they expire (the state expires them
locally); new requests are refused at once. Exit codes: 0 stopped by a signal, 2 bad
configuration, 3 the portal refused the client for good (token expired, revoked or invalid, device
disabled, protocol version not supported): a service manager should not restart on 3.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from agents import protocol as p
from agents.client import portal_state as cs
from agents.client.core import DROPPED_NO_ROUTE, ClientCore, GatewayInfo
from agents.gateway import portal_state as gps
from agents.gateway.core import NOTHING, Output
from agents.gateway.portal import (
    _write_private,
    load_or_create_private_key,
    public_key_of,
)
from agents.net.icmp import admin_prohibited
from agents.net.packet import PROTO_ICMP, PROTO_ICMPV6, parse
from agents.wireguard.device import Device, Transmit

log = logging.getLogger("agents.client.portal")

CLIENT_VERSION = "0.1.0"
EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_REFUSED = 3
WEBSOCKET_PATH = "/client/websocket"
DEFAULT_STATE_DIR = "/var/lib/firezone-client"
INIT_TIMEOUT_S = 15.0
Endpoint = tuple[str, int]


class ConfigurationError(ValueError):
    pass


@dataclass(frozen=True)
class Options:
    portal_url: str
    token: str
    token_file: Path
    external_id: str
    name: str
    state_dir: Path
    io_mode: str
    ifname: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"Options(portal_url={self.portal_url!r}, token_file={str(self.token_file)!r})"


def websocket_url(base: str, params: dict[str, str]) -> str:
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ConfigurationError(f"--portal-url {base!r}: expected http(s)://host[:port]")
    path = parts.path.rstrip("/")
    if not path.endswith(WEBSOCKET_PATH):
        path += WEBSOCKET_PATH
    return urlunsplit((scheme, parts.netloc, path, urlencode(params), ""))


def default_external_id(state_dir: Path) -> str:
    for path in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        with contextlib.suppress(OSError):
            raw = path.read_text().strip()
            if raw:
                return hashlib.sha256(f"firezone-client:{raw}".encode()).hexdigest()
    stored = state_dir / "external_id"
    with contextlib.suppress(OSError):
        value = stored.read_text().strip()
        if value:
            return value
    value = uuid.uuid4().hex
    _write_private(stored, value + "\n")
    return value


def add_portal_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portal-url", metavar="URL", help="e.g. https://portal.example.com")
    parser.add_argument(
        "--token-file",
        metavar="FILE",
        type=Path,
        help="client session token (written by `firezone-client sign-in`) or service-account "
        "token (default: ~/.config/firezone/client-token)",
    )
    parser.add_argument("--external-id", metavar="ID", help="stable device id")
    parser.add_argument("--name", metavar="NAME", help="device name (default: the hostname)")
    parser.add_argument(
        "--state-dir",
        metavar="DIR",
        type=Path,
        default=None,
        help=f"WireGuard private key, external id (default: {DEFAULT_STATE_DIR} as root, "
        "else ~/.local/state/firezone-client)",
    )


def options_from_args(args: argparse.Namespace) -> Options:
    from agents.client.signin import default_token_file

    token_file: Path = args.token_file or default_token_file()
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise ConfigurationError(
            f"--token-file {token_file}: {exc.strerror}; run `firezone-client sign-in` first"
        ) from exc
    if not token:
        raise ConfigurationError(f"--token-file {token_file}: empty")
    state_dir: Path = args.state_dir or (
        Path(DEFAULT_STATE_DIR)
        if os.geteuid() == 0
        else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state")
        / "firezone-client"
    )
    websocket_url(args.portal_url, {})
    name = args.name or socket.gethostname()
    external_id = args.external_id or default_external_id(state_dir)
    return Options(
        portal_url=args.portal_url,
        token=token,
        token_file=token_file,
        external_id=external_id,
        name=name,
        state_dir=state_dir,
        io_mode=args.io_mode,
        ifname=args.ifname,
    )


# --- the engine --------------------------------------------------------------------------------


def _addr(version: int, value: int) -> IPv4Address | IPv6Address:
    return IPv4Address(value) if version == 4 else IPv6Address(value)


def _prohibited_dst(packet: bytes) -> IPv4Address | IPv6Address | None:
    """The quoted destination of an ICMP/ICMPv6 administratively-prohibited error, else None."""
    info = parse(packet)
    if info is None or info.fragment:
        return None
    off = info.l4_offset
    if info.protocol == PROTO_ICMP and len(packet) >= off + 28:
        if packet[off] == 3 and packet[off + 1] == 13:
            return IPv4Address(packet[off + 24 : off + 28])
    elif (
        info.protocol == PROTO_ICMPV6
        and len(packet) >= off + 48
        and packet[off] == 1
        and packet[off + 1] == 1
    ):
        return IPv6Address(packet[off + 32 : off + 48])
    return None


class DynamicClient:
    """The client core and the dynamic state behind one lock, as the driver's engine."""

    def __init__(
        self,
        device: Device,
        wall_offset: Callable[[], float],
        *,
        send_requests: Callable[[list[cs.Request]], None] = lambda _r: None,
    ) -> None:
        self.device = device
        self.lock = threading.Lock()
        self.state = cs.ClientState()
        self.core: ClientCore | None = None
        self.wall_offset = wall_offset
        self.send_requests = send_requests
        self.kick: Callable[[], None] = lambda: None
        self.set_routes: Callable[[tuple[cs.Network, ...]], None] = lambda _r: None
        self._out_tun: list[bytes] = []
        self._out_udp: list[Transmit] = []

    # -- driver surface ----------------------------------------------------------------------
    def handle_tun_input(self, packet: bytes, now: float) -> Output:
        with self.lock:
            core = self.core
            if core is None:
                return NOTHING
            before = core.counters[DROPPED_NO_ROUTE]
            key = core.route(packet, now)
            if key is not None:
                return Output((), self.device.encapsulate(key, packet, now))
            if core.counters[DROPPED_NO_ROUTE] == before:
                return NOTHING  # malformed or a foreign source: counted by the core
            info = parse(packet)
            assert info is not None
            fx = self.state.on_packet(packet, _addr(info.version, info.dst), now)
            tun, udp = self._apply(fx, now)
        return Output(tun, udp)

    def handle_network_input(self, data: bytes, source: Endpoint, now: float) -> Output:
        with self.lock:
            core = self.core
            if core is None:
                return NOTHING
            out = core.handle_network_input(data, source, now)
            if not out.tun:
                return out
            tun, udp = list(out.tun), list(out.udp)
            for packet in out.tun:
                dst = _prohibited_dst(packet)
                if dst is None:
                    continue
                key = core.gateway_for(dst)
                if key is None:
                    continue
                log.info("gateway refused a flow; asking again", extra={"dst": str(dst)})
                more_tun, more_udp = self._apply(self.state.on_prohibited(key, dst, now), now)
                tun.extend(more_tun)
                udp.extend(more_udp)
        return Output(tun, udp)

    def handle_timeout(self, now: float) -> Output:
        with self.lock:
            if self.core is None:
                return NOTHING
            out = self.core.handle_timeout(now)
            tun, udp = list(out.tun), list(out.udp)
            if now >= self.state.next_tick:
                fx = self.state.tick(now, self.device.peer_handshake_started)
                more_tun, more_udp = self._apply(fx, now)
                tun.extend(more_tun)
                udp.extend(more_udp)
            if self._out_tun or self._out_udp:
                tun.extend(self._out_tun)
                udp.extend(self._out_udp)
                self._out_tun, self._out_udp = [], []
        return Output(tun, udp)

    def poll_timeout(self) -> float | None:
        with self.lock:
            if self.core is None:
                return None
            if self._out_tun or self._out_udp:
                return 0.0
            deadline = self.core.poll_timeout()
            tick = self.state.next_tick
            return tick if deadline is None else min(deadline, tick)

    # -- events from the portal thread -------------------------------------------------------
    def portal_event(self, event: Callable[[cs.ClientState, float], cs.Effects]) -> cs.Effects:
        now = time.monotonic()
        with self.lock:
            fx = event(self.state, now)
            if self.core is None:
                self.core = ClientCore(self.device, self.state.ipv4, self.state.ipv6)
            tun, udp = self._apply(fx, now)
            self._out_tun.extend(tun)
            self._out_udp.extend(udp)
            queued = bool(self._out_tun or self._out_udp)
        if fx.routes is not None:
            self.set_routes(fx.routes)
        if queued:
            self.kick()
        return fx

    def _apply(self, fx: cs.Effects, now: float) -> tuple[list[bytes], list[Transmit]]:
        """Apply effects to the core (lock held); returns the TUN writes and UDP transmits."""
        core = self.core
        assert core is not None
        tun: list[bytes] = []
        udp: list[Transmit] = []
        for key in fx.remove_gateways:
            core.remove_gateway(key)
        for gw in fx.set_gateways:
            core.add_gateway(GatewayInfo(gw.public_key, gw.endpoint, gw.networks, gw.preshared_key))
        for packet in fx.deliver:
            out = core.handle_tun_input(packet, now)
            tun.extend(out.tun)
            udp.extend(out.udp)
        for packet in fx.reject:
            reply = admin_prohibited(packet)
            if reply is not None:
                tun.append(reply)
        if fx.requests:
            self.send_requests(fx.requests)
        return tun, udp

    # -- conversions -------------------------------------------------------------------------
    def monotonic(self, when: Any) -> float | None:
        return None if when is None else when.timestamp() - self.wall_offset()


def client_resource(r: p.ClientResource) -> cs.ClientResource:
    return cs.ClientResource(r.id, r.type, r.address, r.name)


def _endpoint(text: str) -> Endpoint:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def _resolve(endpoint: Endpoint) -> Endpoint:
    host, port = endpoint
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host)), port
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    return str(infos[0][4][0]), port


# --- routes ------------------------------------------------------------------------------------


class Routes:
    """The TUN device's routes, set to the wanted list (netlink; from the portal thread)."""

    def __init__(self) -> None:
        self.index: int | None = None
        self.installed: set[cs.Network] = set()
        self.wanted: tuple[cs.Network, ...] = ()
        self.lock = threading.Lock()

    def attach(self, index: int) -> None:
        with self.lock:
            self.index = index
            wanted = self.wanted
        self.set(wanted)

    def set(self, routes: tuple[cs.Network, ...]) -> None:
        """Set the wanted routes. pyroute2 refuses to work synchronously in a thread that runs
        an asyncio loop (the portal thread), so the netlink calls run in a short-lived thread
        of their own; this waits for it (a few milliseconds)."""
        worker = threading.Thread(target=self._set, args=(routes,), name="fz-routes")
        worker.start()
        worker.join()

    def _set(self, routes: tuple[cs.Network, ...]) -> None:
        from pyroute2 import IPRoute

        with self.lock:
            self.wanted = routes
            if self.index is None:
                return
            want = set(routes)
            try:
                with IPRoute() as ipr:
                    for net in self.installed - want:
                        with contextlib.suppress(Exception):
                            ipr.route("del", dst=str(net), oif=self.index, family=_family(net))
                    for net in want - self.installed:
                        try:
                            ipr.route("replace", dst=str(net), oif=self.index, family=_family(net))
                        except Exception as exc:
                            log.warning(
                                "could not add a route", extra={"dst": str(net), "error": str(exc)}
                            )
                            want.discard(net)
            except Exception:
                log.exception("could not update the routes")
                return
            self.installed = want
            log.info("routes updated", extra={"routes": len(want)})


def _family(net: cs.Network) -> int:
    return int(socket.AF_INET6 if net.version == 6 else socket.AF_INET)


# --- the portal connection ---------------------------------------------------------------------


class PortalClient:
    """Keeps ``/client/websocket`` up and turns its messages into state events."""

    def __init__(
        self,
        options: Options,
        public_key: str,
        engine: DynamicClient,
        *,
        on_init: Callable[[], None] = lambda: None,
        backoff: gps.Backoff | None = None,
    ) -> None:
        self.options = options
        self.public_key = public_key
        self.engine = engine
        self.on_init = on_init
        self.backoff = backoff or gps.Backoff()
        self.connected = False
        self.refusal: str | None = None
        self._announced: p.CloseCode | None = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requests: asyncio.Queue[cs.Request] | None = None
        engine.send_requests = self.request_threadsafe

    def stop_threadsafe(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)

    def request_threadsafe(self, requests: list[cs.Request]) -> None:
        loop, queue = self._loop, self._requests
        if loop is None or queue is None:
            return
        for r in requests:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(queue.put_nowait, r)

    async def run(self) -> int:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._requests = asyncio.Queue()
        offline = asyncio.create_task(self._refuse_while_offline())
        try:
            return await self._connect_loop()
        finally:
            offline.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await offline

    async def _refuse_while_offline(self) -> None:
        """Requests made while the portal is unreachable fail at once (fail fast)."""
        assert self._requests is not None
        while True:
            await asyncio.sleep(0.2)
            if self.connected:
                continue
            while not self._requests.empty():
                self.refuse(self._requests.get_nowait().resource_id, "portal unreachable")

    def refuse(self, resource_id: uuid.UUID, why: str) -> None:
        def event(st: cs.ClientState, now: float) -> cs.Effects:
            return st.on_refused(resource_id, why, now)

        self.engine.portal_event(event)

    async def _connect_loop(self) -> int:
        assert self._stop is not None
        stop = self._stop
        while not stop.is_set():
            code = await self._session()
            if stop.is_set():
                break
            decision = gps.after_close(code, self.backoff)
            if not decision.retry:
                self.refusal = refusal_message(code)
                log.error(
                    "portal refused the client; not retrying",
                    extra={"close_code": code, "why": decision.reason},
                )
                return EXIT_REFUSED
            log.info(
                "reconnecting", extra={"in_s": round(decision.delay, 2), "why": decision.reason}
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), decision.delay)
        return EXIT_OK

    def url(self) -> str:
        return websocket_url(
            self.options.portal_url,
            {
                "external_id": self.options.external_id,
                "name": self.options.name,
                "public_key": self.public_key,
                "version": CLIENT_VERSION,
                "protocol": str(p.PROTOCOL_VERSION),
            },
        )

    async def _session(self) -> int | None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

        self._announced = None
        try:
            async with connect(
                self.url(),
                additional_headers={"Authorization": f"Bearer {self.options.token}"},
                user_agent_header=f"firezone-client/{CLIENT_VERSION}",
                max_size=p.MAX_FRAME_BYTES,
                open_timeout=10,
                close_timeout=2,
                ping_interval=None,
                compression=None,
            ) as ws:
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
            if exc.response.status_code in (401, 403):
                return int(p.CloseCode.UNAUTHORIZED)
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
        if received is not None and 4000 <= received < 5000:
            return received
        return int(self._announced) if self._announced is not None else received

    async def _serve(self, ws: Any) -> None:
        assert self._stop is not None and self._requests is not None
        first: asyncio.Future[Any] = asyncio.ensure_future(ws.recv())
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            done, _ = await asyncio.wait(
                {first, stopping}, timeout=INIT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
            if not first.done():
                first.cancel()
        if stopping in done:
            await ws.close(1001, "client stopping")
            return
        if first not in done:
            log.warning("no init from the portal; reconnecting")
            await ws.close(1002, "no init")
            return
        raw = first.result()
        msg = self._parse(raw)
        if not isinstance(msg, p.ClientInit):
            if msg is not None:
                self.handle(msg)  # e.g. an error naming the close code that follows
            log.warning("the first message was not init; reconnecting")
            await ws.close(1002, "expected init")
            return
        self.handle(msg)
        self.connected = True
        self.backoff.reset()
        heart = gps.Heartbeat(interval=msg.heartbeat_interval_s)
        heart.start(time.monotonic())
        stop_task = asyncio.ensure_future(self._stop.wait())
        recv_task: asyncio.Future[Any] = asyncio.ensure_future(ws.recv())
        req_task: asyncio.Future[cs.Request] = asyncio.ensure_future(self._requests.get())
        try:
            while True:
                assert heart.next_at is not None
                timeout = max(0.0, heart.next_at - time.monotonic())
                done, _ = await asyncio.wait(
                    {recv_task, stop_task, req_task},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if stop_task in done:
                    await ws.close(1001, "client stopping")
                    return
                if req_task in done:
                    r = req_task.result()
                    req_task = asyncio.ensure_future(self._requests.get())
                    log.info(
                        "request_authorization",
                        extra={
                            "resource_id": str(r.resource_id),
                            "connected": len(r.connected_gateway_ids),
                            "failed": len(r.failed_gateway_ids),
                        },
                    )
                    await self._send(
                        ws,
                        p.RequestAuthorization(
                            r.resource_id, r.connected_gateway_ids, r.failed_gateway_ids
                        ),
                    )
                if recv_task in done:
                    raw = recv_task.result()
                    recv_task = asyncio.ensure_future(ws.recv())
                    msg = self._parse(raw)
                    if isinstance(msg, p.HeartbeatReply):
                        heart.on_reply()
                    elif msg is not None:
                        try:
                            self.handle(msg)
                        except Exception:  # a bug must not take the flows down with it
                            log.exception(
                                "could not apply a portal message", extra={"type": msg.TYPE}
                            )
                action = heart.poll(time.monotonic())
                if action == "dead":
                    log.warning("portal stopped answering heartbeats; reconnecting")
                    ws.transport.abort()
                    return
                if action == "send":
                    await self._send(ws, p.Heartbeat())
        finally:
            for task in (recv_task, stop_task, req_task):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    @staticmethod
    async def _send(ws: Any, message: p.ClientMessage) -> None:
        frame = p.dump(message)
        if len(frame.encode("utf-8")) > p.MAX_FRAME_BYTES:
            log.error(
                "not sending a frame larger than the protocol allows", extra={"type": message.TYPE}
            )
            return
        await ws.send(frame)

    def _parse(self, raw: str | bytes) -> p.Message | None:
        try:
            return p.parse_message(raw, sender="portal_to_client")
        except p.ProtocolError as exc:
            log.warning("invalid message from the portal", extra={"reason": exc.reason})
            return None

    def handle(self, msg: p.Message) -> None:
        """One portal message -> one state event."""
        e = self.engine
        if isinstance(msg, p.ClientInit):
            resources = [client_resource(r) for r in msg.resources]
            previous = (e.state.ipv4, e.state.ipv6)
            fx = e.portal_event(lambda st, now: st.on_init(msg.ipv4, msg.ipv6, resources, now))
            if previous != (None, None) and previous != (msg.ipv4, msg.ipv6):
                log.warning("the portal changed this client's tunnel addresses; restart to apply")
            log.info(
                "init",
                extra={
                    "client_id": str(msg.client_id),
                    "resources": len(resources),
                    "removed_gateways": len(fx.remove_gateways),
                },
            )
            self.on_init()
        elif isinstance(msg, p.ResourceCreatedOrUpdated):
            r = client_resource(msg.resource)
            e.portal_event(lambda st, now: st.on_resource(r, now))
            log.info(msg.TYPE, extra={"resource_id": str(r.id)})
        elif isinstance(msg, p.ResourceDeleted):
            rid = msg.resource_id
            e.portal_event(lambda st, now: st.on_resource_deleted(rid, now))
            log.info(msg.TYPE, extra={"resource_id": str(rid)})
        elif isinstance(msg, p.AuthorizationCreated):
            try:
                endpoint = _resolve(_endpoint(msg.gateway_endpoints[0]))
            except (OSError, ValueError) as exc:
                log.warning("cannot resolve the gateway endpoint", extra={"error": str(exc)})
                rid = msg.resource_id
                e.portal_event(lambda st, now: st.on_refused(rid, "unresolvable endpoint", now))
                return
            import base64

            granted = cs.Granted(
                authorization_id=msg.authorization_id,
                resource_id=msg.resource_id,
                gateway_id=msg.gateway_id,
                gateway_public_key=base64.b64decode(msg.gateway_public_key),
                endpoint=endpoint,
                preshared_key=base64.b64decode(msg.preshared_key),
                expires_at=e.monotonic(msg.expires_at),
            )
            e.portal_event(lambda st, now: st.on_granted(granted, now))
            log.info(
                msg.TYPE,
                extra={
                    "resource_id": str(msg.resource_id),
                    "gateway_id": str(msg.gateway_id),
                    "endpoint": f"{endpoint[0]}:{endpoint[1]}",
                },
            )
        elif isinstance(msg, p.AuthorizationCreationFailed):
            rid, reason = msg.resource_id, msg.reason
            e.portal_event(lambda st, now: st.on_refused(rid, reason, now))
            log.warning(
                msg.TYPE,
                extra={
                    "resource_id": str(rid),
                    "reason": reason,
                    "violated": ",".join(msg.violated),
                },
            )
        elif isinstance(msg, p.AuthorizationRevoked):
            ids = msg.authorization_ids
            e.portal_event(lambda st, now: st.on_revoked(ids, now))
            log.info(msg.TYPE, extra={"authorizations": len(ids)})
        elif isinstance(msg, p.Error):
            log.warning("portal reported an error", extra={"code": msg.code, "why": msg.reason})
            self._announced = p.CloseCode.__members__.get(msg.code.upper(), self._announced)


def refusal_message(code: int | None) -> str:
    if code == p.CloseCode.UNAUTHORIZED:
        return (
            "the portal refused the token (expired, revoked or invalid); "
            "sign in again with `firezone-client sign-in`"
        )
    if code == p.CloseCode.INCOMPATIBLE_VERSION:
        return "this client's protocol version is not supported by the portal; upgrade it"
    with contextlib.suppress(ValueError):
        return f"the portal refused this client ({p.CloseCode(code or 0).name.lower()})"
    return f"the portal refused this client (close code {code})"


# --- the process -------------------------------------------------------------------------------


def run(options: Options) -> int:
    from agents.io.runtime import DataPlaneSpec, serve, wall_offset

    options.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_key = load_or_create_private_key(options.state_dir)
    public_key = public_key_of(private_key)
    device = Device(private_key, wall_offset=wall_offset())
    engine = DynamicClient(device, wall_offset)
    routes = Routes()
    engine.set_routes = routes.set
    first_init = threading.Event()
    stop = threading.Event()
    client = PortalClient(options, public_key, engine, on_init=first_init.set)
    result: dict[str, int] = {}
    done = threading.Event()

    def portal_main() -> None:
        try:
            result["code"] = asyncio.run(client.run())
        except BaseException:
            log.exception("portal connection failed")
            result["code"] = 1
        finally:
            done.set()
            stop.set()
            first_init.set()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()
        first_init.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    log.info(
        "client starting",
        extra={
            "version": CLIENT_VERSION,
            "external_id": options.external_id,
            "public_key": public_key,
            "portal_url": options.portal_url,
        },
    )
    thread = threading.Thread(target=portal_main, name="fz-portal", daemon=True)
    thread.start()
    code = EXIT_OK
    try:
        first_init.wait()
        if not stop.is_set():
            st = engine.state
            addresses = [
                ipaddress.ip_interface(f"{a}/{a.max_prefixlen}")
                for a in (st.ipv4, st.ipv6)
                if a is not None
            ]

            def ready(tun: Any) -> None:
                routes.attach(tun.index)

            def got_driver(driver: Any) -> None:
                engine.kick = driver.kick

            spec = DataPlaneSpec(
                addresses=addresses,
                ifname=options.ifname,
                io_mode=options.io_mode,
                on_ready=ready,
                on_driver=got_driver,
            )
            code = serve(engine, spec, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.stop_threadsafe()
        done.wait(5)
        if engine.core is not None:
            log.info("client counters", extra={"counters": dict(engine.core.counters)})
    portal_code = result.get("code")
    if portal_code == EXIT_REFUSED:
        print(f"firezone-client: {client.refusal}", file=sys.stderr)
        return EXIT_REFUSED
    if portal_code not in (None, EXIT_OK):
        return portal_code
    return code


def run_from_args(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ConfigurationError as exc:
        log.error("configuration error", extra={"error": str(exc)})
        print(f"firezone-client: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return run(options)
