from __future__ import annotations

from agents.wireguard import Transmit
from agents.wireguard.constants import (
    KEEPALIVE_TIMEOUT,
    REJECT_AFTER_TIME,
    REKEY_AFTER_TIME,
    REKEY_ATTEMPT_TIME,
    REKEY_ON_RECEIVE_AGE,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    ZERO_KEYS_AFTER,
)

from .pair import A_ENDPOINT, B_ENDPOINT, Pair, ipv4_packet, kinds


def run(pair: Pair, seconds: float, step: float = 0.25) -> list[tuple[str, Transmit]]:
    """Advance the clock in small steps, running timers as a driver would."""
    end = pair.now + seconds
    sent: list[tuple[str, Transmit]] = []
    while pair.now < end - 1e-9:
        sent += pair.tick(min(step, end - pair.now))
    return sent


def test_it_sends_a_keepalive_after_receiving_data_and_staying_silent() -> None:
    pair = Pair()
    pair.handshake()  # b received data at t0
    assert pair.tick(KEEPALIVE_TIMEOUT - 0.1) == []
    assert kinds(pair.tick(0.1)) == [("b", 4, 32)]
    # a keepalive is not data: it triggers no keepalive in return, and nothing repeats
    assert pair.tick(KEEPALIVE_TIMEOUT) == []
    assert pair.tick(100) == []


def test_it_sends_no_keepalive_when_it_answered_with_data() -> None:
    pair = Pair()
    pair.handshake()
    pair.now += 3
    pair.send(pair.b, ipv4_packet(b"answer"))
    sent = pair.tick(KEEPALIVE_TIMEOUT - 3)
    # b answered in time; a got data at t0+3 and is the one due at t0+13
    assert sent == []
    assert kinds(pair.tick(3)) == [("a", 4, 32)]


def test_the_initiator_rekeys_on_send_after_rekey_after_time() -> None:
    pair = Pair()
    pair.handshake()
    t0 = pair.now
    pair.now = t0 + REKEY_AFTER_TIME - 0.1
    assert kinds([("a", t) for t in pair.send(pair.a, ipv4_packet(b"old"))]) == [("a", 4, 64)]
    # the responder never rekeys on time: that is the initiator's job
    pair.now = t0 + REKEY_AFTER_TIME
    assert [t.data[0] for t in pair.send(pair.b, ipv4_packet(b"b"))] == [4]

    before = len(pair.sent)
    pair.send(pair.a, ipv4_packet(b"still sent on the old session"))
    assert kinds(pair.sent[before:]) == [("a", 4, 96), ("a", 1, 148), ("b", 2, 92), ("a", 4, 32)]
    assert pair.b.inbox[-1] == ipv4_packet(b"still sent on the old session")
    assert pair.a.device.peer_last_handshake(pair.b.device.public_key) == pair.now
    # the new session is in use: sending no longer rekeys
    pair.now += 1
    assert [t.data[0] for t in pair.send(pair.a, ipv4_packet(b"new"))] == [4]
    assert pair.b.inbox[-1] == ipv4_packet(b"new")


def test_it_rejects_sessions_older_than_reject_after_time() -> None:
    pair = Pair()
    pair.handshake()
    t0 = pair.now
    pair.wire_up = False
    pair.now = t0 + REJECT_AFTER_TIME - 1
    pair.send(pair.b, ipv4_packet(b"late"))
    late = pair.dropped[-1][1].data
    assert late[0] == 4

    pair.now = t0 + REJECT_AFTER_TIME
    result = pair.a.device.decapsulate(late, B_ENDPOINT, pair.now)
    assert result.error == "expired session" and result.packet is None
    # nor is the old session used to send: the packet waits for a new handshake
    transmits = pair.a.device.encapsulate(pair.b.device.public_key, ipv4_packet(), pair.now)
    assert [t.data[0] for t in transmits] == [1]
    assert not pair.a.device.peer_has_session(pair.b.device.public_key, pair.now)


def test_the_initiator_rekeys_on_receive_before_the_session_expires() -> None:
    pair = Pair()
    pair.handshake()
    t0 = pair.now
    pair.now = t0 + REKEY_ON_RECEIVE_AGE - 0.1
    before = len(pair.sent)
    pair.send(pair.b, ipv4_packet(b"1"))
    assert kinds(pair.sent[before:]) == [("b", 4, 64)]

    pair.wire_up = False
    pair.now = t0 + REKEY_ON_RECEIVE_AGE
    pair.b.device.encapsulate(pair.a.device.public_key, ipv4_packet(b"2"), pair.now)
    [data] = pair.b.device.encapsulate(pair.a.device.public_key, ipv4_packet(b"3"), pair.now)
    result = pair.a.device.decapsulate(data.data, B_ENDPOINT, pair.now)
    assert result.packet == ipv4_packet(b"3")
    assert [t.data[0] for t in result.transmits] == [1]
    # only once per session, even when that handshake got lost
    pair.now += REKEY_TIMEOUT + 1
    [data2] = pair.b.device.encapsulate(pair.a.device.public_key, ipv4_packet(b"4"), pair.now)
    result = pair.a.device.decapsulate(data2.data, B_ENDPOINT, pair.now)
    assert result.packet == ipv4_packet(b"4") and result.transmits == []


