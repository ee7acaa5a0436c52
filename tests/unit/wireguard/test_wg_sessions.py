from __future__ import annotations

from agents.wireguard.constants import REJECT_AFTER_MESSAGES, REKEY_AFTER_TIME, REPLAY_WINDOW

from .pair import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet


def counter_of(data: bytes) -> int:
    return int.from_bytes(data[8:16], "little")


def sealed_by_a(pair: Pair, count: int) -> list[bytes]:
    b_key = pair.b.device.public_key
    return [
        pair.a.device.encapsulate(b_key, ipv4_packet(i.to_bytes(4, "big")), pair.now)[0].data
        for i in range(count)
    ]


def test_the_replay_window_accepts_reordering_inside_and_rejects_outside() -> None:
    pair = Pair()
    pair.handshake()  # counter 0 used
    packets = sealed_by_a(pair, REPLAY_WINDOW + 60)
    by_counter = {counter_of(p): p for p in packets}
    top = max(by_counter)
    b = pair.b.device

    def deliver(counter: int) -> str | None:
        return b.decapsulate(by_counter[counter], A_ENDPOINT, pair.now).error

    assert deliver(top) is None
    assert deliver(top) == "replayed counter"
    assert deliver(top - 1) is None  # late but new
    assert deliver(top - 1) == "replayed counter"
    assert deliver(top - (REPLAY_WINDOW - 1)) is None  # the oldest counter the window holds
    assert deliver(top - (REPLAY_WINDOW - 1)) == "replayed counter"
    assert deliver(top - REPLAY_WINDOW) == "replayed counter"  # just outside
    assert deliver(1) == "replayed counter"
    # moving the window forward by a lot forgets everything below it
    assert deliver(top - 5) is None


def test_a_forged_counter_does_not_move_the_window() -> None:
    pair = Pair()
    pair.handshake()
    packets = sealed_by_a(pair, 100)
    b = pair.b.device
    forged = bytearray(packets[50])
    forged[8:16] = (10**9).to_bytes(8, "little")
    assert b.decapsulate(bytes(forged), A_ENDPOINT, pair.now).error == "decryption failed"
    forged[8:16] = REJECT_AFTER_MESSAGES.to_bytes(8, "little")
    assert b.decapsulate(bytes(forged), A_ENDPOINT, pair.now).error == "invalid counter"
    # still at the real top: an old-but-inside packet is accepted
    assert b.decapsulate(packets[99], A_ENDPOINT, pair.now).error is None
    assert b.decapsulate(packets[0], A_ENDPOINT, pair.now).error is None


def test_the_previous_session_still_decrypts_in_flight_packets_after_a_rekey() -> None:
    pair = Pair()
    pair.handshake()
    t0 = pair.now
    pair.now = t0 + REKEY_AFTER_TIME - 1
    # packets sealed on the first session that are still in flight during the rekey
    in_flight_a = sealed_by_a(pair, 3)
    a_key = pair.a.device.public_key
    in_flight_b = [
        pair.b.device.encapsulate(a_key, ipv4_packet(b"b%d" % i), pair.now)[0].data
        for i in range(3)
    ]

    pair.now = t0 + REKEY_AFTER_TIME
    pair.send(pair.a, ipv4_packet(b"trigger"))  # sends on the old session and rekeys
    assert pair.a.device.peer_last_handshake(pair.b.device.public_key) == pair.now
    first_session_index = in_flight_a[0][4:8]
    [newest] = pair.a.device.encapsulate(pair.b.device.public_key, ipv4_packet(), pair.now)
    assert newest.data[4:8] != first_session_index  # a now sends on the new session

    for data in in_flight_a:
        assert pair.b.device.decapsulate(data, A_ENDPOINT, pair.now).error is None
    for data in in_flight_b:
        assert pair.a.device.decapsulate(data, B_ENDPOINT, pair.now).error is None

    # after the next rotation the first session is gone for good
    pair.now = t0 + 2 * REKEY_AFTER_TIME
    pair.send(pair.a, ipv4_packet(b"second rekey"))
    replay_first = in_flight_b[0]
    result = pair.a.device.decapsulate(replay_first, B_ENDPOINT, pair.now)
    assert result.error == "unknown receiver index"


def test_it_counts_sending_counters_per_session_from_zero() -> None:
    pair = Pair()
    pair.handshake()
    packets = sealed_by_a(pair, 3)
    assert [counter_of(p) for p in packets] == [1, 2, 3]
    pair.now += REKEY_AFTER_TIME
    pair.send(pair.a, ipv4_packet())  # rekey; the confirming keepalive uses counter 0
    assert counter_of(pair.sent[-1][1].data) == 0
    assert counter_of(sealed_by_a(pair, 1)[0]) == 1


def test_encrypt_batch_seals_in_order_for_the_peer_endpoint() -> None:
    pair = Pair()
    packets = [ipv4_packet(b"%d" % i) for i in range(5)]
    # no session yet: everything queues and one initiation comes back
    endpoint, datagrams, others = pair.a.device.encrypt_batch(
        pair.b.device.public_key, packets, pair.now
    )
    assert datagrams == [] and [t.data[0] for t in others] == [1]
    pair.deliver(pair.a, others)
    assert pair.b.inbox == packets

    endpoint, datagrams, others = pair.a.device.encrypt_batch(
        pair.b.device.public_key, packets, pair.now
    )
    assert endpoint == B_ENDPOINT and others == []
    assert [counter_of(d) for d in datagrams] == [5, 6, 7, 8, 9]  # 0-4 went out with the flush
    for d in datagrams:
        pair.receive(pair.b, d, A_ENDPOINT)
    assert pair.b.inbox == packets + packets
    assert pair.a.device.encrypt_batch(b"\x01" * 32, packets, pair.now) == (None, [], [])


def test_it_delivers_ipv6_packets_without_padding() -> None:
    pair = Pair()
    pair.handshake()
    payload = b"v6 payload"
    packet = bytes([0x60, 0, 0, 0]) + len(payload).to_bytes(2, "big") + bytes([17, 64])
    packet += bytes(32) + payload  # 50 bytes: padded to 64 on the wire
    [t] = pair.send(pair.a, packet)
    assert len(t.data) == 16 + 64 + 16
    assert pair.b.inbox[-1] == packet
