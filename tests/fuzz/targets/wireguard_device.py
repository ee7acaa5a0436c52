"""WireGuard device receive path: `Device.decapsulate` and `Device.decrypt_batch` on datagrams.

State: two devices with an established session (the in-memory pair of the unit tests, fixed seeds
and clock, so the captured datagrams in the corpus decrypt on every run). Each input is handed to
both sides as a datagram from the other side's endpoint, and to a second, identical responder
through `decrypt_batch`.

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
from agents.wireguard import ERRORS, Decapsulated
from agents.wireguard import messages as m
from tests.unit.wireguard.pair import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet

INVALID: tuple[type[BaseException], ...] = ()  # nothing may raise
SEED = 19
_MESSAGE_TYPES = {
    m.MESSAGE_INITIATION,
    m.MESSAGE_RESPONSE,
    m.MESSAGE_COOKIE_REPLY,
    m.MESSAGE_DATA,
}


def _established() -> Pair:
    pair = Pair(seed=SEED)
    pair.handshake()
    return pair


class _State:
    def __init__(self) -> None:
        self.pair = _established()
        self.batch = _established()  # same keys and session indices: fed via decrypt_batch
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


def seeds() -> Iterator[tuple[str, bytes]]:
    # The handshake of the state's own pair: initiation, response, first data message.
    pair = Pair(seed=SEED)
    pair.handshake()
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
