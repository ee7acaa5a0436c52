"""WireGuard device receive path: `Device.decapsulate` and `Device.decrypt_batch` on datagrams.

State: two devices with an established session (the in-memory pair of the unit tests, fixed seeds
and clock, so the captured datagrams in the corpus decrypt on every run). Each input is handed to
both sides as a datagram from the other side's endpoint, to a second, identical responder through
`decrypt_batch`, and to a responder that is always under load (cookie replies, mac2). Handshake
messages are also tried with mac1 recomputed for the receiver (mac1 only needs the receiver's
public key, so any attacker can make it valid), which takes the fuzzer into the Noise code.

Documented invalid input: none raises; a refused datagram comes back with `error` set to one of
`agents.wireguard.ERRORS`. Properties checked per input:
- a dropped datagram yields no packet and names a documented reason;
- an accepted packet comes from the one configured peer, in a transport message, and a given
  (session, counter) is delivered at most once (no replay);
- `decrypt_batch` and `decapsulate` agree on every datagram (same peer, packet and error).
"""

from __future__ import annotations

from collections.abc import Iterator

from agents.net import build
from agents.wireguard import ERRORS, Decapsulated, Device, crypto
from agents.wireguard import messages as m
from agents.wireguard.noise import LABEL_MAC1
from tests.unit.wireguard.pair import (
    A_ENDPOINT,
    B_ENDPOINT,
    Pair,
    ipv4_packet,
    private_key,
    seeded_rng,
)

INVALID: tuple[type[BaseException], ...] = ()  # nothing may raise
SEED = 19
_MESSAGE_TYPES = {
    m.MESSAGE_INITIATION,
    m.MESSAGE_RESPONSE,
    m.MESSAGE_COOKIE_REPLY,
    m.MESSAGE_DATA,
}


def _never() -> bool:
    return False


def _always() -> bool:
    return True


def _established() -> Pair:
    """The unit tests' pair with its handshake done. Neither side ever counts itself under load:
    the clock is fixed, so the default handshake-rate detector would stay on for good after a few
    thousand fuzzed initiations and hide the Noise code behind cookie replies (the `loaded`
    responder below covers that path)."""
    pair = Pair(seed=SEED, under_load_b=_never)
    pair.a.device = Device(private_key(SEED), rng=seeded_rng(SEED * 10 + 1), under_load=_never)
    pair.a.device.add_peer(pair.b.device.public_key, endpoint=B_ENDPOINT)
    pair.handshake()
    return pair


class _State:
    def __init__(self) -> None:
        self.pair = _established()
        self.batch = _established()  # same keys and session indices: fed via decrypt_batch
        # B's key, always under load: every handshake message needs a valid mac2 (cookie path).
        self.loaded = Device(private_key(SEED + 1), rng=seeded_rng(SEED), under_load=_always)
        self.loaded.add_peer(self.pair.a.device.public_key)
        self.delivered: set[tuple[str, int, int]] = set()


_STATE: _State | None = None


def reset() -> None:
    global _STATE
    _STATE = None


def _state() -> _State:
    global _STATE
    if _STATE is None:
        _STATE = _State()
    return _STATE


def _check(name: str, result: Decapsulated, data: bytes, expected_peer: bytes) -> None:
    assert isinstance(result, Decapsulated)
    if result.error is not None:
        assert result.error in ERRORS, result.error
        assert result.packet is None
    kind = int.from_bytes(data[:4], "little") if len(data) >= 4 else -1
    if kind not in _MESSAGE_TYPES:
        assert result.error is not None and result.peer is None
    if result.peer is not None:
        assert result.peer == expected_peer
    if result.packet is not None:
        assert kind == m.MESSAGE_DATA, "only transport messages carry packets"
        index = int.from_bytes(data[4:8], "little")
        counter = int.from_bytes(data[8:16], "little")
        assert (name, index, counter) not in state_delivered(), "a datagram was delivered twice"
        state_delivered().add((name, index, counter))
        assert result.packet[0] >> 4 in (4, 6)
    for t in result.transmits:
        assert isinstance(t.data, bytes) and int.from_bytes(t.data[:4], "little") in _MESSAGE_TYPES


def state_delivered() -> set[tuple[str, int, int]]:
    return _state().delivered


