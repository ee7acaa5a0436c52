from __future__ import annotations

import pytest

from agents.wireguard import Device
from agents.wireguard.constants import QUEUE_SIZE

from .pair import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet, kinds, private_key, seeded_rng

PSK = bytes(range(32))


@pytest.mark.parametrize("psk", [None, PSK], ids=["no-psk", "psk"])
def test_it_completes_a_handshake_and_carries_data_both_ways(psk: bytes | None) -> None:
    pair = Pair(psk_a=psk, psk_b=psk)
    pair.send(pair.a, ipv4_packet(b"one"))

    # initiation, response, then the queued packet on the new session
    assert kinds(pair.sent) == [("a", 1, 148), ("b", 2, 92), ("a", 4, 16 + 32 + 16)]
    assert pair.b.inbox == [ipv4_packet(b"one")]
    pair.send(pair.b, ipv4_packet(b"two"))
    pair.send(pair.a, ipv4_packet(b"three"))
    assert pair.a.inbox == [ipv4_packet(b"two")]
    assert pair.b.inbox == [ipv4_packet(b"one"), ipv4_packet(b"three")]
    assert len(pair.sent) == 5  # no further handshakes
    assert all(r.error is None for r in pair.a.results + pair.b.results)
    assert pair.a.results[-1].peer == pair.b.device.public_key
    assert pair.b.results[-1].peer == pair.a.device.public_key


def test_it_completes_a_handshake_the_other_side_initiates() -> None:
    pair = Pair(b_knows_a=True)
    pair.send(pair.b, ipv4_packet(b"from b"))
    assert kinds(pair.sent)[:2] == [("b", 1, 148), ("a", 2, 92)]
    assert pair.a.inbox == [ipv4_packet(b"from b")]
    pair.send(pair.a, ipv4_packet(b"from a"))
    assert pair.b.inbox == [ipv4_packet(b"from a")]


@pytest.mark.parametrize(
    ("psk_a", "psk_b"),
    [(PSK, bytes(32 * [7])), (PSK, None), (None, PSK)],
    ids=["different", "only-initiator", "only-responder"],
)
def test_it_fails_the_handshake_when_preshared_keys_differ(
    psk_a: bytes | None, psk_b: bytes | None
) -> None:
    pair = Pair(psk_a=psk_a, psk_b=psk_b)
    pair.send(pair.a, ipv4_packet())
    # b cannot tell (psk2 is mixed in after the identity), a rejects the response
    assert kinds(pair.sent) == [("a", 1, 148), ("b", 2, 92)]
    assert pair.a.results[-1].error == "decryption failed"
    assert pair.b.inbox == []
    assert not pair.a.device.peer_has_session(pair.b.device.public_key, pair.now)
    assert pair.a.device.peer_last_handshake(pair.b.device.public_key) is None


def test_it_rejects_an_initiation_from_an_unknown_peer() -> None:
    stranger = Device(private_key(99), rng=seeded_rng(99))
    pair = Pair()
    stranger.add_peer(pair.b.device.public_key, endpoint=B_ENDPOINT)
    [init] = stranger.encapsulate(pair.b.device.public_key, ipv4_packet(), pair.now)
    result = pair.b.device.decapsulate(init.data, ("198.51.100.1", 1), pair.now)
    assert result.error == "unknown peer"
    assert result.transmits == [] and result.peer is None


def test_it_rejects_an_initiation_with_a_bad_mac1() -> None:
    pair = Pair()
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet())
    init = bytearray(pair.dropped[0][1].data)
    init[-17] ^= 1  # last byte of mac1
    result = pair.b.device.decapsulate(bytes(init), A_ENDPOINT, pair.now)
    assert result.error == "invalid mac1"
    result = pair.b.device.decapsulate(pair.dropped[0][1].data, A_ENDPOINT, pair.now)
    assert result.error is None


def test_it_rejects_a_replayed_initiation() -> None:
    pair = Pair()
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet())
    first = pair.dropped[0][1].data
    pair.tick(5.5)  # retransmission: a newer initiation
    second = pair.dropped[-1][1].data
    assert second[0] == 1 and second != first

    b = pair.b.device
    assert b.decapsulate(second, A_ENDPOINT, pair.now).error is None
    pair.now += 1
    assert b.decapsulate(second, A_ENDPOINT, pair.now).error == "replayed initiation"
    # an older (but never seen) initiation is a replay too: its timestamp is not newer
    assert b.decapsulate(first, A_ENDPOINT, pair.now).error == "replayed initiation"


