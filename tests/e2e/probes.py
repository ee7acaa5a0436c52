"""Small network probes to run inside a namespace: ``python -m tests.e2e.probes CMD ARGS``.

Each prints one JSON object on stdout, so tests assert on structured results instead of parsing
tool output (no ping/tcpdump needed):

  icmp DST [TIMEOUT]            echo request; reply, ICMP error (type/code/from) or timeout
  connect DST PORT [TIMEOUT]    TCP connect; ok or the errno name
  fetch DST PORT PATH           HTTP GET; byte count and sha256 of the body
  echo-server PORT              TCP echo server (runs until killed)
  echo DST PORT NBYTES          send NBYTES, read them back; byte counts both ways and whether equal
  udp-listen PORT SECONDS       datagrams arriving on PORT within SECONDS (stops early after one
                                whose payload ends with "#last")
  raw-udp SRC DST PORT [TAG]    one UDP datagram with a forged source address (IP_HDRINCL);
                                the payload names SRC and ends with TAG
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import select
import socket
import struct
import sys
import time


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmp(dst: str, timeout: float = 2.0) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident, seq = os.getpid() & 0xFFFF, 1
    body = b"fz-probe" * 4
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    msg = struct.pack("!BBHHH", 8, 0, _checksum(hdr + body), ident, seq) + body
    sock.sendto(msg, (dst, 0))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([sock], [], [], left)
        if not r:
            break
        data, (src, _) = sock.recvfrom(65535)
        ihl = (data[0] & 15) * 4
        typ, code = data[ihl], data[ihl + 1]
        if typ == 0 and struct.unpack_from("!H", data, ihl + 4)[0] == ident and src == dst:
            return {"reply": True, "from": src}
        if typ in (3, 11, 12):
            # the quoted packet must be our echo request to dst
            inner = data[ihl + 8 :]
            if len(inner) >= 28 and socket.inet_ntoa(inner[16:20]) == dst:
                return {"reply": False, "type": typ, "code": code, "from": src}
    return {"reply": False, "timeout": True}


def connect(dst: str, port: int, timeout: float = 3.0) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect((dst, port))
    except TimeoutError:
        return {"ok": False, "error": "timeout"}
    except OSError as exc:
        return {"ok": False, "error": errno.errorcode.get(exc.errno or 0, str(exc))}
    finally:
        sock.close()
    return {"ok": True}


def fetch(dst: str, port: int, path: str) -> dict[str, object]:
    sock = socket.create_connection((dst, port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {dst}\r\n\r\n".encode())
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    sock.close()
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
    return {"status": status, "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def echo_server(port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(8)
    print(json.dumps({"listening": port}), flush=True)
    while True:
        conn, _ = srv.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)


def echo(dst: str, port: int, nbytes: int) -> dict[str, object]:
    payload = os.urandom(nbytes)
    sock = socket.create_connection((dst, port), timeout=10)
    sock.sendall(payload)
    sock.shutdown(socket.SHUT_WR)
    chunks = []
    while data := sock.recv(65536):
        chunks.append(data)
    sock.close()
    back = b"".join(chunks)
    return {"sent": nbytes, "received": len(back), "equal": back == payload}


def udp_listen(port: int, seconds: float) -> dict[str, object]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print(json.dumps({"listening": port}), flush=True)
    sources: list[str] = []
    payloads: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        r, _, _ = select.select([sock], [], [], left)
        if r:
            data, (src, _) = sock.recvfrom(65535)
            sources.append(src)
            payloads.append(data.decode(errors="replace"))
            if payloads[-1].endswith("#last"):
                break
    return {"count": len(sources), "sources": sources, "payloads": payloads}


def raw_udp(src: str, dst: str, port: int, tag: str = "") -> dict[str, object]:
    payload = f"from {src}{tag}".encode()
    udp_len = 8 + len(payload)
    s, d = socket.inet_aton(src), socket.inet_aton(dst)
    pseudo = s + d + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", 40001, port, udp_len, 0) + payload
    udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, s, d)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sock.sendto(ip + udp, (dst, 0))
    return {"sent": True}


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    result: dict[str, object]
    if cmd == "icmp":
        result = icmp(args[0], float(args[1]) if len(args) > 1 else 2.0)
    elif cmd == "connect":
        result = connect(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 3.0)
    elif cmd == "fetch":
        result = fetch(args[0], int(args[1]), args[2])
    elif cmd == "echo-server":
        echo_server(int(args[0]))
        return 0
    elif cmd == "echo":
        result = echo(args[0], int(args[1]), int(args[2]))
    elif cmd == "udp-listen":
        result = udp_listen(int(args[0]), float(args[1]))
    elif cmd == "raw-udp":
        result = raw_udp(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else "")
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
