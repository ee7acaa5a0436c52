"""Interop: our sans-IO Device against wireguard-go in network namespaces.

Two namespaces joined by a veth pair: `ours` only holds a UDP socket (created from a thread that
entered the namespace), `theirs` runs `wireguard-go` with a tunnel address. No TUN device on our
side: ICMP packets are built by hand, encapsulated and sent over the plain socket.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import itertools
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agents.wireguard import (
    Decapsulated,
    Device,
    Transmit,
    crypto,
    generate_private_key,
    public_key,
)
from agents.wireguard.noise import LABEL_MAC1

pytestmark = pytest.mark.e2e

WG_GO = shutil.which("wireguard-go") or "/usr/bin/wireguard-go"
WG = shutil.which("wg") or "/usr/bin/wg"
OUR_TUNNEL = "100.64.0.2"
THEIR_TUNNEL = "100.64.0.1"
OUR_UNDERLAY = "10.77.0.1"
THEIR_UNDERLAY = "10.77.0.2"
THEIR_PORT = 51820

if os.geteuid() != 0 or not os.path.exists(WG_GO) or not os.path.exists(WG):
    # A per-test skip (not a module-level one), so CI=true reports each test that did not run.
    pytestmark = [pytestmark, pytest.mark.skip(reason="needs root, wireguard-go and wg")]

_counter = itertools.count()
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True, timeout=20)


def _socket_in_netns(netns: str, bind: tuple[str, int]) -> socket.socket:
    """A UDP socket living in `netns` (setns only affects the calling thread)."""
    result: list[socket.socket | BaseException] = []

    def enter_and_bind() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(bind)
            result.append(s)
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=enter_and_bind)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def icmp_echo(src: str, dst: str, ident: int, seq: int, *, reply: bool = False) -> bytes:
    payload = b"firezone-py interop " + seq.to_bytes(4, "big")
    icmp = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq) + payload
    icmp = icmp[:2] + _checksum(icmp).to_bytes(2, "big") + icmp[4:]
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(icmp),
        seq & 0xFFFF,
        0,
        64,
        1,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
    return header + icmp


def udp_packet(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """IPv4 + UDP with checksum 0 (allowed for UDP over IPv4)."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        1,
        0,
        64,
        17,
        0,
        socket.inet_aton(src[0]),
        socket.inet_aton(dst[0]),
    )
    header = header[:10] + _checksum(header).to_bytes(2, "big") + header[12:]
    return header + udp


def parse_udp(packet: bytes) -> tuple[tuple[str, int], tuple[str, int], bytes] | None:
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 15) * 4
    sport, dport, length, _sum = struct.unpack_from("!HHHH", packet, ihl)
    return (
        (socket.inet_ntoa(packet[12:16]), sport),
        (socket.inet_ntoa(packet[16:20]), dport),
        packet[ihl + 8 : ihl + length],
    )