def test_it_limits_the_initiation_rate_per_peer() -> None:
    pair = Pair()
    # Two instances of a's key with clocks one second apart produce two valid initiations with
    # growing timestamps; b consumes only one of them within the flood interval.
    a1 = Device(private_key(1), rng=seeded_rng(5))
    a2 = Device(private_key(1), rng=seeded_rng(6), wall_offset=1.0)
    for a in (a1, a2):
        a.add_peer(pair.b.device.public_key, endpoint=B_ENDPOINT)
    [i1] = a1.encapsulate(pair.b.device.public_key, b"", pair.now)
    [i2] = a2.encapsulate(pair.b.device.public_key, b"", pair.now)
    b = pair.b.device
    assert b.decapsulate(i1.data, A_ENDPOINT, pair.now).error is None
    assert b.decapsulate(i2.data, A_ENDPOINT, pair.now + 0.005).error == "initiation flood"
    pair.now += 0.05
    [i3] = a2.handle_timeout(pair.now + 6)  # a2's retransmission, newer still
    assert b.decapsulate(i3.data, A_ENDPOINT, pair.now).error is None


def test_the_responder_session_waits_as_next_until_the_initiator_uses_it() -> None:
    pair = Pair()
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet(b"queued"))
    b = pair.b.device
    a_key = pair.a.device.public_key
    response = b.decapsulate(pair.dropped[0][1].data, A_ENDPOINT, pair.now)
    assert response.error is None
    assert not b.peer_has_session(a_key, pair.now)
    # b's own packet waits for the confirmation (and, like wireguard-go, b also initiates)
    queued = b.encapsulate(a_key, ipv4_packet(b"from b"), pair.now)
    assert [t.data[0] for t in queued] == [1]

    confirm = pair.a.device.decapsulate(response.transmits[0].data, B_ENDPOINT, pair.now)
    assert [t.data[0] for t in confirm.transmits] == [4]
    result = b.decapsulate(confirm.transmits[0].data, A_ENDPOINT, pair.now)
    assert result.packet == ipv4_packet(b"queued")
    assert b.peer_has_session(a_key, pair.now)
    # the confirmation flushed b's queued packet
    assert [t.data[0] for t in result.transmits] == [4]
    flushed = pair.a.device.decapsulate(result.transmits[0].data, B_ENDPOINT, pair.now)
    assert flushed.packet == ipv4_packet(b"from b")


def test_it_sends_a_keepalive_to_confirm_when_nothing_is_queued() -> None:
    pair = Pair()
    assert pair.a.device.poll_timeout() is None
    assert pair.a.device.handle_timeout(pair.now) == []  # nothing armed: nothing happens
    # An empty packet is what a keepalive is; it starts the handshake like data would.
    pair.send(pair.a, b"")
    # initiation, response, keepalive (empty transport message) confirming b's session
    assert kinds(pair.sent) == [("a", 1, 148), ("b", 2, 92), ("a", 4, 32)]
    assert pair.b.device.peer_has_session(pair.a.device.public_key, pair.now)
    assert pair.b.inbox == []
    assert pair.b.results[-1].error is None and pair.b.results[-1].packet is None


def test_it_refuses_a_response_to_a_forgotten_initiation() -> None:
    pair = Pair()
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet())
    init = pair.dropped[0][1].data
    pair.a.device.remove_peer(pair.b.device.public_key)
    pair.a.device.add_peer(pair.b.device.public_key, endpoint=B_ENDPOINT)
    pair.wire_up = True
    pair.receive(pair.b, init, A_ENDPOINT)
    assert pair.a.results[-1].error == "unknown receiver index"
    assert not pair.a.device.peer_has_session(pair.b.device.public_key, pair.now)


