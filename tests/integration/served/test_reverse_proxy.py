"""The production recipe (docs/deploy.md): the documented nginx site, run as written (ports, paths
and certificate swapped for test ones), in front of a real served portal. Slow-header and
slow-body clients are cut, an oversized body is refused, normal requests and gateway websockets
pass, and the portal sees the real client address, not a forged X-Forwarded-For."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect

from accounts.models import Account
from gateways import services
from gateways.models import Gateway

from .conftest import REPO_ROOT, ServedPortal, free_port, serve_portal, settled

pytestmark = pytest.mark.django_db(transaction=True)

HOST = "portal.example.com"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
#: The documented timeouts (asserted to be in the snippet, so doc and test move together).
HEADER_TIMEOUT_S = 10
BODY_TIMEOUT_S = 10
#: A loaded machine may run nginx's timer late; the cut must still come well before this.
MARGIN_S = 8


def documented_site() -> str:
    blocks = re.findall(r"```nginx\n(.*?)```", DEPLOY_DOC.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/deploy.md must hold exactly one nginx block"
    return blocks[0]


def substitute(site: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert site.count(old) == 1, f"docs/deploy.md's nginx block no longer has {old!r}"
        site = site.replace(old, new)
    return site


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "fullchain.pem", tmp / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Proxy:
    port: int
    cert: Path
    prefix: Path
    portal: ServedPortal

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    @contextlib.contextmanager
    def socket(self, source: str = "127.0.0.1") -> Iterator[ssl.SSLSocket]:
        raw = socket.create_connection(
            ("127.0.0.1", self.port), timeout=5, source_address=(source, 0)
        )
        with self.tls().wrap_socket(raw, server_hostname=HOST) as s:
            yield s

    def request(self, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        with self.socket() as s:
            s.sendall(head.encode() + body)
            data = b""
            with contextlib.suppress(TimeoutError, ConnectionError):
                while chunk := s.recv(65536):
                    data += chunk
        status_line, _, rest = data.partition(b"\r\n")
        header_text, _, payload = rest.partition(b"\r\n\r\n")
        headers = {}
        for line in header_text.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        return int(status_line.split(b" ")[1]), headers, payload

    def log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="module")
def proxy(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package nginx; .ci/run installs it)")
    tmp = tmp_path_factory.mktemp("proxy")
    with serve_portal(tmp, serve_args=["--proxy-headers"]) as portal:
        cert, key = self_signed(tmp)
        port = free_port()
        site = substitute(
            documented_site(),
            {
                "server 127.0.0.1:8000;": f"server 127.0.0.1:{portal.port};",
                "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
                "/etc/ssl/firezone/fullchain.pem": str(cert),
                "/etc/ssl/firezone/privkey.pem": str(key),
            },
        )
        for directive in (
            f"client_header_timeout {HEADER_TIMEOUT_S}s;",
            f"client_body_timeout   {BODY_TIMEOUT_S}s;",
            "client_max_body_size        1m;",
        ):
            assert directive in site
        prefix = tmp / "nginx"
        temp = prefix / "temp"
        temp.mkdir(parents=True)
        (prefix / "site.conf").write_text(site)
        temps = "\n".join(
            f"    {kind}_temp_path {temp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"""{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / "access.log"};
{temps}
    include {prefix / "site.conf"};
}}
"""
        )
        check = subprocess.run(
            [nginx, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert check.returncode == 0, check.stderr
        process = subprocess.Popen(
            [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        proxy = Proxy(port, cert, prefix, portal)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    with proxy.socket():
                        break
                except (OSError, ssl.SSLError):
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"nginx did not start:\n{proxy.log()}") from None
                    time.sleep(0.1)
            yield proxy
        finally:
            process.send_signal(signal.SIGQUIT)  # graceful stop of this nginx (master + worker)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


def get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"


def time_until_closed(s: ssl.SSLSocket, trickle: bytes, started: float, limit: float) -> float:
    """Send ``trickle`` one byte per second until the server closes; seconds since ``started``."""
    s.settimeout(1.0)
    for byte in trickle:
        try:
            s.sendall(bytes([byte]))
            if s.recv(65536) == b"":
                break
        except TimeoutError:
            pass  # nothing from the server yet: still held open
        except (ConnectionError, ssl.SSLError, OSError):
            break
        if time.monotonic() - started > limit:
            break
    return time.monotonic() - started


def test_a_slow_header_client_is_cut_and_a_slow_body_too_while_normal_requests_pass(
    proxy: Proxy,
) -> None:
    limit = HEADER_TIMEOUT_S + MARGIN_S
    results: dict[str, float] = {}
    responses: dict[str, bytes] = {}

    def slow_header() -> None:
        with proxy.socket() as s:
            started = time.monotonic()
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\n".encode())
            results["header"] = time_until_closed(s, b"X-Slow: " + b"a" * 200, started, limit + 5)

    def slow_body() -> None:
        with proxy.socket() as s:
            head = (
                f"POST /sign-in/ HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n"
                "Content-Length: 1000\r\n\r\n"
            )
            s.sendall(head.encode() + b"x" * 10)
            started = time.monotonic()
            s.settimeout(limit + 5)
            data = b""
            with contextlib.suppress(TimeoutError, ConnectionError, ssl.SSLError):
                while chunk := s.recv(65536):
                    data += chunk
            results["body"] = time.monotonic() - started
            responses["body"] = data

    threads = [threading.Thread(target=slow_header), threading.Thread(target=slow_body)]
    for t in threads:
        t.start()
    time.sleep(2)
    # While both slow clients are held, a normal request passes through to the portal.
    status, headers, body = proxy.request(get("/healthz"))
    assert status == 200 and json.loads(body) == {"status": "ok"}, (status, body)
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    for t in threads:
        t.join(limit + 15)
    # Cut by nginx's timers: not before the documented timeout, and not long after it.
    assert HEADER_TIMEOUT_S - 1 <= results["header"] < limit, results
    assert BODY_TIMEOUT_S - 1 <= results["body"] < limit, results
    assert b"200 OK" not in responses["body"]
    assert "client timed out" in proxy.log()


def test_a_body_over_the_limit_is_refused_before_the_portal(proxy: Proxy) -> None:
    head = (
        f"POST /sign-in/ HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {2 * 1024 * 1024}\r\nConnection: close\r\n\r\n"
    )
    status, _, _ = proxy.request(head)
    assert status == 413
    assert "client intended to send too large body" in proxy.log()
    # A small body still reaches the portal (which answers a bare POST with its CSRF refusal).
    small, _, _ = proxy.request(
        f"POST /sign-in/ HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\n"
        "Connection: close\r\n\r\n",
        b"a=b",
    )
    assert small == 403


async def test_gateways_connect_through_it_and_the_portal_sees_the_real_client_address(
    proxy: Proxy, acme: Account
) -> None:
    _site, issued = await database_sync_to_async(services.create_site_with_token)(acme, name="P")
    query = urlencode(
        {
            "external_id": "gw-proxied",
            "name": "gw-proxied",
            "public_key": services.generate_key_pair()[1],
            "version": "0.1.0",
            "protocol": "1",
        }
    )
    async with connect(
        f"wss://{HOST}:{proxy.port}/gateway/websocket?{query}",
        host="127.0.0.1",
        port=proxy.port,
        local_addr=("127.0.0.2", 0),  # loopback, but not nginx's own upstream source address
        ssl=proxy.tls(),
        server_hostname=HOST,
        additional_headers={
            "Authorization": f"Bearer {issued.secret}",
            "X-Forwarded-For": "198.51.100.66",  # forged: nginx must overwrite it
        },
        ping_interval=None,
        open_timeout=10,
    ) as ws:
        init = json.loads(await ws.recv())
        assert init["type"] == "init"
        await ws.send('{"type":"heartbeat"}')
        assert json.loads(await ws.recv())["type"] == "heartbeat_reply"
        gateway = await database_sync_to_async(Gateway.objects.get)(pk=init["gateway_id"])
    await settled("gw-proxied")
    assert ipaddress.ip_address(gateway.last_seen_remote_ip) == ipaddress.ip_address("127.0.0.2")
