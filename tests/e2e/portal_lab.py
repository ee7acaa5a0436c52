"""Lab pieces for the portal-driven gateway e2e test (tests/e2e/test_portal_gateway.py).

Topology (every namespace and interface uniquely named, all removed by the Lab)::

    client ns: bridge 10.201.0.2/24 ──veth── gw1 ns 10.201.0.1 ──veth── res ns: bridge 10.202.0.2/24
                                     ──veth── gw2 ns 10.201.0.3 ──veth──        (+ 10.202.0.9/24)

The portal is a real daphne process in the root namespace (same test database, same Redis channel
layer prefix as the test process, so pushes published by services in the test reach the sockets).
It listens on a **unix socket**: the filesystem is shared by all namespaces, so a small TCP->unix
bridge inside each gateway namespace (``python -m tests.e2e.portal_lab bridge``) gives the agent a
plain ``http://127.0.0.1:PORT`` portal URL without any interface in the root namespace.

Also here, as subcommands run inside namespaces (``python -m tests.e2e.portal_lab CMD``):

  bridge LISTEN_PORT UNIX_PATH          TCP 127.0.0.1:LISTEN_PORT -> unix socket
  xff-bridge HOST PORT UNIX_PATH        TCP HOST:PORT -> unix socket, as a reverse proxy: the
                                        request head gets ``X-Forwarded-For: <TCP peer>`` (any
                                        X-Forwarded-For the client sent is dropped), so the
                                        portal (daphne --proxy-headers) sees the client's
                                        namespace address as its remote IP
  udp-echo PORT                         UDP echo server
  udp-probe DST PORT INTERVAL SECONDS   one datagram every INTERVAL s; prints one JSON line per
                                        probe: {"seq", "sent" (unix time), "ok"} (reply within
                                        0.25 s)
  celery QUEUE ARGS...                  Celery's command line (``worker ...``, ``beat ...``) for
                                        firezone_site's app with QUEUE as its default queue
                                        (runs in the root namespace; see `CeleryProcesses`)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netns import (
    REPO_ROOT,
    Lab,
    NetNS,
    env_with_pythonpath,
    missing_requirements,
    unique_name,
    wait_for,
)

PORTAL_PORT = 8000  # inside each gateway namespace (the bridge)
CLIENT_NET = "10.201.0"
RESOURCE_NET = "10.202.0"
RESOURCE_IP = "10.202.0.2"
FORBIDDEN_IP = "10.202.0.9"
TCP_PORT, UDP_PORT = 7000, 7001


def unavailable() -> str | None:
    """Why the portal e2e tests cannot run here (for ``pytest.skip``), or None."""
    reason = missing_requirements(("ip", "wireguard-go", "wg", "wg-quick", "nft", "ss"))
    if reason is None and not Path(sys.executable).with_name("daphne").exists():
        reason = "daphne is not installed"
    return reason


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: SIGTERM the child when the test process dies without its teardown (SIGKILL,
    a CI job timeout), instead of leaving daphne serving, Celery consuming from the shared Redis
    and agents running in namespaces nobody deletes. (``ip netns exec`` keeps it across exec.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")


# --- the portal (daphne on a unix socket) ------------------------------------------------------


@dataclass
class Portal:
    """daphne serving firezone_site.asgi on a unix socket, against ``database``."""

    socket_path: Path
    database: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def env(self) -> dict[str, str]:
        base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
        url = base.rsplit("/", 1)[0] + "/" + self.database
        return env_with_pythonpath(
            REPO_ROOT,
            {
                "DATABASE_URL": url,
                "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
                "FZ_CHANNEL_PREFIX": os.environ["FZ_CHANNEL_PREFIX"],
                "FZ_TESTING": "1",
                "SECRET_KEY": os.environ["SECRET_KEY"],
                "DJANGO_SETTINGS_MODULE": "firezone_site.settings",
            },
        )

    def start(self, timeout: float = 30.0) -> float:
        """Start daphne; returns the unix time at which it accepts connections."""
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        from firezone_site.webserver import DAPHNE_OPTIONS  # the options `manage.py serve` uses

        args = [
            sys.executable, "-m", "firezone_site.webserver", "-u", str(self.socket_path),
            *DAPHNE_OPTIONS, "--proxy-headers", "firezone_site.asgi:application",
        ]  # fmt: skip
        self.starts += 1
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, env=self.env(), cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, preexec_fn=die_with_parent,
            )  # fmt: skip
        wait_for(self._healthy, timeout=timeout, interval=0.05, what="daphne")
        return time.time()

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"daphne exited with {self.process.returncode}:\n{self.log()}")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.socket_path))
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                return s.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running_portal(tmp: Path, database: str) -> Iterator[Portal]:
    """A started `Portal` on ``database``; stopped and its socket removed on the way out."""
    # the unix socket path must stay short (108 bytes)
    sock = Path("/tmp") / f"{unique_name('fzportal', 40)}.sock"
    server = Portal(sock, database, tmp / "daphne.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()
        sock.unlink(missing_ok=True)


# --- Celery worker and beat ----------------------------------------------------------------------


@dataclass
class CeleryProcesses:
    """A Celery worker and beat next to the e2e portal: the settings' broker (Redis, as in
    production), beat schedule and tasks, the same database and channel layer as daphne.

    The one thing that differs from production is the queue name: worker and beat use a queue
    named for this run, so no other worker on the same Redis (another test run, a developer's
    portal) can take this run's beat jobs, and this worker gets nobody else's. settings.py has no
    variable for the queue, so both run through ``python -m tests.e2e.portal_lab celery QUEUE ...``
    which sets the app's ``task_default_queue`` and hands over to Celery's own command line.
    """

    env: dict[str, str]
    workdir: Path
    queue: str = field(default_factory=lambda: f"fze2e-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None
    beat_started_at: float = 0.0

    @property
    def worker_log_path(self) -> Path:
        return self.workdir / "celery-worker.log"

    @property
    def beat_log_path(self) -> Path:
        return self.workdir / "celery-beat.log"

    def start(self) -> None:
        """Start both processes (returns at once: `wait_ready` waits for them)."""
        node = f"{self.queue}@%h"
        self.worker = self._spawn(
            ["worker", "-Q", self.queue, "-n", node, "--pool", "solo", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            self.worker_log_path,
        )  # fmt: skip
        # A fresh schedule file: beat's first run of each job is one interval after its start,
        # as for a newly deployed beat.
        self.beat = self._spawn(
            ["beat", "-s", str(self.workdir / "celerybeat-schedule"), "--loglevel", "INFO"],
            self.beat_log_path,
        )
        self.beat_started_at = time.time()

    def _spawn(self, argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
        args = module_cmd("tests.e2e.portal_lab", "celery", self.queue, *argv)
        with log_path.open("ab") as log:
            return subprocess.Popen(
                args, env=self.env, cwd=str(REPO_ROOT), stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, preexec_fn=die_with_parent,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            for name, proc in (("worker", self.worker), ("beat", self.beat)):
                assert proc is not None, "start() first"
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"celery {name} exited with {proc.returncode}:\n{self.logs()}"
                    )
            return " ready." in self.worker_log() and "beat: Starting..." in self.beat_log()

        wait_for(ready, timeout=timeout, interval=0.1, what="celery worker and beat")

    def worker_log(self) -> str:
        return _read(self.worker_log_path)

    def beat_log(self) -> str:
        return _read(self.beat_log_path)

    def logs(self) -> str:
        return f"--- worker ---\n{self.worker_log()}\n--- beat ---\n{self.beat_log()}"

    def stop(self) -> None:
        """Stop both (beat first: nothing new is queued for a stopping worker) and remove this
        run's queue from Redis."""
        for attr in ("beat", "worker"):
            proc = getattr(self, attr)
            setattr(self, attr, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)  # warm shutdown: a running task finishes
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._forget_queue()

    def _forget_queue(self) -> None:
        import redis

        client = redis.Redis.from_url(self.env["REDIS_URL"])
        try:
            # kombu's Redis transport: a list per priority step named after the queue (the
            # worker's reply queues start with its node name, which is the queue name too), and
            # the binding sets of the queue's exchange, which is named after the default queue.
            keys = list(client.scan_iter(match=f"{self.queue}*", count=1000))
            keys += [f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"]
            client.delete(*keys)
        finally:
            client.close()


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


# --- topology ----------------------------------------------------------------------------------


@dataclass
class GatewayHost:
    ns: NetNS
    client_ip: str  # where clients reach it (the advertised endpoint host)
    lan_ip: str


@dataclass
class Site:
    lab: Lab
    client: NetNS
    resource: NetNS
    gateways: list[GatewayHost] = field(default_factory=list)


def _ip(ns: NetNS, *args: str) -> None:
    ns.ip(*args)


def _bridge(ns: NetNS, address: Sequence[str]) -> str:
    name = unique_name("fzpb")
    _ip(ns, "link", "add", name, "type", "bridge")
    for a in address:
        _ip(ns, "addr", "add", a, "dev", name)
    _ip(ns, "link", "set", name, "up")
    return name


def _veth_to_bridge(lab: Lab, gw: NetNS, gw_addr: str, other: NetNS, bridge: str) -> None:
    a, b = unique_name("fzpv"), unique_name("fzpv")
    subprocess.run(
        ["ip", "link", "add", a, "netns", gw.name, "type", "veth", "peer", "name", b,
         "netns", other.name],
        check=True, capture_output=True,
    )  # fmt: skip
    _ip(gw, "addr", "add", gw_addr, "dev", a)
    _ip(gw, "link", "set", a, "up")
    _ip(other, "link", "set", b, "master", bridge)
    _ip(other, "link", "set", b, "up")
    for ns, ifname in ((gw, a), (other, b)):
        ns.disable_offloads(ifname)


def build_site(lab: Lab, gateways: int = 2) -> Site:
    client, resource = lab.namespace("cli"), lab.namespace("res")
    cbr = _bridge(client, [f"{CLIENT_NET}.2/24"])
    rbr = _bridge(resource, [f"{RESOURCE_IP}/24", f"{FORBIDDEN_IP}/24"])
    site = Site(lab, client, resource)
    for i in range(gateways):
        gw = lab.namespace(f"gw{i + 1}")
        client_ip, lan_ip = f"{CLIENT_NET}.{1 + 2 * i}", f"{RESOURCE_NET}.{1 + 2 * i}"
        _veth_to_bridge(lab, gw, f"{client_ip}/24", client, cbr)
        _veth_to_bridge(lab, gw, f"{lan_ip}/24", resource, rbr)
        site.gateways.append(GatewayHost(gw, client_ip, lan_ip))
    return site


# --- portal-side lookups (in the test process, through Django) -------------------------------


def gateway_row(account: Any, external_id: str) -> Any:
    from gateways.models import Gateway

    return Gateway.objects.for_account(account).filter(external_id=external_id).first()


def wait_online(account: Any, external_id: str, timeout: float = 20) -> Any:
    wait_for(
        lambda: getattr(gateway_row(account, external_id), "online", False),
        timeout=timeout,
        what=f"gateway {external_id} online",
    )
    return gateway_row(account, external_id)


# --- processes in namespaces --------------------------------------------------------------------


def module_cmd(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def popen_logged(
    lab: Lab, ns: NetNS, args: list[str], name: str
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = lab.tmpdir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = ns.popen(args, stdout=log, stderr=log, env=env_with_pythonpath(REPO_ROOT),
                        cwd=str(REPO_ROOT), preexec_fn=die_with_parent)  # fmt: skip
    return proc, log_path


@dataclass
class GatewayAgent:
    host: GatewayHost
    process: subprocess.Popen[bytes]
    log_path: Path
    ifname: str
    external_id: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def start_bridge(lab: Lab, host: GatewayHost, socket_path: Path) -> None:
    proc, log = popen_logged(
        lab, host.ns, module_cmd("tests.e2e.portal_lab", "bridge", str(PORTAL_PORT),
                                 str(socket_path)), unique_name("fzbr"),
    )  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge exited: {log.read_text()}")
        out = host.ns.run(["ss", "-Htln", f"sport = :{PORTAL_PORT}"], check=False).stdout
        return bool(out.strip())

    wait_for(listening, timeout=10, what="portal bridge")


def start_gateway(
    lab: Lab, host: GatewayHost, token: str, *, external_id: str, wait_ready: bool = True
) -> GatewayAgent:
    ifname = unique_name("fzpg")
    state = lab.tmpdir / f"state-{ifname}"
    token_file = lab.tmpfile(f"{ifname}.token", token + "\n")
    args = module_cmd(
        "agents.gateway.cli",
        "--portal-url", f"http://127.0.0.1:{PORTAL_PORT}",
        "--token-file", str(token_file),
        "--external-id", external_id,
        "--name", external_id,
        "--endpoint", f"{host.client_ip}:51820",
        "--listen-port", "51820",
        "--state-dir", str(state),
        "--ifname", ifname,
        "--log-json",
    )  # fmt: skip
    proc, log_path = popen_logged(lab, host.ns, args, ifname)
    agent = GatewayAgent(host, proc, log_path, ifname, external_id)
    if wait_ready:

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {proc.returncode}:\n{agent.log()}")
            return '"data plane up"' in agent.log()

        wait_for(ready, timeout=20, what="gateway data plane")
    return agent


def start_xff_bridge(lab: Lab, ns: NetNS, host: str, socket_path: Path) -> str:
    """The portal as ``http://HOST:PORTAL_PORT`` inside ``ns``, behind a forwarding proxy."""
    proc, log = popen_logged(
        lab, ns, module_cmd("tests.e2e.portal_lab", "xff-bridge", host, str(PORTAL_PORT),
                            str(socket_path)), unique_name("fzxb"),
    )  # fmt: skip

    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"bridge exited: {log.read_text()}")
        out = ns.run(["ss", "-Htln", f"sport = :{PORTAL_PORT}"], check=False).stdout
        return bool(out.strip())

    wait_for(listening, timeout=10, what="portal xff bridge")
    return f"http://{host}:{PORTAL_PORT}"


@dataclass
class ClientAgent:
    ns: NetNS
    process: subprocess.Popen[bytes]
    log_path: Path
    ifname: str
    external_id: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out


def start_client(
    lab: Lab, ns: NetNS, portal_url: str, token: str, *, external_id: str
) -> ClientAgent:
    """``firezone-client --portal-url URL --token-file F`` in ``ns``; waits for its data plane."""
    ifname = unique_name("fzpc")
    token_file = lab.tmpfile(f"{ifname}.token", token + "\n")
    args = module_cmd(
        "agents.client.cli",
        "--portal-url", portal_url,
        "--token-file", str(token_file),
        "--external-id", external_id,
        "--name", external_id,
        "--state-dir", str(lab.tmpdir / f"state-{ifname}"),
        "--ifname", ifname,
        "--log-json",
    )  # fmt: skip
    proc, log_path = popen_logged(lab, ns, args, ifname)
    agent = ClientAgent(ns, proc, log_path, ifname, external_id)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"client exited with {proc.returncode}:\n{agent.log()}")
        return '"data plane up"' in agent.log()

    wait_for(ready, timeout=20, what="client data plane")
    return agent


@dataclass
class ProbeRun:
    process: subprocess.Popen[bytes]
    out_path: Path

    def results(self) -> list[dict[str, Any]]:
        self.process.wait(timeout=30)
        return [json.loads(line) for line in self.out_path.read_text().splitlines() if line]


def udp_probe(lab: Lab, ns: NetNS, dst: str, *, interval: float, seconds: float) -> ProbeRun:
    out = lab.tmpdir / f"{unique_name('fzpr')}.jsonl"
    with out.open("wb") as fh:
        proc = ns.popen(
            module_cmd("tests.e2e.portal_lab", "udp-probe", dst, str(UDP_PORT), str(interval),
                       str(seconds)),
            stdout=fh, env=env_with_pythonpath(REPO_ROOT), cwd=str(REPO_ROOT),
            preexec_fn=die_with_parent,
        )  # fmt: skip
    return ProbeRun(proc, out)


def probe(ns: NetNS, *args: str, timeout: float = 10) -> dict[str, Any]:
    """One tests.e2e.probes command in ``ns`` (icmp / connect ...), parsed."""
    proc = ns.run(module_cmd("tests.e2e.probes", *args), timeout=timeout,
                  env=env_with_pythonpath(REPO_ROOT), cwd=str(REPO_ROOT))  # fmt: skip
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


# --- subcommands (run inside namespaces) ----------------------------------------------------------


async def _bridge_main(port: int, path: str) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()  # portal down: the agent sees a failed handshake and retries
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def _xff_bridge_main(host: str, port: int, path: str) -> None:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            up_reader, up_writer = await asyncio.open_unix_connection(path)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        lines = [
            line
            for line in head[:-4].split(b"\r\n")
            if not line.lower().startswith(b"x-forwarded-for:")
        ]
        lines.append(b"X-Forwarded-For: " + peer.encode())
        up_writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


def _udp_echo(port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    while True:
        data, addr = sock.recvfrom(2048)
        sock.sendto(data, addr)


def _udp_probe(dst: str, port: int, interval: float, seconds: float) -> None:
    """Send on a fixed schedule, collect replies in between: a lost reply never delays the
    next probe, so the time resolution stays ``interval``."""
    import select

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    start = time.monotonic()
    sent: dict[int, tuple[float, float]] = {}  # seq -> (unix time, monotonic)
    answered: dict[int, float] = {}
    seq = 0
    end = start + seconds
    while True:
        now = time.monotonic()
        if now >= start + seq * interval and now < end:
            sent[seq] = (time.time(), now)
            with contextlib.suppress(OSError):
                sock.sendto(str(seq).encode(), (dst, port))
            seq += 1
            continue
        if now >= end + 0.25:
            break
        wake = min(start + seq * interval, end + 0.25)
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        while ready:
            try:
                data, _ = sock.recvfrom(2048)
            except (BlockingIOError, OSError):
                break
            with contextlib.suppress(ValueError):
                answered.setdefault(int(data), time.monotonic())
    for n, (wall, mono) in sent.items():
        got = answered.get(n)
        ok = got is not None and got - mono <= 0.25
        print(json.dumps({"seq": n, "sent": wall, "ok": ok}))


def _celery(queue: str, argv: list[str]) -> int:
    from firezone_site.celery import app

    app.conf.task_default_queue = queue
    code: int | None = app.start(argv)
    return int(code or 0)


def main(argv: list[str]) -> int:
    cmd, *args = argv
    if cmd == "celery":
        return _celery(args[0], args[1:])
    if cmd == "bridge":
        asyncio.run(_bridge_main(int(args[0]), args[1]))
    elif cmd == "xff-bridge":
        asyncio.run(_xff_bridge_main(args[0], int(args[1]), args[2]))
    elif cmd == "udp-echo":
        _udp_echo(int(args[0]))
    elif cmd == "udp-probe":
        _udp_probe(args[0], int(args[1]), float(args[2]), float(args[3]))
    else:
        raise SystemExit(f"unknown command {cmd!r}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main(sys.argv[1:]))