def parse_icmp(packet: bytes) -> tuple[str, str, int, int, int] | None:
    """(src, dst, icmp type, ident, seq) of an IPv4 ICMP echo packet."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 15) * 4
    kind, _code, _sum, ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    return socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20]), kind, ident, seq


@dataclass
class Lab:
    ours: str
    theirs: str
    ifname: str
    their_private: bytes
    sock: socket.socket
    tmp: Path
    proc: subprocess.Popen[bytes]
    clock_offset: float = 0.0
    handshake_responses: int = 0
    received: list[bytes] = field(default_factory=list)

    @property
    def their_public(self) -> bytes:
        return public_key(self.their_private)

    def now(self) -> float:
        return time.monotonic() + self.clock_offset

    def wg_set(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.theirs, WG, "set", self.ifname, *args)

    def send(self, transmits: list[Transmit]) -> None:
        for t in transmits:
            self.sock.sendto(t.data, t.endpoint)

    def pump(self, device: Device, until: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Receive and process datagrams (and timers) until `until()` or the timeout."""
        deadline = time.monotonic() + timeout
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(min(remaining, 0.1))
            try:
                data, source = self.sock.recvfrom(65536)
            except TimeoutError:
                self.send(device.handle_timeout(self.now()))
                continue
            if data[0] == 2:
                self.handshake_responses += 1
            result = device.decapsulate(data, source, self.now())
            self.send(result.transmits)
            if result.packet is not None:
                self.received.append(result.packet)
        return True


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    n = next(_counter)
    tag = f"{os.getpid()}{n}"
    ours, theirs = f"fzwgo{tag}", f"fzwgt{tag}"
    veth_a, veth_b = f"fzva{tag}"[:15], f"fzvb{tag}"[:15]
    ifname = f"fzwg{tag}"[:15]
    created: list[str] = []
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None
    try:
        for ns in (ours, theirs):
            _run("ip", "netns", "add", ns)
            created.append(ns)
        _run(
            "ip",
            "link",
            "add",
            veth_a,
            "netns",
            ours,
            "type",
            "veth",
            "peer",
            veth_b,
            "netns",
            theirs,
        )
        _run("ip", "-n", ours, "addr", "add", f"{OUR_UNDERLAY}/24", "dev", veth_a)
        _run("ip", "-n", theirs, "addr", "add", f"{THEIR_UNDERLAY}/24", "dev", veth_b)
        for ns, dev in ((ours, veth_a), (theirs, veth_b)):
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        log = (tmp_path / "wireguard-go.log").open("wb")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", theirs, WG_GO, "-f", ifname],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "LOG_LEVEL": "verbose"},
        )
        log.close()
        sock_path = Path(f"/var/run/wireguard/{ifname}.sock")
        deadline = time.monotonic() + 10
        while not sock_path.exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("wireguard-go did not start")
            time.sleep(0.02)
        their_private = generate_private_key()
        key_file = tmp_path / "their.key"
        key_file.write_text(base64.b64encode(their_private).decode() + "\n")
        key_file.chmod(0o600)
        _run(
            "ip", "netns", "exec", theirs, WG, "set", ifname,
            "listen-port", str(THEIR_PORT), "private-key", str(key_file),
        )  # fmt: skip
        _run(
            "ip",
            "-n",
            theirs,
            "addr",
            "add",
            f"{THEIR_TUNNEL}/32",
            "peer",
            OUR_TUNNEL,
            "dev",
            ifname,
        )
        _run("ip", "-n", theirs, "link", "set", ifname, "mtu", "1280", "up")
        sock = _socket_in_netns(ours, (OUR_UNDERLAY, 0))
        yield Lab(ours, theirs, ifname, their_private, sock, tmp_path, proc)
    finally:
        if sock is not None:
            sock.close()
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in created:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


def _add_us_as_peer(lab: Lab, device: Device, psk: bytes | None, with_endpoint: bool) -> None:
    args = ["peer", base64.b64encode(device.public_key).decode(), "allowed-ips", f"{OUR_TUNNEL}/32"]
    if psk is not None:
        psk_file = lab.tmp / "psk"
        psk_file.write_text(base64.b64encode(psk).decode() + "\n")
        args += ["preshared-key", str(psk_file)]
    if with_endpoint:
        args += ["endpoint", f"{OUR_UNDERLAY}:{lab.sock.getsockname()[1]}"]
    lab.wg_set(*args)


def _ping_through(lab: Lab, device: Device, seq: int) -> bool:
    """Send one echo request through the tunnel and wait for wireguard-go's kernel to answer."""
    request = icmp_echo(OUR_TUNNEL, THEIR_TUNNEL, 0x4242, seq)
    lab.send(device.encapsulate(lab.their_public, request, lab.now()))

    def answered() -> bool:
        return any(
            parse_icmp(p) == (THEIR_TUNNEL, OUR_TUNNEL, 0, 0x4242, seq) for p in lab.received
        )

    return lab.pump(device, answered)


