from __future__ import annotations

from agents.wireguard import Device
from agents.wireguard.constants import (
    COOKIE_SECRET_LIFETIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    UNDER_LOAD_HANDSHAKES_PER_SECOND,
)

from .pair import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet, kinds, private_key, seeded_rng


class Load:
    def __init__(self, on: bool = True) -> None:
        self.on = on

    def __call__(self) -> bool:
        return self.on


def retry(pair: Pair) -> None:
    """Run a's retransmission timer."""
    pair.tick(REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX)


def test_under_load_it_answers_with_a_cookie_and_accepts_the_retry_with_mac2() -> None:
    pair = Pair(under_load_b=Load())
    pair.send(pair.a, ipv4_packet(b"waits"))
    assert kinds(pair.sent) == [("a", 1, 148), ("b", 3, 64)]
    assert pair.b.results[0].error == "cookie required"
    assert pair.a.results[0].error is None  # cookie stored
    assert pair.b.inbox == []
    assert pair.sent[0][1].data[-16:] == bytes(16)  # no cookie yet: mac2 is zero

    retry(pair)
    init = pair.sent[2][1].data
    assert init[0] == 1 and init[-16:] != bytes(16)
    assert kinds(pair.sent[2:]) == [("a", 1, 148), ("b", 2, 92), ("a", 4, 80)]
    assert pair.b.inbox == [ipv4_packet(b"waits")]


def test_under_load_the_response_needs_mac2_too() -> None:
    load = Load(False)
    a = Device(private_key(1), rng=seeded_rng(11), under_load=load)
    b = Device(private_key(2), rng=seeded_rng(12))
    a.add_peer(b.public_key, endpoint=B_ENDPOINT)
    b.add_peer(a.public_key)
    [init] = a.encapsulate(b.public_key, ipv4_packet(), 1000.0)
    response = b.decapsulate(init.data, A_ENDPOINT, 1000.0)
    load.on = True  # the initiator is under load when the response arrives
    result = a.decapsulate(response.transmits[0].data, B_ENDPOINT, 1000.0)
    assert result.error == "cookie required"
    assert [t.data[0] for t in result.transmits] == [3]
    assert not a.peer_has_session(b.public_key, 1000.0)
    assert b.decapsulate(result.transmits[0].data, A_ENDPOINT, 1000.0).error is None

    # a retries; b's new response carries mac2 from a's cookie and gets through
    [retry] = a.handle_timeout(1000.0 + REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX)
    response = b.decapsulate(retry.data, A_ENDPOINT, 1006.0)
    assert response.transmits[0].data[-16:] != bytes(16)
    assert a.decapsulate(response.transmits[0].data, B_ENDPOINT, 1006.0).error is None
    assert a.peer_has_session(b.public_key, 1006.0)


def test_a_cookie_is_bound_to_the_source_address() -> None:
    pair = Pair(under_load_b=Load())
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet())
    b = pair.b.device
    cookie_reply = b.decapsulate(pair.dropped[0][1].data, A_ENDPOINT, pair.now)
    assert cookie_reply.error == "cookie required"
    assert (
        pair.a.device.decapsulate(cookie_reply.transmits[0].data, B_ENDPOINT, pair.now).error
        is None
    )
    [init] = pair.a.device.handle_timeout(pair.now + REKEY_TIMEOUT + 1)
    pair.now += REKEY_TIMEOUT + 1
    elsewhere = b.decapsulate(init.data, ("198.51.100.3", 51820), pair.now)
    assert elsewhere.error == "cookie required"
    assert b.decapsulate(init.data, A_ENDPOINT, pair.now).error is None


def test_it_rejects_forged_and_unexpected_cookie_replies() -> None:
    pair = Pair(under_load_b=Load())
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet())
    reply = pair.b.device.decapsulate(pair.dropped[0][1].data, A_ENDPOINT, pair.now)
    data = reply.transmits[0].data
    a = pair.a.device
    forged = bytearray(data)
    forged[40] ^= 1  # inside the encrypted cookie
    assert a.decapsulate(bytes(forged), B_ENDPOINT, pair.now).error == "decryption failed"
    assert a.decapsulate(data[:-1], B_ENDPOINT, pair.now).error == "invalid size"
    unknown = bytearray(data)
    unknown[4] ^= 1  # receiver index
    assert a.decapsulate(bytes(unknown), B_ENDPOINT, pair.now).error == "unknown receiver index"
    assert a.decapsulate(data, B_ENDPOINT, pair.now).error is None
    # one cookie per handshake message
    assert a.decapsulate(data, B_ENDPOINT, pair.now).error == "unexpected cookie reply"


def test_it_rotates_the_cookie_secret_every_two_minutes() -> None:
    pair = Pair(under_load_b=Load())
    pair.wire_up = False
    t0 = pair.now
    pair.send(pair.a, ipv4_packet())
    b, a = pair.b.device, pair.a.device
    reply = b.decapsulate(pair.dropped[0][1].data, A_ENDPOINT, t0)  # b's secret is born at t0
    # a receives the cookie late, so a still considers it fresh when b's secret has rotated
    assert a.decapsulate(reply.transmits[0].data, B_ENDPOINT, t0 + 100).error is None
    [init] = a.encapsulate(b.public_key, ipv4_packet(), t0 + COOKIE_SECRET_LIFETIME + 1)
    assert init.data[-16:] != bytes(16)  # a used the cookie
    result = b.decapsulate(init.data, A_ENDPOINT, t0 + COOKIE_SECRET_LIFETIME + 1)
    assert result.error == "cookie required"


def test_a_cookie_is_accepted_before_the_secret_rotates() -> None:
    pair = Pair(under_load_b=Load())
    pair.wire_up = False
    t0 = pair.now
    pair.send(pair.a, ipv4_packet())
    b, a = pair.b.device, pair.a.device
    reply = b.decapsulate(pair.dropped[0][1].data, A_ENDPOINT, t0)
    assert a.decapsulate(reply.transmits[0].data, B_ENDPOINT, t0 + 100).error is None
    [init] = a.encapsulate(b.public_key, ipv4_packet(), t0 + COOKIE_SECRET_LIFETIME - 1)
    assert b.decapsulate(init.data, A_ENDPOINT, t0 + COOKIE_SECRET_LIFETIME - 1).error is None


def test_it_asks_for_cookies_by_itself_when_flooded_with_handshakes() -> None:
    pair = Pair()
    b = pair.b.device
    # Initiations from one peer; after the first they are replays, but each is counted.
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet())
    init = pair.dropped[0][1].data
    errors = [
        b.decapsulate(init, A_ENDPOINT, pair.now + i * 0.001).error
        for i in range(UNDER_LOAD_HANDSHAKES_PER_SECOND + 5)
    ]
    assert errors[0] is None
    assert set(errors[1:UNDER_LOAD_HANDSHAKES_PER_SECOND]) == {"replayed initiation"}
    assert errors[-1] == "cookie required"
    # the load ends about a second after the flood
    pair.now += 3
    [fresh] = pair.a.device.handle_timeout(pair.now + REKEY_TIMEOUT + 1)
    assert b.decapsulate(fresh.data, A_ENDPOINT, pair.now).error is None
