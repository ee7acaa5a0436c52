"""UDP socket helpers: the WireGuard socket, UDP GSO sends and UDP GRO receives.

GSO (``UDP_SEGMENT``) lets one ``sendmsg`` carry up to 64 equally sized datagrams (the last may be
shorter) to one destination; the kernel splits them. GRO (``UDP_GRO``) is the reverse: one
``recvmsg_into`` returns several coalesced datagrams from one source plus the segment size in a
control message. Both cut the per-datagram syscall cost, which dominates a Python data plane.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Sequence

SOL_UDP = 17
UDP_SEGMENT = 103
UDP_GRO = 104
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000  # below the 64 KiB IP limit with headers
SOCKET_BUFFER = 4 * 1024 * 1024

Endpoint = tuple[str, int]


def open_udp(
    port: int = 0, *, host: str = "", ipv6: bool = True, gro: bool = False
) -> socket.socket:
    """A bound UDP socket; dual-stack (IPv4-mapped) when ``ipv6`` is true."""
    if ipv6:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((host or "::", port))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host or "0.0.0.0", port))
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
    if gro:
        enable_gro(sock)
    return sock


def enable_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


def disable_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 0)
    except OSError:
        return False
    return True


def normalize_endpoint(addr: tuple[object, ...]) -> Endpoint:
    """(host, port) from a recvfrom address, unmapping ``::ffff:a.b.c.d``."""
    host = str(addr[0])
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    port = addr[1]
    assert isinstance(port, int)
    return host, port


def sock_address(sock: socket.socket, endpoint: Endpoint) -> tuple[str, int]:
    """The destination tuple ``sock`` accepts for ``endpoint`` (maps IPv4 on a v6 socket)."""
    host, port = endpoint
    if sock.family == socket.AF_INET6 and ":" not in host:
        return f"::ffff:{host}", port
    return host, port


def send_gso(sock: socket.socket, datagrams: Sequence[bytes], address: tuple[str, int]) -> int:
    """Send ``datagrams`` to one destination with as few syscalls as GSO allows.

    All datagrams of one call must have the same size except the last one; a run is cut whenever
    a datagram is larger than the run's segment size or a shorter one has been queued. Returns the
    number of syscalls made.
    """
    calls = 0
    n = len(datagrams)
    i = 0
    while i < n:
        seg = len(datagrams[i])
        j = i + 1
        total = seg
        while j < n and j - i < GSO_MAX_SEGMENTS:
            size = len(datagrams[j])
            if size > seg or total + size > GSO_MAX_BYTES:
                break
            total += size
            j += 1
            if size < seg:
                break  # only the last segment may be short
        if j - i == 1:
            sock.sendto(datagrams[i], address)
        else:
            sock.sendmsg(
                datagrams[i:j], [(SOL_UDP, UDP_SEGMENT, struct.pack("H", seg))], 0, address
            )
        calls += 1
        i = j
    return calls


_GRO_CMSG_SPACE = socket.CMSG_SPACE(4)


def recv_gro(
    sock: socket.socket, buf: bytearray | memoryview, flags: int = 0
) -> tuple[int, int, tuple[object, ...]]:
    """One ``recvmsg_into``: (bytes received, segment size, source address).

    The segment size equals the byte count when the kernel did not coalesce.
    """
    nbytes, ancdata, _flags, addr = sock.recvmsg_into([buf], _GRO_CMSG_SPACE, flags)
    seg = nbytes
    for level, typ, data in ancdata:
        if level == SOL_UDP and typ == UDP_GRO and len(data) >= 2:
            seg = struct.unpack("i", data[:4])[0] if len(data) >= 4 else struct.unpack("H", data)[0]
    return nbytes, seg or nbytes, addr


def split_gro(view: memoryview, nbytes: int, seg: int) -> list[memoryview]:
    if seg >= nbytes:
        return [view[:nbytes]]
    return [view[off : min(off + seg, nbytes)] for off in range(0, nbytes, seg)]
