"""Point-to-point tunnel runner for IO-layer tests: TUN + one WireGuard peer + an IO driver.

Run inside a namespace: ``python -m tests.e2e.p2p_runner --private-key B64 --peer B64
--address 100.64.0.2/32 --route 10.202.0.0/24 [--endpoint IP:PORT] [--listen-port N] --mode M``.
Prints ``READY <ifname>`` once the device is up; SIGTERM stops it and removes the device.
"""

from __future__ import annotations

import argparse
import base64
import signal
import sys
import time
from types import FrameType

from agents.io import driver as drv
from agents.io.engine import PeerEngine
from agents.io.tun import create_tun
from agents.io.udp import open_udp
from agents.wireguard.device import Device


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--private-key", required=True)
    p.add_argument("--peer", required=True)
    p.add_argument("--endpoint")
    p.add_argument("--listen-port", type=int, default=0)
    p.add_argument("--address", action="append", default=[])
    p.add_argument("--route", action="append", default=[])
    p.add_argument("--mode", default="single", choices=drv.MODES)
    p.add_argument("--ifname")
    args = p.parse_args()
    device = Device(base64.b64decode(args.private_key), wall_offset=time.time() - time.monotonic())
    endpoint = None
    if args.endpoint:
        host, port = args.endpoint.rsplit(":", 1)
        endpoint = (host, int(port))
    peer = base64.b64decode(args.peer)
    device.add_peer(peer, endpoint=endpoint)
    tun = create_tun(
        args.ifname,
        addresses=args.address,
        routes=args.route,
        vnet_hdr=drv.needs_vnet_hdr(args.mode),
    )
    sock = open_udp(args.listen_port)
    d = drv.make_driver(args.mode, PeerEngine(device, peer), tun, sock)

    def on_signal(_sig: int, _frame: FrameType | None) -> None:
        d.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"READY {tun.name}", flush=True)
    try:
        d.run()
    finally:
        tun.close()
        sock.close()
        d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
