"""WireGuard handshake cost: complete IKpsk2 handshakes per CPU-second between in-memory Devices.

Everything runs in this process on the `Device` API (sans-IO, no sockets), so the figures are
CPU work only: parsing, mac1, the Noise computations, X25519, session setup. CPU time is
`time.process_time`; each figure is the median of `--repeats` runs because the machine is shared.

* pair: the initiator's packet finds no session (the clock moved past REJECT_AFTER_TIME), so
  `encapsulate` queues it and returns an initiation; the responder answers it; the initiator
  consumes the response (and sends the queued packet). Both ends' full work, one process.
* responder: the gateway's per-client share. Initiations are made beforehand (untimed), then
  only the responder's `decapsulate` of each (consume initiation + create response) is timed.
* initiator: the pair loop again, timing only the initiator's two calls.
* x25519: one exchange with a parsed public key, and one key generation (private -> public), in
  the X25519 implementation the devices use (`agents.wireguard.crypto.x25519`: libsodium when
  PyNaCl is installed, else OpenSSL via `cryptography`; `--x25519 NAME` forces one). The bound is
  the rate if X25519 were the only cost (a handshake side does one key generation and three
  exchanges; the static-static DH is precomputed per peer).

Run:  .venv/bin/python benchmarks/handshakes.py [--count 600] [--repeats 5] [--x25519 openssl]
The LAST line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents.wireguard import Device, crypto, generate_private_key, public_key  # noqa: E402

PACKET = bytes.fromhex("4500001c000000004011000064400002644000010001000100080000")
A_ENDPOINT = ("192.0.2.1", 51820)
B_ENDPOINT = ("192.0.2.2", 51820)
STEP = 200.0  # past REJECT_AFTER_TIME: every packet finds no session and starts a handshake

clock = time.process_time


class Lab:
    def __init__(self) -> None:
        ka, kb, psk = generate_private_key(), generate_private_key(), os.urandom(32)
        self.a = Device(ka, under_load=lambda: False)
        self.b = Device(kb, under_load=lambda: False)
        self.a_pub, self.b_pub = public_key(ka), public_key(kb)
        self.a.add_peer(self.b_pub, preshared_key=psk, endpoint=B_ENDPOINT)
        self.b.add_peer(self.a_pub, preshared_key=psk)
        self.now = 1000.0

    def check(self) -> None:
        if self.a.peer_last_handshake(self.b_pub) != self.now:
            raise RuntimeError("a handshake did not complete")


def pair_rate(lab: Lab, count: int) -> float:
    a, b, b_pub = lab.a, lab.b, lab.b_pub
    cpu0 = clock()
    for _ in range(count):
        lab.now += STEP
        now = lab.now
        for t in a.encapsulate(b_pub, PACKET, now):
            for r in b.decapsulate(t.data, A_ENDPOINT, now).transmits:
                a.decapsulate(r.data, B_ENDPOINT, now)
    cpu = clock() - cpu0
    lab.check()
    return count / cpu


def initiator_rate(lab: Lab, count: int) -> float:
    a, b, b_pub = lab.a, lab.b, lab.b_pub
    spent = 0.0
    for _ in range(count):
        lab.now += STEP
        now = lab.now
        c0 = clock()
        [init] = a.encapsulate(b_pub, PACKET, now)
        spent += clock() - c0
        [resp] = b.decapsulate(init.data, A_ENDPOINT, now).transmits
        c0 = clock()
        a.decapsulate(resp.data, B_ENDPOINT, now)
        spent += clock() - c0
        lab.check()
    return count / spent


def responder_rate(lab: Lab, count: int) -> float:
    a, b, b_pub = lab.a, lab.b, lab.b_pub
    batch: list[tuple[bytes, float]] = []
    for _ in range(count):
        lab.now += STEP
        [init] = a.encapsulate(b_pub, PACKET, lab.now)
        batch.append((init.data, lab.now))
    cpu0 = clock()
    for data, now in batch:
        b.decapsulate(data, A_ENDPOINT, now)
    cpu = clock() - cpu0
    # Each initiation was answered (not dropped as a replay or a flood).
    last = b.decapsulate(batch[-1][0], A_ENDPOINT, batch[-1][1] + 1)
    if last.error != "replayed initiation":
        raise RuntimeError(f"unexpected responder state: {last.error}")
    return count / cpu


def per_op_us(fn: Callable[[], object], count: int) -> float:
    cpu0 = clock()
    for _ in range(count):
        fn()
    return (clock() - cpu0) / count * 1e6


def x25519_costs(count: int) -> tuple[float, float]:
    x25519 = getattr(crypto, "x25519", None)
    if x25519 is None:  # before the implementations were pluggable: cryptography's calls
        from cryptography.hazmat.primitives.asymmetric.x25519 import (
            X25519PrivateKey,
            X25519PublicKey,
        )

        priv = X25519PrivateKey.from_private_bytes(generate_private_key())
        peer = X25519PublicKey.from_public_bytes(public_key(generate_private_key()))
        seed = generate_private_key()
        exchange = per_op_us(lambda: priv.exchange(peer), count)
        keygen = per_op_us(
            lambda: X25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw(),
            count,
        )
        return exchange, keygen
    handle, _ = x25519.load_private(generate_private_key())
    point = x25519.load_public(public_key(generate_private_key()))
    seed = generate_private_key()
    exchange = per_op_us(lambda: x25519.dh(handle, point), count)
    keygen = per_op_us(lambda: x25519.load_private(seed), count)
    return exchange, keygen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--count", type=int, default=600, help="handshakes per measurement")
    parser.add_argument("--repeats", type=int, default=5)
    implementations = getattr(crypto, "X25519_IMPLEMENTATIONS", {})
    parser.add_argument("--x25519", choices=sorted(implementations), help="force one")
    args = parser.parse_args(argv)
    if args.x25519:
        crypto.x25519 = implementations[args.x25519]
    x25519_name = getattr(getattr(crypto, "x25519", None), "name", "openssl")

    lab = Lab()
    pair_rate(lab, 50)  # warm-up
    pairs, responders, initiators, exchanges, keygens = [], [], [], [], []
    for _ in range(args.repeats):
        pairs.append(pair_rate(lab, args.count))
        responders.append(responder_rate(lab, args.count))
        initiators.append(initiator_rate(lab, args.count))
        exchange, keygen = x25519_costs(args.count)
        exchanges.append(exchange)
        keygens.append(keygen)

    pair = statistics.median(pairs)
    responder = statistics.median(responders)
    initiator = statistics.median(initiators)
    exchange = statistics.median(exchanges)
    keygen = statistics.median(keygens)
    side_x25519 = keygen + 3 * exchange
    bound_side = 1e6 / side_x25519
    bound_pair = 1e6 / (2 * side_x25519)

    def spread(values: list[float]) -> str:
        return f"(runs: {', '.join(f'{v:,.0f}' for v in values)})"

    print(f"{args.repeats} runs of {args.count} handshakes each; medians, per CPU-second")
    print(f"pair (both ends, one process): {pair:8,.0f}/s  {spread(pairs)}")
    print(f"responder share:               {responder:8,.0f}/s  {spread(responders)}")
    print(f"initiator share:               {initiator:8,.0f}/s  {spread(initiators)}")
    print(f"X25519 ({x25519_name}): exchange {exchange:.1f} us, key generation {keygen:.1f} us")
    print(
        f"X25519-only bound: {bound_side:,.0f}/s per side, {bound_pair:,.0f}/s for the pair "
        f"(1 key generation + 3 exchanges per side)"
    )
    responder_us = 1e6 / responder
    print(
        f"responder: {responder_us:.0f} us per handshake, X25519 {side_x25519:.0f} us of it "
        f"({side_x25519 / responder_us:.0%}), everything else {responder_us - side_x25519:.0f} us"
    )
    print(
        f"goal 5,000/s/core: responder {'met' if responder >= 5000 else 'NOT met'}, "
        f"pair {'met' if pair >= 5000 else 'NOT met'}"
    )
    result = {
        "count": args.count,
        "repeats": args.repeats,
        "x25519": x25519_name,
        "handshakes_per_s": round(pair),
        "responder_handshakes_per_s": round(responder),
        "initiator_handshakes_per_s": round(initiator),
        "x25519_us": round(exchange, 2),
        "x25519_keygen_us": round(keygen, 2),
        "x25519_bound_responder_per_s": round(bound_side),
        "x25519_bound_pair_per_s": round(bound_pair),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