def _with_valid_mac1(data: bytes, receiver_public: bytes) -> bytes | None:
    """`data` with mac1 recomputed for `receiver_public` when it is framed as a handshake
    message: mac1 is keyed by the receiver's public key (which is not secret), so an attacker can
    always compute it; fixing it lets the fuzzer reach the Noise processing behind it."""
    if len(data) == m.INITIATION_SIZE and data[:4] == b"\x01\x00\x00\x00":
        offset = m.INITIATION_MAC1_OFFSET
    elif len(data) == m.RESPONSE_SIZE and data[:4] == b"\x02\x00\x00\x00":
        offset = m.RESPONSE_MAC1_OFFSET
    else:
        return None
    key = crypto.hash_(LABEL_MAC1, receiver_public)
    return data[:offset] + crypto.mac(key, data[:offset]) + data[offset + 16 :]


def one_input(data: bytes) -> None:
    st = _state()
    pair = st.pair
    a_key, b_key = pair.a.device.public_key, pair.b.device.public_key
    at_b = pair.b.device.decapsulate(data, A_ENDPOINT, pair.now)
    _check("b", at_b, data, a_key)
    _check("a", pair.a.device.decapsulate(data, B_ENDPOINT, pair.now), data, b_key)
    (peer, packet, transmits, error) = next(
        st.batch.b.device.decrypt_batch([data], A_ENDPOINT, st.batch.now)
    )
    assert (peer, packet, error) == (at_b.peer, at_b.packet, at_b.error), "batch != single"
    assert len(transmits or []) == len(at_b.transmits), "batch != single (transmits)"
    loaded = st.loaded.decapsulate(data, A_ENDPOINT, pair.now)
    _check("loaded", loaded, data, a_key)
    for name, device, source, sender_key in (
        ("b", pair.b.device, A_ENDPOINT, a_key),
        ("a", pair.a.device, B_ENDPOINT, b_key),
        ("loaded", st.loaded, A_ENDPOINT, a_key),
    ):
        fixed = _with_valid_mac1(data, device.public_key)
        if fixed is not None and fixed != data:
            _check(name, device.decapsulate(fixed, source, pair.now), fixed, sender_key)


def seeds() -> Iterator[tuple[str, bytes]]:
    # The handshake of the state's own pair: initiation, response, first data message.
    pair = _established()
    names = {m.MESSAGE_INITIATION: "initiation", m.MESSAGE_RESPONSE: "response"}
    for i, (who, t) in enumerate(pair.sent):
        yield f"handshake-{i}-{who}-{names.get(t.data[0], 'data')}", t.data
    # Transport messages not yet delivered: each is accepted once by the fuzz state.
    a, b = pair.a.device, pair.b.device
    inner = [
        ipv4_packet(b"hello"),
        build.tcp("100.64.0.2", "10.0.0.5", 40000, 443),
        build.icmp_echo("fd00:2021:1111::2", "2001:db8::1"),
        build.udp("100.64.0.2", "10.0.0.5", 5353, 53, b"\x00" * 200),
    ]
    for i, pkt in enumerate(inner):
        for t in a.encapsulate(b.public_key, pkt, pair.now):
            yield f"data-a-to-b-{i}", t.data
    for t in b.encapsulate(a.public_key, build.tcp("10.0.0.5", "100.64.0.2", 443, 1), pair.now):
        yield "data-b-to-a", t.data
    # A keepalive (empty transport message).
    for t in a.encapsulate(b.public_key, b"", pair.now):
        yield "keepalive-a-to-b", t.data
    # Under load: a cookie reply and the retry carrying mac2.
    loaded = Pair(seed=SEED, under_load_b=lambda: True)
    loaded.send(loaded.a, ipv4_packet(b"load"))
    loaded.tick(6.0)
    for i, (who, t) in enumerate(loaded.sent):
        yield f"under-load-{i}-{who}-type{t.data[0]}", t.data
    # Framing edge cases.
    init = pair.sent[0][1].data
    yield "initiation-truncated", init[: m.INITIATION_SIZE - 1]
    yield "initiation-extended", init + b"\x00"
    yield "unknown-type", b"\x05\x00\x00\x00" + init[4:]
    yield "short", b"\x04\x00\x00"