def _device(lab: Lab, psk: bytes | None = None) -> Device:
    device = Device(
        generate_private_key(), wall_offset=time.time() - time.monotonic() - lab.clock_offset
    )
    device.add_peer(lab.their_public, preshared_key=psk, endpoint=(THEIR_UNDERLAY, THEIR_PORT))
    return device


@pytest.mark.parametrize("with_psk", [False, True], ids=["no-psk", "psk"])
def test_it_completes_a_handshake_it_initiates_and_gets_ping_replies(
    lab: Lab, with_psk: bool
) -> None:
    psk = os.urandom(32) if with_psk else None
    device = _device(lab, psk)
    _add_us_as_peer(lab, device, psk, with_endpoint=False)

    assert _ping_through(lab, device, 1), "no echo reply through wireguard-go"
    assert lab.handshake_responses == 1
    assert device.peer_last_handshake(lab.their_public) is not None
    # The session is established: the next ping needs no new handshake.
    assert _ping_through(lab, device, 2)
    assert lab.handshake_responses == 1


def test_it_fails_the_handshake_when_the_preshared_keys_differ(lab: Lab) -> None:
    device = _device(lab, os.urandom(32))
    _add_us_as_peer(lab, device, os.urandom(32), with_endpoint=False)

    request = icmp_echo(OUR_TUNNEL, THEIR_TUNNEL, 0x4242, 1)
    lab.send(device.encapsulate(lab.their_public, request, lab.now()))
    lab.pump(device, lambda: False, timeout=1.0)
    assert lab.received == []
    assert device.peer_last_handshake(lab.their_public) is None


def test_it_answers_a_handshake_wireguard_go_initiates(lab: Lab) -> None:
    device = _device(lab)
    _add_us_as_peer(lab, device, None, with_endpoint=True)
    # A UDP socket in wireguard-go's namespace: its datagram to our tunnel address makes
    # wireguard-go initiate the handshake.
    their_app = _socket_in_netns(lab.theirs, ("0.0.0.0", 0))
    try:
        their_app.sendto(b"hello from wireguard-go's side", (OUR_TUNNEL, 9999))
        assert lab.pump(device, lambda: bool(lab.received)), "no packet from wireguard-go"
        assert lab.handshake_responses == 0  # we were the responder
        assert device.peer_last_handshake(lab.their_public) is not None
        parsed = parse_udp(lab.received[0])
        assert parsed is not None
        src, dst, payload = parsed
        assert src[0] == THEIR_TUNNEL and dst == (OUR_TUNNEL, 9999)
        assert payload == b"hello from wireguard-go's side"

        reply = udp_packet(dst, src, b"hello back through our Device")
        lab.send(device.encapsulate(lab.their_public, reply, lab.now()))
        their_app.settimeout(5)
        data, sender = their_app.recvfrom(2048)
        assert data == b"hello back through our Device"
        assert sender == (OUR_TUNNEL, 9999)
    finally:
        their_app.close()


def test_it_rekeys_after_rekey_after_time_while_traffic_continues(lab: Lab) -> None:
    device = _device(lab)
    _add_us_as_peer(lab, device, None, with_endpoint=False)
    assert _ping_through(lab, device, 1)
    first = device.peer_last_handshake(lab.their_public)
    assert lab.handshake_responses == 1

    # wireguard-go drops an initiation that follows the previous one within 20 ms (flood guard).
    time.sleep(0.05)
    # Our clock jumps past REKEY_AFTER_TIME (wireguard-go's does not, so its session is fresh):
    # the next send uses the old session and also starts a new handshake.
    lab.clock_offset += 121.0
    assert _ping_through(lab, device, 2)
    assert lab.pump(device, lambda: lab.handshake_responses >= 2)
    second = device.peer_last_handshake(lab.their_public)
    assert first is not None and second is not None and second > first

    # Traffic keeps flowing on the new session (several pings, no further handshakes).
    for seq in range(3, 6):
        assert _ping_through(lab, device, seq)
    assert lab.handshake_responses == 2