def test_it_retransmits_the_initiation_after_rekey_timeout_with_jitter() -> None:
    pair = Pair()
    pair.wire_up = False
    t0 = pair.now
    pair.send(pair.a, ipv4_packet())
    first = pair.dropped[0][1].data
    due = pair.a.device.poll_timeout()
    assert due is not None
    jitter1 = due - t0 - REKEY_TIMEOUT
    assert 0 <= jitter1 <= REKEY_TIMEOUT_JITTER_MAX
    assert pair.a.device.handle_timeout(due - 0.001) == []

    [retry] = pair.a.device.handle_timeout(due)
    assert retry.data[0] == 1 and retry.endpoint == B_ENDPOINT
    assert retry.data[4:8] != first[4:8]  # a fresh sender index (and ephemeral key)
    due2 = pair.a.device.poll_timeout()
    assert due2 is not None
    jitter2 = due2 - due - REKEY_TIMEOUT
    assert 0 <= jitter2 <= REKEY_TIMEOUT_JITTER_MAX
    assert jitter1 != jitter2  # drawn from the rng each time

    # the retry is a complete initiation: delivering it establishes the session
    pair.wire_up = True
    pair.now = due
    pair.receive(pair.b, retry.data, A_ENDPOINT)
    assert pair.b.inbox == [ipv4_packet()]
    assert pair.a.device.handle_timeout(due2) == []  # retransmission cancelled


def test_different_rngs_give_different_jitter() -> None:
    dues = set()
    for seed in (1, 2, 3):
        pair = Pair(seed=seed)
        pair.wire_up = False
        pair.send(pair.a, ipv4_packet())
        dues.add(pair.a.device.poll_timeout())
    assert len(dues) == 3


def test_it_gives_up_after_rekey_attempt_time_and_drops_the_queue() -> None:
    pair = Pair()
    pair.wire_up = False
    pair.send(pair.a, ipv4_packet(b"old"))
    run(pair, REKEY_ATTEMPT_TIME + 30)
    initiations = [t for who, t in pair.dropped if who == "a" and t.data[0] == 1]
    # one every REKEY_TIMEOUT (+ jitter) while less than REKEY_ATTEMPT_TIME has passed
    assert int(REKEY_ATTEMPT_TIME / (REKEY_TIMEOUT + REKEY_TIMEOUT_JITTER_MAX)) <= len(initiations)
    assert len(initiations) <= int(REKEY_ATTEMPT_TIME / REKEY_TIMEOUT) + 1
    assert len({t.data[4:8] for t in initiations}) == len(initiations)

    # nothing more is retried, and the queued packet is gone
    count = len(pair.dropped)
    pair.tick(60)
    assert len(pair.dropped) == count
    pair.wire_up = True
    pair.send(pair.a, ipv4_packet(b"new"))
    assert pair.b.inbox == [ipv4_packet(b"new")]


def test_it_starts_a_new_handshake_when_sent_data_gets_no_answer() -> None:
    pair = Pair()
    pair.handshake()  # a sent data at t0
    pair.wire_up = False  # b's keepalive at t0 + 10 is lost
    sent = pair.tick(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT - 0.1)
    assert kinds(sent) == [("b", 4, 32)]
    assert kinds(pair.tick(0.1)) == [("a", 1, 148)]


def test_it_starts_no_new_handshake_when_the_answer_arrives() -> None:
    pair = Pair()
    pair.handshake()
    sent = run(pair, KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + 5)
    assert kinds(sent) == [("b", 4, 32)]  # the keepalive counts as an answer


def test_it_zeroes_keys_after_three_times_reject_after_time() -> None:
    pair = Pair()
    pair.handshake()
    t0 = pair.now
    first = pair.sent[2][1].data  # a's first data packet, already received by b
    pair.tick(KEEPALIVE_TIMEOUT)  # b's keepalive
    # poll_timeout may be early (a cancelled timer), never late; handle_timeout settles it
    due = pair.a.device.poll_timeout()
    assert due is not None and due <= t0 + ZERO_KEYS_AFTER
    assert pair.a.device.handle_timeout(due) == []
    assert pair.a.device.poll_timeout() == t0 + ZERO_KEYS_AFTER
    pair.tick(ZERO_KEYS_AFTER - KEEPALIVE_TIMEOUT - 0.1)
    # the session still exists (expired, but its index is known)
    assert pair.b.device.decapsulate(first, A_ENDPOINT, pair.now).error == "replayed counter"

    assert pair.tick(0.1) == []
    assert pair.b.device.decapsulate(first, A_ENDPOINT, pair.now).error == (
        "unknown receiver index"
    )
    assert pair.a.device.poll_timeout() is None
    # a new handshake works as from scratch
    pair.send(pair.a, ipv4_packet(b"again"))
    assert pair.b.inbox[-1] == ipv4_packet(b"again")


def test_it_sends_persistent_keepalives_when_idle() -> None:
    pair = Pair(persistent_keepalive_a=25)
    assert pair.a.device.poll_timeout() == 0.0  # due at once, like `wg set ... persistent-...`
    sent = pair.tick(0)
    assert kinds(sent) == [("a", 1, 148), ("b", 2, 92), ("a", 4, 32)]
    assert pair.tick(24.9) == []
    assert kinds(pair.tick(0.1)) == [("a", 4, 32)]
    # traffic postpones it
    run(pair, 10)
    pair.send(pair.a, ipv4_packet(b"data"))  # at +35
    a_sent = [s for s in run(pair, 15) if s[0] == "a"]  # +50: 25 after the keepalive
    assert a_sent == []
    # b's passive keepalive (at +45, for a's data) is traffic too: a's next one is due at +70
    assert [s for s in run(pair, 15) if s[0] == "a"] == []
    assert kinds([s for s in run(pair, 5.5) if s[0] == "a"]) == [("a", 4, 32)]


def test_poll_timeout_tracks_the_earliest_timer() -> None:
    pair = Pair()
    assert pair.a.device.poll_timeout() is None
    pair.handshake()
    t0 = pair.now
    assert pair.b.device.poll_timeout() == t0 + KEEPALIVE_TIMEOUT
    pair.tick(KEEPALIVE_TIMEOUT)
    assert pair.b.device.poll_timeout() == t0 + ZERO_KEYS_AFTER
