"""Two Devices wired together in memory with a manual clock (the sans-IO test harness)."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from agents.wireguard import Decapsulated, Device, Transmit

A_ENDPOINT = ("192.0.2.1", 51820)
B_ENDPOINT = ("192.0.2.2", 51820)
START = 1000.0


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return r.randbytes


def private_key(seed: int) -> bytes:
    key = bytearray(random.Random(f"key{seed}").randbytes(32))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def ipv4_packet(payload: bytes = b"hello", ident: int = 0) -> bytes:
    """A minimal IPv4/UDP packet (checksums are not the device's business)."""
    udp = struct.pack("!HHHH", 1234, 80, 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident, 0, 64, 17, 0,
        bytes([100, 64, 0, 2]), bytes([10, 0, 0, 1]),
    )  # fmt: skip
    return header + udp


@dataclass
class Side:
    name: str
    device: Device
    endpoint: tuple[str, int]
    inbox: list[bytes] = field(default_factory=list)
    results: list[Decapsulated] = field(default_factory=list)


class Pair:
    """`a` and `b` know each other; `a` knows b's endpoint (b learns a's from the handshake).

    Datagrams are delivered immediately (recursively, replies included) unless `wire_up` is
    False, in which case they are recorded in `dropped`. Every sent datagram is in `sent`.
    """

    def __init__(
        self,
        *,
        psk_a: bytes | None = None,
        psk_b: bytes | None = None,
        seed: int = 1,
        b_knows_a: bool = False,
        under_load_b: Callable[[], bool] | None = None,
        persistent_keepalive_a: int | None = None,
    ) -> None:
        self.now = START
        self.a = Side("a", Device(private_key(seed), rng=seeded_rng(seed * 10 + 1)), A_ENDPOINT)
        self.b = Side(
            "b",
            Device(private_key(seed + 1), rng=seeded_rng(seed * 10 + 2), under_load=under_load_b),
            B_ENDPOINT,
        )
        self.a.device.add_peer(
            self.b.device.public_key,
            preshared_key=psk_a,
            endpoint=B_ENDPOINT,
            persistent_keepalive=persistent_keepalive_a,
        )
        self.b.device.add_peer(
            self.a.device.public_key,
            preshared_key=psk_b,
            endpoint=A_ENDPOINT if b_knows_a else None,
        )
        self.wire_up = True
        self.sent: list[tuple[str, Transmit]] = []
        self.dropped: list[tuple[str, Transmit]] = []

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def deliver(self, sender: Side, transmits: list[Transmit]) -> None:
        for t in transmits:
            self.sent.append((sender.name, t))
            receiver = self.other(sender)
            assert t.endpoint == receiver.endpoint, f"{sender.name} sent to {t.endpoint}"
            if not self.wire_up:
                self.dropped.append((sender.name, t))
                continue
            self.receive(receiver, t.data, sender.endpoint)

    def receive(self, receiver: Side, data: bytes, source: tuple[str, int]) -> Decapsulated:
        result = receiver.device.decapsulate(data, source, self.now)
        receiver.results.append(result)
        if result.packet is not None:
            receiver.inbox.append(result.packet)
        self.deliver(receiver, result.transmits)
        return result

    def send(self, sender: Side, packet: bytes) -> list[Transmit]:
        transmits = sender.device.encapsulate(
            self.other(sender).device.public_key, packet, self.now
        )
        self.deliver(sender, transmits)
        return transmits

    def tick(self, seconds: float) -> list[tuple[str, Transmit]]:
        """Advance the clock and run both devices' timers; returns what they sent."""
        self.now += seconds
        before = len(self.sent)
        for side in (self.a, self.b):
            self.deliver(side, side.device.handle_timeout(self.now))
        return self.sent[before:]

    def handshake(self) -> None:
        self.send(self.a, ipv4_packet(b"first"))
        assert self.b.inbox[-1] == ipv4_packet(b"first")


def kinds(sent: list[tuple[str, Transmit]]) -> list[tuple[str, int, int]]:
    """(sender, message type, length) of each datagram, for compact assertions."""
    return [(who, t.data[0], len(t.data)) for who, t in sent]
