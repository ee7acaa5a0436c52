"""Property tests: decapsulate never raises, and no mutation of an authenticated message passes.

mac2 bytes are excluded from handshake mutations: outside of load, mac2 is by design not checked
(WireGuard only verifies it when asking for cookies).
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.wireguard import ERRORS, Device
from agents.wireguard import messages as m

from .pair import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet, private_key, seeded_rng

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A long-lived pair with a session, shared by the examples (state may change; that is the point).
_PAIR = Pair(seed=7)
_PAIR.handshake()


class Mutation:
    """Flip bytes, truncate or extend a message."""

    def __init__(self, flips: list[tuple[int, int]], cut: int | None, extra: bytes) -> None:
        self.flips, self.cut, self.extra = flips, cut, extra

    def apply(self, data: bytes, protected: int | None = None) -> bytes:
        out = bytearray(data)
        for pos, xor in self.flips:
            i = pos % (protected if protected is not None else len(out))
            out[i] ^= xor
        if self.cut is not None:
            out = out[: self.cut % len(out)]
        return bytes(out) + self.extra


mutations = st.builds(
    Mutation,
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=4),
    st.none() | st.integers(0, 10_000),
    st.just(b"") | st.binary(min_size=1, max_size=8),
).filter(lambda mu: bool(mu.flips) or mu.cut is not None or bool(mu.extra))


def assert_dropped(result_error: str | None) -> None:
    assert result_error is not None
    assert result_error in ERRORS


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_and_are_dropped(data: bytes) -> None:
    result = _PAIR.b.device.decapsulate(data, ("198.51.100.1", 9), _PAIR.now)
    assert_dropped(result.error)
    assert result.packet is None and result.peer is None


@FUZZ
@given(
    st.sampled_from([1, 2, 3, 4]),
    st.sampled_from([m.INITIATION_SIZE, m.RESPONSE_SIZE, m.COOKIE_REPLY_SIZE, 32, 48, 1000]),
    st.data(),
)
def test_well_framed_random_messages_are_dropped(kind: int, size: int, data: st.DataObject) -> None:
    body = data.draw(st.binary(min_size=size - 4, max_size=size - 4))
    msg = kind.to_bytes(4, "little") + body
    if kind == 4:
        # aim at a real receiver index so the AEAD is what refuses it
        [sealed] = _PAIR.a.device.encapsulate(_PAIR.b.device.public_key, b"", _PAIR.now)
        msg = msg[:4] + sealed.data[4:8] + msg[8:]
    result = _PAIR.b.device.decapsulate(msg, A_ENDPOINT, _PAIR.now)
    assert_dropped(result.error)
    assert result.packet is None


@FUZZ
@given(mutations)
def test_mutated_transport_messages_are_rejected_and_do_not_disturb_the_session(
    mutation: Mutation,
) -> None:
    b_key = _PAIR.b.device.public_key
    [sealed] = _PAIR.a.device.encapsulate(b_key, ipv4_packet(b"fuzz"), _PAIR.now)
    mutated = mutation.apply(sealed.data)
    if mutated == sealed.data:
        return
    result = _PAIR.b.device.decapsulate(mutated, ("203.0.113.66", 6), _PAIR.now)
    assert_dropped(result.error)
    assert result.packet is None
    assert _PAIR.b.device.peer_endpoint(_PAIR.a.device.public_key) == A_ENDPOINT
    ok = _PAIR.b.device.decapsulate(sealed.data, A_ENDPOINT, _PAIR.now)
    assert ok.error is None and ok.packet == ipv4_packet(b"fuzz")


_CLOCK = [5000.0]


def _fresh_initiation(responder: Device) -> tuple[Device, bytes, float]:
    _CLOCK[0] += 1.0  # newer TAI64N timestamp and past the flood interval
    now = _CLOCK[0]
    initiator = Device(private_key(7), rng=seeded_rng(int(now)))
    initiator.add_peer(responder.public_key, endpoint=B_ENDPOINT)
    [init] = initiator.encapsulate(responder.public_key, ipv4_packet(), now)
    return initiator, init.data, now


def _responder(under_load: Callable[[], bool] | None = None) -> Device:
    device = Device(private_key(8), rng=seeded_rng(8), under_load=under_load)
    device.add_peer(Device(private_key(7)).public_key)
    return device


_RESPONDER = _responder()


@FUZZ
@given(mutations)
def test_mutated_initiations_are_rejected(mutation: Mutation) -> None:
    _, init, now = _fresh_initiation(_RESPONDER)
    mutated = mutation.apply(init, protected=m.INITIATION_MAC1_OFFSET + 16)
    if mutated[: m.INITIATION_MAC1_OFFSET + 16] == init[: m.INITIATION_MAC1_OFFSET + 16] and (
        len(mutated) == len(init)
    ):
        return  # only mac2 changed
    result = _RESPONDER.decapsulate(mutated, A_ENDPOINT, now)
    assert_dropped(result.error)
    assert result.transmits == []
    # the forgery consumed nothing: the genuine initiation is still answered
    genuine = _RESPONDER.decapsulate(init, A_ENDPOINT, now)
    assert genuine.error is None and [t.data[0] for t in genuine.transmits] == [2]


@FUZZ
@given(mutations)
def test_mutated_responses_are_rejected(mutation: Mutation) -> None:
    initiator, init, now = _fresh_initiation(_RESPONDER)
    [response] = _RESPONDER.decapsulate(init, A_ENDPOINT, now).transmits
    mutated = mutation.apply(response.data, protected=m.RESPONSE_MAC1_OFFSET + 16)
    if mutated[: m.RESPONSE_MAC1_OFFSET + 16] == response.data[: m.RESPONSE_MAC1_OFFSET + 16] and (
        len(mutated) == len(response.data)
    ):
        return
    result = initiator.decapsulate(mutated, B_ENDPOINT, now)
    assert_dropped(result.error)
    assert not initiator.peer_has_session(_RESPONDER.public_key, now)
    genuine = initiator.decapsulate(response.data, B_ENDPOINT, now)
    assert genuine.error is None
    assert initiator.peer_has_session(_RESPONDER.public_key, now)


_LOADED = _responder(lambda: True)


@FUZZ
@given(mutations)
def test_mutated_cookie_replies_are_rejected(mutation: Mutation) -> None:
    initiator, init, now = _fresh_initiation(_LOADED)
    [reply] = _LOADED.decapsulate(init, A_ENDPOINT, now).transmits
    assert reply.data[0] == 3
    mutated = mutation.apply(reply.data)
    if mutated == reply.data:
        return
    assert_dropped(initiator.decapsulate(mutated, B_ENDPOINT, now).error)
    assert initiator.decapsulate(reply.data, B_ENDPOINT, now).error is None


@FUZZ
@given(st.binary(max_size=200))
def test_parsers_never_raise_and_round_trip(data: bytes) -> None:
    init = m.parse_initiation(data)
    if init is not None:
        assert m.pack_initiation(init) == data
    response = m.parse_response(data)
    if response is not None:
        assert m.pack_response(response) == data
    cookie = m.parse_cookie_reply(data)
    if cookie is not None:
        assert m.pack_cookie_reply(cookie) == data
    header = m.parse_data_header(data)
    if header is not None:
        assert m.pack_data_header(header.receiver, header.counter) == data[:16]
    kind = m.message_type(data)
    assert kind is None or 1 <= kind <= 4


@FUZZ
@given(st.sampled_from([1, 2, 3]), st.binary(min_size=200, max_size=200))
def test_parsers_accept_exactly_their_size(kind: int, noise: bytes) -> None:
    sizes = {1: m.INITIATION_SIZE, 2: m.RESPONSE_SIZE, 3: m.COOKIE_REPLY_SIZE}
    parse = {1: m.parse_initiation, 2: m.parse_response, 3: m.parse_cookie_reply}[kind]
    msg = kind.to_bytes(4, "little") + noise[: sizes[kind] - 4]
    assert parse(msg) is not None
    assert parse(msg[:-1]) is None
    assert parse(msg + b"\x00") is None
    assert parse(b"\x09" + msg[1:]) is None