def test_it_queues_packets_until_the_session_exists_and_keeps_the_newest() -> None:
    pair = Pair()
    pair.wire_up = False
    for i in range(QUEUE_SIZE + 10):
        pair.send(pair.a, ipv4_packet(b"p", ident=i))
    # one initiation only (rate limited), everything else queued
    assert kinds(pair.dropped) == [("a", 1, 148)]
    pair.wire_up = True
    pair.receive(pair.b, pair.dropped[0][1].data, A_ENDPOINT)
    idents = [int.from_bytes(p[4:6], "big") for p in pair.b.inbox]
    assert idents == list(range(10, QUEUE_SIZE + 10))


def test_it_moves_the_peer_endpoint_to_the_source_of_authenticated_packets() -> None:
    pair = Pair()
    pair.handshake()
    b, a_key = pair.b.device, pair.a.device.public_key
    assert b.peer_endpoint(a_key) == A_ENDPOINT

    roamed = ("203.0.113.9", 40000)
    [data] = pair.a.device.encapsulate(pair.b.device.public_key, ipv4_packet(b"x"), pair.now)
    # garbage and forged packets from elsewhere do not move it
    forged = bytearray(data.data)
    forged[-1] ^= 0xFF
    assert b.decapsulate(bytes(forged), ("198.51.100.7", 1), pair.now).error == "decryption failed"
    assert (
        b.decapsulate(b"\x04\x00\x00\x00junk", ("198.51.100.7", 1), pair.now).error
        == "invalid size"
    )
    assert b.peer_endpoint(a_key) == A_ENDPOINT

    assert b.decapsulate(data.data, roamed, pair.now).error is None
    assert b.peer_endpoint(a_key) == roamed
    [reply] = b.encapsulate(a_key, ipv4_packet(b"back"), pair.now)
    assert reply.endpoint == roamed


def test_it_removes_a_peer_and_its_sessions() -> None:
    pair = Pair()
    pair.handshake()
    [data] = pair.a.device.encapsulate(pair.b.device.public_key, ipv4_packet(), pair.now)
    pair.b.device.remove_peer(pair.a.device.public_key)
    assert not pair.b.device.has_peer(pair.a.device.public_key)
    result = pair.b.device.decapsulate(data.data, A_ENDPOINT, pair.now)
    assert result.error == "unknown receiver index"
    assert pair.b.device.encapsulate(pair.a.device.public_key, ipv4_packet(), pair.now) == []


def test_it_refuses_invalid_peer_keys() -> None:
    device = Device(private_key(1))
    with pytest.raises(ValueError):
        device.add_peer(b"short")
    with pytest.raises(ValueError):
        device.add_peer(bytes(32))  # a low-order point: the shared secret would be zero
    with pytest.raises(ValueError):
        device.add_peer(device.public_key)
    with pytest.raises(ValueError):
        device.add_peer(Device(private_key(2)).public_key, preshared_key=b"x")
    assert device.peers() == []


def test_it_strips_padding_and_rejects_non_ip_payloads() -> None:
    pair = Pair()
    pair.handshake()
    odd = ipv4_packet(b"abc")  # 31 bytes, padded to 32 on the wire
    [t] = pair.send(pair.a, odd)
    assert len(t.data) == 16 + 32 + 16
    assert pair.b.inbox[-1] == odd
    pair.send(pair.a, b"\x00" * 40)
    assert pair.b.results[-1].error == "invalid inner packet"
    assert pair.b.results[-1].packet is None


def test_crossing_initiations_still_leave_both_sides_able_to_talk() -> None:
    pair = Pair(b_knows_a=True)
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet(b"from a"))
    pair.send(pair.b, ipv4_packet(b"from b"))
    init_a, init_b = pair.dropped[0][1].data, pair.dropped[1][1].data
    pair.wire_up = True
    pair.receive(pair.b, init_a, A_ENDPOINT)
    pair.receive(pair.a, init_b, B_ENDPOINT)
    assert pair.b.inbox == [ipv4_packet(b"from a")]
    assert pair.a.inbox == [ipv4_packet(b"from b")]
    pair.send(pair.a, ipv4_packet(b"more from a"))
    pair.send(pair.b, ipv4_packet(b"more from b"))
    assert pair.b.inbox[-1] == ipv4_packet(b"more from a")
    assert pair.a.inbox[-1] == ipv4_packet(b"more from b")
    assert all(r.error is None for r in pair.a.results + pair.b.results)