def test_it_follows_wireguard_go_cookie_replies_under_load(lab: Lab) -> None:
    """Flood wireguard-go with (mac1-valid, undecryptable) initiations until it asks for
    cookies; our handshake must then decrypt its XChaCha20Poly1305 cookie reply and succeed
    with a mac2 that wireguard-go verifies."""
    flood_sock = _socket_in_netns(lab.ours, (OUR_UNDERLAY, 0))
    mac1_key = crypto.hash_(LABEL_MAC1, lab.their_public)
    junk = []
    for _ in range(256):
        body = (1).to_bytes(4, "little") + os.urandom(112)
        junk.append(body + crypto.mac(mac1_key, body) + bytes(16))
    cookies_seen: list[str | None] = []

    def recording(device: Device) -> Device:
        real_receive = device.decapsulate

        def recording_decapsulate(data: bytes, source: tuple[str, int], now: float) -> Decapsulated:
            result = real_receive(data, source, now)
            if data[0] == 3:
                cookies_seen.append(result.error)
            return result

        device.decapsulate = recording_decapsulate  # type: ignore[method-assign]
        return device

    def flood() -> None:
        for _ in range(12):
            for msg in junk:
                flood_sock.sendto(msg, (THEIR_UNDERLAY, THEIR_PORT))

    def flood_answered_with_cookies() -> bool:
        flood_sock.settimeout(1.0)
        try:
            while True:
                data = flood_sock.recv(2048)
                if data[0] == 3:
                    return True
        except TimeoutError:
            return False

    try:
        request = icmp_echo(OUR_TUNNEL, THEIR_TUNNEL, 0x4343, 1)
        # On a busy machine wireguard-go can drain a flood before our initiation arrives and
        # answer it normally: then start over with a fresh device (a new key, so a new peer).
        for _round in range(4):
            device = recording(_device(lab))
            _add_us_as_peer(lab, device, None, with_endpoint=False)
            base = lab.handshake_responses

            def answered_or_cookie(base: int = base) -> bool:
                return bool(cookies_seen) or lab.handshake_responses > base

            flood()
            time.sleep(0.05)  # let wireguard-go's socket drain; it stays loaded for 1 s
            lab.send(device.encapsulate(lab.their_public, request, lab.now()))
            # A flood overflows socket buffers, so an initiation can be lost: allow a few.
            for _attempt in range(3):
                if lab.pump(device, answered_or_cookie, 1.5):
                    break
                flood()
                time.sleep(0.05)
                lab.clock_offset += 5.5
                lab.send(device.handle_timeout(lab.now()))
            if cookies_seen:
                break
            time.sleep(1.1)  # wireguard-go leaves its under-load state after 1 s
        if not cookies_seen and not flood_answered_with_cookies():
            pytest.skip("could not put wireguard-go under load on this machine")
        assert cookies_seen == [None], "no cookie reply, or our device refused it"
        assert lab.handshake_responses == base

        # Retry (our clock past the retransmission timer) while wireguard-go is still loaded.
        flood_sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:  # forget the first round's cookie replies
                flood_sock.recv(2048)
        flood_sock.setblocking(True)
        # A flood overflows socket buffers, so a retry can be lost: allow a few.
        for _attempt in range(3):
            flood()
            time.sleep(0.05)  # let wireguard-go's socket drain; it stays loaded for 1 s
            lab.clock_offset += 5.5
            [retry] = device.handle_timeout(lab.now())
            assert retry.data[0] == 1 and retry.data[-16:] != bytes(16)  # mac2 from the cookie
            lab.send([retry])
            if lab.pump(device, lambda: lab.handshake_responses > base, timeout=1.5):
                break
        assert lab.handshake_responses == base + 1
        assert cookies_seen == [None]  # no second cookie: wireguard-go accepted our mac2
        assert flood_answered_with_cookies(), "wireguard-go was not under load for the retry"

        def answered() -> bool:
            return any(
                parse_icmp(p) == (THEIR_TUNNEL, OUR_TUNNEL, 0, 0x4343, 1) for p in lab.received
            )

        assert lab.pump(device, answered)
    finally:
        flood_sock.close()
