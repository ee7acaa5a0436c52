"""A sans-IO WireGuard device: peers, handshakes, sessions, cookies and timers.

Theory of operation
-------------------
The device holds our static key and a table of peers. The driver feeds it three kinds of input and
sends whatever `Transmit`s come back as UDP datagrams:

* `encapsulate(peer, packet, now)`: an inner IP packet for a peer. With a usable session it is
  padded to 16 bytes and sealed into a transport message; otherwise it waits in the peer's bounded
  queue (QUEUE_SIZE, oldest dropped) and a handshake initiation is returned.
* `decapsulate(datagram, source, now)`: a received datagram. Transport messages are authenticated,
  replay-checked and returned as `Decapsulated.packet`; handshake messages are answered (response,
  cookie reply) or complete a session, which flushes the queue. Nothing raises: a datagram that is
  dropped says why in `Decapsulated.error` (see ERRORS).
* `handle_timeout(now)`: due at `poll_timeout()`; runs the whitepaper timers (handshake
  retransmission with jitter, giving up after REKEY_ATTEMPT_TIME, passive keepalive, new handshake
  when sent data gets no answer, persistent keepalive, zeroing keys after 3 * REJECT_AFTER_TIME).

Sessions rotate through previous/current/next keypairs like the reference implementations: the
initiator's new session becomes current at once (the old one stays as previous so in-flight
packets still decrypt); the responder's new session waits as next until the first transport
message from the initiator proves the initiator has it too. The initiator starts a new handshake
when sending on a session older than REKEY_AFTER_TIME (or after REKEY_AFTER_MESSAGES), and when
receiving on one older than REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT. No session is
used past REJECT_AFTER_TIME.

Under load (the `under_load` callback, or by default more than UNDER_LOAD_HANDSHAKES_PER_SECOND
handshake messages within a second) handshake messages need a valid mac2; without one the device
answers with a cookie reply (XChaCha20Poly1305-sealed MAC of the source address under a secret that
rotates every two minutes). An initiator that receives a cookie uses it for mac2 on its retries.

Each authenticated datagram moves the peer's endpoint to its source (roaming). Initiation replay
is prevented with the TAI64N timestamp (must grow per peer) plus a per-peer rate limit.

Time is the `now` argument (seconds, monotonic); TAI64N timestamps use `now + wall_offset`, so the
driver passes `wall_offset = time.time() - time.monotonic()`. Randomness (keys, indices, jitter,
cookie secrets and nonces) comes from the injected `rng`.

Threads
-------
A Device is meant to be driven from one thread. The split "encapsulate/encrypt_batch on one
thread, decapsulate on another" is tolerated for the steady state: nonces come from an atomic
counter and the replay window is only touched by the receiving thread; races around handshakes
can at worst cost a retransmission or a spurious keepalive. Drivers that want strict behaviour
serialize all calls with one lock.

Fast paths
----------
`encapsulate` / `decapsulate` do one dict lookup, one struct pack or unpack, one AEAD call with a
cipher object kept per session, and a few attribute updates for the timers; timers are deadlines
checked in `handle_timeout`, never per packet. `encrypt_batch(peer, packets, now)` seals many
packets for one peer and returns `(endpoint, datagrams, other_transmits)` for one UDP GSO send;
it saves the per-packet `Transmit` and method call (about 0.6 us per packet).
`decrypt_batch(datagrams, source, now)` is the receive-side counterpart: a lazy generator over
one receive round that yields plain tuples instead of `Decapsulated` objects.
"""

from __future__ import annotations

import ipaddress
import math
import os
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any, cast

from cryptography.exceptions import InvalidTag

from . import crypto
from .constants import (
    COOKIE_LIFETIME,
    COOKIE_SECRET_LIFETIME,
    INITIATION_MIN_INTERVAL,
    KEEPALIVE_TIMEOUT,
    QUEUE_SIZE,
    REJECT_AFTER_MESSAGES,
    REKEY_AFTER_MESSAGES,
    REKEY_ATTEMPT_TIME,
    REKEY_TIMEOUT,
    REKEY_TIMEOUT_JITTER_MAX,
    REPLAY_WINDOW,
    UNDER_LOAD_AFTER_TIME,
    UNDER_LOAD_HANDSHAKES_PER_SECOND,
    ZERO_KEYS_AFTER,
)
from .messages import (
    DATA_HEADER,
    DATA_MIN_SIZE,
    INITIATION_MAC1_OFFSET,
    MESSAGE_COOKIE_REPLY,
    MESSAGE_DATA,
    MESSAGE_INITIATION,
    MESSAGE_RESPONSE,
    RESPONSE_MAC1_OFFSET,
    CookieReply,
    pack_cookie_reply,
    parse_cookie_reply,
    parse_initiation,
    parse_response,
)
from .noise import (
    ZERO_KEY,
    InitiatorState,
    PeerKeys,
    StaticIdentity,
    UnknownPeerError,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
    tai64n,
)
from .session import Keypair

Endpoint = tuple[str, int]

# Every value Decapsulated.error can take.
ERRORS = frozenset(
    {
        "invalid message",  # shorter than 4 bytes, unknown type or non-zero reserved bytes
        "invalid size",  # wrong length for its type
        "invalid mac1",
        "cookie required",  # under load and mac2 missing/invalid; transmits hold a cookie reply
        "invalid public key",  # a low-order X25519 point
        "decryption failed",  # an AEAD tag did not verify (also: preshared key mismatch)
        "unknown peer",  # initiation from a static key we do not know
        "replayed initiation",  # TAI64N timestamp not newer than the last one from that peer
        "initiation flood",  # more than one initiation per INITIATION_MIN_INTERVAL from a peer
        "unknown receiver index",
        "unexpected cookie reply",  # no handshake message of ours awaiting one
        "invalid counter",  # counter beyond REJECT_AFTER_MESSAGES
        "replayed counter",  # counter seen before or older than the replay window
        "expired session",  # session older than REJECT_AFTER_TIME
        "invalid inner packet",  # authenticated, but not an IPv4/IPv6 packet of sane length
    }
)

_NONCE = struct.Struct("<4xQ")
_PACK_HEADER = DATA_HEADER.pack
_UNPACK_HEADER = DATA_HEADER.unpack_from
_PACK_NONCE = _NONCE.pack
_PADDING = bytes(16)
_ZERO_MAC = bytes(16)
_INF = math.inf
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1
_NEW_HANDSHAKE_AFTER = KEEPALIVE_TIMEOUT + REKEY_TIMEOUT
_KEEPALIVE_TIMEOUT = KEEPALIVE_TIMEOUT


@dataclass(frozen=True, slots=True, init=False)
class Transmit:
    """A UDP datagram to send."""

    endpoint: Endpoint
    data: bytes

    def __init__(self, endpoint: Endpoint, data: bytes) -> None:
        # The dataclass-generated frozen __init__ goes through object.__setattr__, which costs
        # more than the rest of a packet's bookkeeping; the slot descriptors are direct.
        _set_endpoint(self, endpoint)
        _set_data(self, data)


_set_endpoint = cast(Any, Transmit.__dict__["endpoint"]).__set__
_set_data = cast(Any, Transmit.__dict__["data"]).__set__


@dataclass(slots=True)
class Decapsulated:
    """The result of one received datagram."""

    peer: bytes | None  # public key of the authenticated sender, if any
    packet: bytes | None  # decrypted inner IP packet (None for keepalives and handshakes)
    transmits: list[Transmit]  # to send now: responses, cookie replies, flushed queued packets
    error: str | None = None  # why the datagram was dropped; None if accepted


# What `Device.decrypt_batch` yields per datagram: (peer, packet, transmits or None, error).
Received = tuple[bytes | None, bytes | None, list[Transmit] | None, str | None]


def _dropped(error: str) -> Decapsulated:
    return Decapsulated(None, None, [], error)


class Peer:
    """Per-peer state. Internal: the device's methods are the API."""

    __slots__ = (
        "cookie",
        "cookie_time",
        "current",
        "endpoint",
        "handshake",
        "handshake_started",
        "keepalive_due",
        "keys",
        "last_handshake",
        "last_initiation_consumed",
        "last_initiation_sent",
        "last_mac1",
        "last_timestamp",
        "last_traversal",
        "new_handshake_due",
        "next",
        "persistent_keepalive",
        "previous",
        "public",
        "queue",
        "retransmit_due",
        "rx_bytes",
        "sent_last_minute_handshake",
        "tx_bytes",
        "zero_keys_due",
    )

    def __init__(self, keys: PeerKeys) -> None:
        self.keys = keys
        self.public = keys.public
        self.endpoint: Endpoint | None = None
        self.persistent_keepalive: int | None = None
        self.current: Keypair | None = None
        self.previous: Keypair | None = None
        self.next: Keypair | None = None
        self.handshake: InitiatorState | None = None
        self.handshake_started: float | None = None  # first attempt of the current series
        self.last_initiation_sent: float | None = None
        self.last_initiation_consumed: float | None = None
        self.last_timestamp = bytes(12)
        self.last_handshake: float | None = None
        self.last_mac1: bytes | None = None  # mac1 of our last handshake message (cookie AD)
        self.cookie: bytes | None = None
        self.cookie_time = -_INF
        self.queue: deque[bytes] = deque(maxlen=QUEUE_SIZE)
        self.sent_last_minute_handshake = False
        # Timer deadlines (None = not armed).
        self.retransmit_due: float | None = None
        self.keepalive_due: float | None = None
        self.new_handshake_due: float | None = None
        self.zero_keys_due: float | None = None
        # Last authenticated packet sent or received, for the persistent keepalive. -inf makes a
        # newly configured persistent keepalive fire at once, as wg does.
        self.last_traversal = -_INF
        # Transport-data datagram bytes sent / authenticated and received (like wg's transfer).
        self.rx_bytes = 0
        self.tx_bytes = 0

    def next_due(self) -> float:
        due = _INF
        for d in (self.retransmit_due, self.keepalive_due, self.new_handshake_due):
            if d is not None and d < due:
                due = d
        if self.zero_keys_due is not None and self.zero_keys_due < due:
            due = self.zero_keys_due
        if self.persistent_keepalive:
            due = min(due, self.last_traversal + self.persistent_keepalive)
        return due


def _source_bytes(source: Endpoint) -> bytes:
    host, port = source[0], source[1]
    try:
        packed = ipaddress.ip_address(host).packed
    except ValueError:
        packed = host.encode()
    return packed + (port & 0xFFFF).to_bytes(2, "big")


class Device:
    def __init__(
        self,
        private_key: bytes,
        *,
        rng: Callable[[int], bytes] = os.urandom,
        wall_offset: float = 0.0,
        under_load: Callable[[], bool] | None = None,
    ) -> None:
        self._identity = StaticIdentity.from_private(private_key)
        self.public_key: bytes = self._identity.public
        self._rng = rng
        self._wall_offset = wall_offset
        self._under_load_cb = under_load
        self._peers: dict[bytes, Peer] = {}
        self._keypairs: dict[int, Keypair] = {}
        self._handshakes: dict[int, Peer] = {}  # local index of our pending initiation -> peer
        self._next_timer = _INF
        self._cookie_secret = b""
        self._cookie_secret_time = -_INF
        self._load_window_start = -_INF
        self._load_count = 0
        self._under_load_until = -_INF

    # ----------------------------------------------------------------- configuration

    def add_peer(
        self,
        public_key: bytes,
        *,
        preshared_key: bytes | None = None,
        endpoint: Endpoint | None = None,
        persistent_keepalive: int | None = None,
    ) -> None:
        """Add a peer, or update an existing one (sessions are kept). Raises ValueError for a
        malformed or low-order public key or a preshared key that is not 32 bytes."""
        if public_key == self.public_key:
            raise ValueError("a device cannot be its own peer")
        peer = self._peers.get(public_key)
        # Re-adding a peer with the same keys (config pushes) keeps its precomputation: the
        # static-static DH costs as much as a quarter of a handshake side.
        if peer is None or peer.keys.preshared != (
            ZERO_KEY if preshared_key is None else preshared_key
        ):
            try:
                keys = PeerKeys.create(self._identity, public_key, preshared_key)
            except crypto.CryptoError as exc:
                raise ValueError("invalid peer public key") from exc
            if peer is None:
                peer = self._peers[public_key] = Peer(keys)
            else:
                peer.keys = keys
        if endpoint is not None:
            peer.endpoint = endpoint
        if persistent_keepalive != peer.persistent_keepalive:
            peer.persistent_keepalive = persistent_keepalive or None
            if peer.persistent_keepalive:
                peer.last_traversal = -_INF
                self._next_timer = -_INF

    def remove_peer(self, public_key: bytes) -> None:
        peer = self._peers.pop(public_key, None)
        if peer is None:
            return
        self._drop_keypairs(peer)
        self._drop_handshake(peer)
        peer.queue.clear()

    def has_peer(self, public_key: bytes) -> bool:
        return public_key in self._peers

    def peers(self) -> list[bytes]:
        return list(self._peers)

    def peer_endpoint(self, public_key: bytes) -> Endpoint | None:
        peer = self._peers.get(public_key)
        return peer.endpoint if peer is not None else None

    def peer_last_handshake(self, public_key: bytes) -> float | None:
        """`now` of the last completed handshake with the peer (None if never)."""
        peer = self._peers.get(public_key)
        return peer.last_handshake if peer is not None else None

    def peer_handshake_started(self, public_key: bytes) -> float | None:
        """`now` when the handshake attempt in progress began (None: none in progress)."""
        peer = self._peers.get(public_key)
        return peer.handshake_started if peer is not None else None

    def peer_transfer(self, public_key: bytes) -> tuple[int, int] | None:
        """(received, sent) transport-data bytes of the peer (None if unknown)."""
        peer = self._peers.get(public_key)
        return (peer.rx_bytes, peer.tx_bytes) if peer is not None else None

    def peer_has_session(self, public_key: bytes, now: float) -> bool:
        """True if a packet for the peer would be sent at once rather than queued."""
        peer = self._peers.get(public_key)
        if peer is None or peer.endpoint is None:
            return False
        kp = peer.current
        return kp is not None and now < kp.expires_at and not kp.exhausted

    # ----------------------------------------------------------------- data path

    def encapsulate(self, public_key: bytes, packet: bytes, now: float) -> list[Transmit]:
        """Seal `packet` for the peer. Without a usable session the packet is queued and a
        handshake initiation is returned (rate limited to one per REKEY_TIMEOUT). An unknown
        peer's packet is dropped ([] is returned)."""
        peer = self._peers.get(public_key)
        if peer is None:
            return []
        kp = peer.current
        if kp is None or now >= kp.send_rekey_at or kp.exhausted or peer.endpoint is None:
            return self._encapsulate_slow(peer, packet, now, None)
        counter = kp.next_counter()
        if counter >= REKEY_AFTER_MESSAGES:
            return self._encapsulate_slow(peer, packet, now, counter)
        pad = -len(packet) & 15
        if pad:
            packet += _PADDING[:pad]
        data = _PACK_HEADER(MESSAGE_DATA, kp.remote_index, counter) + kp.send.encrypt(
            _PACK_NONCE(counter), packet, None
        )
        peer.keepalive_due = None
        peer.last_traversal = now
        if packet and peer.new_handshake_due is None:
            due = now + _NEW_HANDSHAKE_AFTER
            peer.new_handshake_due = due
            if due < self._next_timer:
                self._next_timer = due
        peer.tx_bytes += len(data)
        return [Transmit(peer.endpoint, data)]

    def _encapsulate_slow(
        self, peer: Peer, packet: bytes, now: float, counter: int | None
    ) -> list[Transmit]:
        """No session, an old one, or one due for a rekey (`counter` if already taken)."""
        kp = peer.current
        endpoint = peer.endpoint
        if kp is not None and counter is not None and counter >= REJECT_AFTER_MESSAGES:
            kp.exhausted = True
        if kp is None or endpoint is None or now >= kp.expires_at or kp.exhausted:
            peer.queue.append(packet)
            t = self._initiate(peer, now, False)
            return [t] if t is not None else []
        # Still usable, but due for a rekey: send on it and start a handshake.
        if counter is None:
            counter = kp.next_counter()
        pad = -len(packet) & 15
        if pad:
            packet += _PADDING[:pad]
        data = _PACK_HEADER(MESSAGE_DATA, kp.remote_index, counter) + kp.send.encrypt(
            _PACK_NONCE(counter), packet, None
        )
        peer.keepalive_due = None
        peer.last_traversal = now
        if packet and peer.new_handshake_due is None:
            peer.new_handshake_due = now + _NEW_HANDSHAKE_AFTER
            self._next_timer = min(self._next_timer, peer.new_handshake_due)
        peer.tx_bytes += len(data)
        out = [Transmit(endpoint, data)]
        t = self._initiate(peer, now, False)
        if t is not None:
            out.append(t)
        return out

    def encrypt_batch(
        self, public_key: bytes, packets: Iterable[bytes], now: float
    ) -> tuple[Endpoint | None, list[bytes], list[Transmit]]:
        """Seal many packets for one peer: (endpoint, datagrams for it, other transmits).

        The datagrams all go to the endpoint (one GSO send); other transmits are handshake
        messages. Packets that cannot be sent yet are queued like in `encapsulate`.
        """
        peer = self._peers.get(public_key)
        if peer is None:
            return None, [], []
        kp = peer.current
        endpoint = peer.endpoint
        if kp is None or endpoint is None or now >= kp.expires_at or kp.exhausted:
            peer.queue.extend(packets)
            t = self._initiate(peer, now, False)
            return endpoint, [], [t] if t is not None else []
        out: list[bytes] = []
        append = out.append
        encrypt = kp.send.encrypt
        remote = kp.remote_index
        next_counter = kp.next_counter
        counter = 0
        data_sent = False
        for packet in packets:
            counter = next_counter()
            pad = -len(packet) & 15
            if pad:
                packet += _PADDING[:pad]
            data_sent = data_sent or bool(packet)
            append(
                _PACK_HEADER(MESSAGE_DATA, remote, counter)
                + encrypt(_PACK_NONCE(counter), packet, None)
            )
        if not out:
            return endpoint, out, []
        peer.tx_bytes += sum(map(len, out))
        peer.keepalive_due = None
        peer.last_traversal = now
        if data_sent and peer.new_handshake_due is None:
            due = now + _NEW_HANDSHAKE_AFTER
            peer.new_handshake_due = due
            if due < self._next_timer:
                self._next_timer = due
        others: list[Transmit] = []
        if counter >= REJECT_AFTER_MESSAGES:
            kp.exhausted = True
        if now >= kp.send_rekey_at or counter >= REKEY_AFTER_MESSAGES:
            t = self._initiate(peer, now, False)
            if t is not None:
                others.append(t)
        return endpoint, out, others

    def decrypt_batch(
        self, datagrams: Iterable[bytes], source: Endpoint, now: float
    ) -> Iterator[Received]:
        """`decapsulate` for many datagrams from one source (a receive round or a GRO batch).

        Yields one `(peer, packet, transmits, error)` tuple per datagram, in order, with the
        same meaning as `Decapsulated`'s fields except that `transmits` is None when empty. It
        is lazy: datagram i+1 is only processed when the caller asks for it, so a caller that
        calls into the device between items (e.g. `encapsulate` for a reject reply) sees exactly
        the state -- counters, timers, sessions -- that per-datagram `decapsulate` calls would
        give. The transport path is a copy of `decapsulate`'s (the per-datagram call, the
        `Decapsulated` object and the attribute lookups are what this saves); anything else
        goes through `decapsulate`.
        """
        keypairs = self._keypairs
        decapsulate = self.decapsulate
        unpack = _UNPACK_HEADER
        pack_nonce = _PACK_NONCE
        for data in datagrams:
            if len(data) < DATA_MIN_SIZE:
                d = decapsulate(data, source, now)
                yield d.peer, d.packet, d.transmits or None, d.error
                continue
            kind, index, counter = unpack(data)
            if kind != MESSAGE_DATA:
                d = decapsulate(data, source, now)
                yield d.peer, d.packet, d.transmits or None, d.error
                continue
            kp = keypairs.get(index)
            if kp is None:
                yield None, None, None, "unknown receiver index"
                continue
            if counter >= REJECT_AFTER_MESSAGES:
                yield None, None, None, "invalid counter"
                continue
            top = kp.window_top
            if counter <= top:
                back = top - counter
                if back >= REPLAY_WINDOW or (kp.window_bits >> back) & 1:
                    yield None, None, None, "replayed counter"
                    continue
            if now >= kp.expires_at:
                yield None, None, None, "expired session"
                continue
            try:
                plain = kp.recv.decrypt(pack_nonce(counter), data[16:], None)
            except InvalidTag:
                yield None, None, None, "decryption failed"
                continue
            top = kp.window_top
            if counter > top:
                shift = counter - top
                if shift >= REPLAY_WINDOW:
                    kp.window_bits = 1
                elif shift == 1 and counter & 0x3FF:
                    kp.window_bits = (kp.window_bits << 1) | 1
                else:
                    kp.window_bits = ((kp.window_bits << shift) | 1) & _WINDOW_MASK
                kp.window_top = counter
            else:
                kp.window_bits |= 1 << (top - counter)
            peer: Peer = kp.peer
            peer.endpoint = source
            peer.rx_bytes += len(data)
            peer.last_traversal = now
            peer.new_handshake_due = None
            transmits: list[Transmit] | None = None
            if kp is not peer.current:
                if kp is peer.next:
                    self._confirm_next(peer, now)
                    transmits = self._flush(peer, now) or None
            elif now >= kp.recv_rekey_at and not peer.sent_last_minute_handshake:
                peer.sent_last_minute_handshake = True
                t = self._initiate(peer, now, False)
                if t is not None:
                    transmits = [t]
            if not plain:
                yield peer.public, None, transmits, None
                continue
            if peer.keepalive_due is None:
                due = now + _KEEPALIVE_TIMEOUT
                peer.keepalive_due = due
                if due < self._next_timer:
                    self._next_timer = due
            n = len(plain)
            version = plain[0] >> 4
            if version == 4 and n >= 20:
                length = (plain[2] << 8) | plain[3]
            elif version == 6 and n >= 40:
                length = ((plain[4] << 8) | plain[5]) + 40
            else:
                yield peer.public, None, transmits, "invalid inner packet"
                continue
            if length != n:
                if length > n or length < 20:
                    yield peer.public, None, transmits, "invalid inner packet"
                    continue
                plain = plain[:length]
            yield peer.public, plain, transmits, None

    def decapsulate(self, data: bytes, source: Endpoint, now: float) -> Decapsulated:
        """Process one received datagram. Never raises on bad input."""
        # The transport path is inlined here: a method call per packet is measurable.
        if len(data) < DATA_MIN_SIZE:
            return self._receive_other(data, source, now)
        kind, index, counter = _UNPACK_HEADER(data)
        if kind != MESSAGE_DATA:
            return self._receive_other(data, source, now)
        kp = self._keypairs.get(index)
        if kp is None:
            return _dropped("unknown receiver index")
        if counter >= REJECT_AFTER_MESSAGES:
            return _dropped("invalid counter")
        top = kp.window_top
        if counter <= top:
            back = top - counter
            if back >= REPLAY_WINDOW or (kp.window_bits >> back) & 1:
                return _dropped("replayed counter")
        if now >= kp.expires_at:
            return _dropped("expired session")
        try:
            plain = kp.recv.decrypt(_PACK_NONCE(counter), data[16:], None)
        except InvalidTag:
            return _dropped("decryption failed")
        # Authenticated: commit the counter to the window.
        top = kp.window_top
        if counter > top:
            shift = counter - top
            if shift >= REPLAY_WINDOW:
                kp.window_bits = 1
            elif shift == 1 and counter & 0x3FF:
                kp.window_bits = (kp.window_bits << 1) | 1
            else:
                # Trim the bits that fell out of the window now and then, not per packet.
                kp.window_bits = ((kp.window_bits << shift) | 1) & _WINDOW_MASK
            kp.window_top = counter
        else:
            # A reordered packet: the pre-check guaranteed it is inside the window and unseen.
            kp.window_bits |= 1 << (top - counter)
        peer: Peer = kp.peer
        peer.endpoint = source
        peer.rx_bytes += len(data)
        peer.last_traversal = now
        peer.new_handshake_due = None
        transmits: list[Transmit] = []
        if kp is not peer.current:
            if kp is peer.next:
                self._confirm_next(peer, now)
                transmits = self._flush(peer, now)
        elif now >= kp.recv_rekey_at and not peer.sent_last_minute_handshake:
            peer.sent_last_minute_handshake = True
            t = self._initiate(peer, now, False)
            if t is not None:
                transmits.append(t)
        if not plain:
            return Decapsulated(peer.public, None, transmits)
        if peer.keepalive_due is None:
            due = now + _KEEPALIVE_TIMEOUT
            peer.keepalive_due = due
            if due < self._next_timer:
                self._next_timer = due
        # Strip the padding using the IP header's own length.
        n = len(plain)
        version = plain[0] >> 4
        if version == 4 and n >= 20:
            length = (plain[2] << 8) | plain[3]
        elif version == 6 and n >= 40:
            length = ((plain[4] << 8) | plain[5]) + 40
        else:
            return Decapsulated(peer.public, None, transmits, "invalid inner packet")
        if length != n:
            if length > n or length < 20:
                return Decapsulated(peer.public, None, transmits, "invalid inner packet")
            plain = plain[:length]
        return Decapsulated(peer.public, plain, transmits)

    def _receive_other(self, data: bytes, source: Endpoint, now: float) -> Decapsulated:
        if len(data) < 4:
            return _dropped("invalid message")
        kind = int.from_bytes(data[:4], "little")
        try:
            if kind == MESSAGE_INITIATION:
                return self._receive_initiation(data, source, now)
            if kind == MESSAGE_RESPONSE:
                return self._receive_response(data, source, now)
            if kind == MESSAGE_COOKIE_REPLY:
                return self._receive_cookie_reply(data, now)
        except crypto.CryptoError as exc:
            # Defensive: the handlers map their own failures; this keeps the no-raise promise.
            return _dropped(str(exc) if str(exc) in ERRORS else "decryption failed")
        if kind == MESSAGE_DATA:
            return _dropped("invalid size")
        return _dropped("invalid message")

    # ----------------------------------------------------------------- handshake path

    def _receive_initiation(self, data: bytes, source: Endpoint, now: float) -> Decapsulated:
        self._count_handshake(now)
        msg = parse_initiation(data)
        if msg is None:
            return _dropped("invalid size")
        if not compare_digest(
            crypto.mac(self._identity.mac1_key, data[:INITIATION_MAC1_OFFSET]), msg.mac1
        ):
            return _dropped("invalid mac1")
        if self._is_under_load(now) and not self._mac2_ok(data, source, now):
            return Decapsulated(
                None,
                None,
                [self._cookie_reply(msg.sender, msg.mac1, source, now)],
                "cookie required",
            )
        try:
            consumed = consume_initiation(self._identity, msg, self._lookup_keys)
        except UnknownPeerError:
            return _dropped("unknown peer")
        except crypto.CryptoError as exc:
            return _dropped(str(exc))
        peer = self._peers[consumed.peer_public]
        if consumed.timestamp <= peer.last_timestamp:
            return _dropped("replayed initiation")
        if (
            peer.last_initiation_consumed is not None
            and now - peer.last_initiation_consumed < INITIATION_MIN_INTERVAL
        ):
            return _dropped("initiation flood")
        peer.last_timestamp = consumed.timestamp
        peer.last_initiation_consumed = now
        peer.endpoint = source
        local_index = self._new_index()
        try:
            body, keys = create_response(peer.keys, consumed, local_index, self._rng(32))
        except crypto.CryptoError as exc:
            return _dropped(str(exc))
        response = self._finish_handshake_message(peer, body, now)
        kp = Keypair(peer, keys.send, keys.receive, local_index, consumed.remote_index, False, now)
        # The responder's session waits as `next` until the initiator uses it.
        if peer.next is not None:
            self._keypairs.pop(peer.next.local_index, None)
        if peer.previous is not None:
            self._keypairs.pop(peer.previous.local_index, None)
            peer.previous = None
        peer.next = kp
        self._keypairs[local_index] = kp
        self._session_derived(peer, now)
        peer.last_traversal = now
        peer.keepalive_due = None
        peer.new_handshake_due = None
        return Decapsulated(peer.public, None, [Transmit(source, response)])

    def _receive_response(self, data: bytes, source: Endpoint, now: float) -> Decapsulated:
        self._count_handshake(now)
        msg = parse_response(data)
        if msg is None:
            return _dropped("invalid size")
        if not compare_digest(
            crypto.mac(self._identity.mac1_key, data[:RESPONSE_MAC1_OFFSET]), msg.mac1
        ):
            return _dropped("invalid mac1")
        if self._is_under_load(now) and not self._mac2_ok(data, source, now):
            return Decapsulated(
                None,
                None,
                [self._cookie_reply(msg.sender, msg.mac1, source, now)],
                "cookie required",
            )
        peer = self._handshakes.get(msg.receiver)
        if peer is None or peer.handshake is None:
            return _dropped("unknown receiver index")
        state = peer.handshake
        try:
            keys = consume_response(self._identity, peer.keys, state, msg)
        except crypto.CryptoError as exc:
            return _dropped(str(exc))
        self._drop_handshake(peer)
        kp = Keypair(peer, keys.send, keys.receive, state.local_index, msg.sender, True, now)
        old_current = peer.current
        if peer.previous is not None:
            self._keypairs.pop(peer.previous.local_index, None)
        if peer.next is not None:
            peer.previous = peer.next
            peer.next = None
            if old_current is not None:
                self._keypairs.pop(old_current.local_index, None)
        else:
            peer.previous = old_current
        peer.current = kp
        self._keypairs[kp.local_index] = kp
        peer.endpoint = source
        peer.last_traversal = now
        peer.new_handshake_due = None
        peer.retransmit_due = None
        peer.handshake_started = None
        peer.last_handshake = now
        self._session_derived(peer, now)
        if not peer.queue:
            peer.queue.append(b"")  # a keepalive confirms the session to the responder
        return Decapsulated(peer.public, None, self._flush(peer, now))

    def _receive_cookie_reply(self, data: bytes, now: float) -> Decapsulated:
        msg = parse_cookie_reply(data)
        if msg is None:
            return _dropped("invalid size")
        peer = self._handshakes.get(msg.receiver)
        if peer is None:
            kp = self._keypairs.get(msg.receiver)
            if kp is None:
                return _dropped("unknown receiver index")
            peer = kp.peer
        if peer.last_mac1 is None:
            return _dropped("unexpected cookie reply")
        try:
            cookie = crypto.xaead_decrypt(
                peer.keys.cookie_key, msg.nonce, msg.encrypted_cookie, peer.last_mac1
            )
        except crypto.CryptoError:
            return _dropped("decryption failed")
        peer.cookie = cookie
        peer.cookie_time = now
        peer.last_mac1 = None  # one cookie per handshake message
        # Not an authenticated sender (anyone on path can forge a cookie reply): no roaming.
        return Decapsulated(None, None, [])

    def _lookup_keys(self, public_key: bytes) -> PeerKeys | None:
        peer = self._peers.get(public_key)
        return peer.keys if peer is not None else None

    def _finish_handshake_message(self, peer: Peer, body: bytes, now: float) -> bytes:
        mac1 = crypto.mac(peer.keys.mac1_key, body)
        peer.last_mac1 = mac1
        if peer.cookie is not None and now - peer.cookie_time < COOKIE_LIFETIME:
            mac2 = crypto.mac(peer.cookie, body + mac1)
        else:
            mac2 = _ZERO_MAC
        return body + mac1 + mac2

    def _initiate(self, peer: Peer, now: float, retry: bool) -> Transmit | None:
        """Send a handshake initiation unless one went out less than REKEY_TIMEOUT ago."""
        endpoint = peer.endpoint
        if endpoint is None:
            return None
        if not retry:
            last = peer.last_initiation_sent
            if last is not None and now - last < REKEY_TIMEOUT:
                return None
            peer.handshake_started = now
        self._drop_handshake(peer)
        local_index = self._new_index()
        timestamp = tai64n(now + self._wall_offset)
        try:
            body, state = create_initiation(
                self._identity, peer.keys, local_index, self._rng(32), timestamp
            )
        except crypto.CryptoError:
            return None
        message = self._finish_handshake_message(peer, body, now)
        peer.handshake = state
        self._handshakes[local_index] = peer
        peer.last_initiation_sent = now
        jitter = int.from_bytes(self._rng(4), "little") / 2**32 * REKEY_TIMEOUT_JITTER_MAX
        due = now + REKEY_TIMEOUT + jitter
        peer.retransmit_due = due
        if due < self._next_timer:
            self._next_timer = due
        peer.keepalive_due = None
        peer.last_traversal = now
        return Transmit(endpoint, message)

    def _session_derived(self, peer: Peer, now: float) -> None:
        peer.sent_last_minute_handshake = False
        due = now + ZERO_KEYS_AFTER
        peer.zero_keys_due = due
        if due < self._next_timer:
            self._next_timer = due

    def _confirm_next(self, peer: Peer, now: float) -> None:
        if peer.previous is not None:
            self._keypairs.pop(peer.previous.local_index, None)
        peer.previous = peer.current
        peer.current = peer.next
        peer.next = None
        peer.last_handshake = now

    def _flush(self, peer: Peer, now: float) -> list[Transmit]:
        out: list[Transmit] = []
        queue = peer.queue
        while queue:
            if not self.peer_has_session(peer.public, now):
                break
            out.extend(self.encapsulate(peer.public, queue.popleft(), now))
        return out

    def _send_keepalive(self, peer: Peer, now: float) -> list[Transmit]:
        return self.encapsulate(peer.public, b"", now)

    def _new_index(self) -> int:
        while True:
            index = int.from_bytes(self._rng(4), "little")
            if index not in self._keypairs and index not in self._handshakes:
                return index

    def _drop_handshake(self, peer: Peer) -> None:
        if peer.handshake is not None:
            self._handshakes.pop(peer.handshake.local_index, None)
            peer.handshake = None

    def _drop_keypairs(self, peer: Peer) -> None:
        for kp in (peer.previous, peer.current, peer.next):
            if kp is not None:
                self._keypairs.pop(kp.local_index, None)
        peer.previous = peer.current = peer.next = None

    # ----------------------------------------------------------------- cookies and load

    def _count_handshake(self, now: float) -> None:
        if now - self._load_window_start >= 1.0:
            self._load_window_start = now
            self._load_count = 0
        self._load_count += 1
        if self._load_count > UNDER_LOAD_HANDSHAKES_PER_SECOND:
            self._under_load_until = now + UNDER_LOAD_AFTER_TIME

    def _is_under_load(self, now: float) -> bool:
        if self._under_load_cb is not None:
            return self._under_load_cb()
        return now < self._under_load_until

    def _cookie(self, source: Endpoint, now: float) -> bytes:
        if now - self._cookie_secret_time >= COOKIE_SECRET_LIFETIME:
            self._cookie_secret = self._rng(32)
            self._cookie_secret_time = now
        return crypto.mac(self._cookie_secret, _source_bytes(source))

    def _mac2_ok(self, data: bytes, source: Endpoint, now: float) -> bool:
        cookie = self._cookie(source, now)
        return compare_digest(crypto.mac(cookie, data[:-16]), data[-16:])

    def _cookie_reply(self, receiver: int, mac1: bytes, source: Endpoint, now: float) -> Transmit:
        nonce = self._rng(24)
        sealed = crypto.xaead_encrypt(
            self._identity.cookie_key, nonce, self._cookie(source, now), mac1
        )
        return Transmit(source, pack_cookie_reply(CookieReply(receiver, nonce, sealed)))

    # ----------------------------------------------------------------- timers

    def poll_timeout(self) -> float | None:
        """When `handle_timeout` is next due, None if no timer is armed.

        Never later than the earliest timer; it may be earlier (a timer was cancelled since, or
        the value is in the past and the call is due at once), in which case `handle_timeout`
        does nothing and the next poll is exact again."""
        if self._next_timer == _INF:
            return None
        return max(self._next_timer, 0.0)

    def handle_timeout(self, now: float) -> list[Transmit]:
        if now < self._next_timer:
            return []
        out: list[Transmit] = []
        next_timer = _INF
        for peer in list(self._peers.values()):
            self._peer_timers(peer, now, out)
            due = peer.next_due()
            if due < next_timer:
                next_timer = due
        self._next_timer = next_timer
        return out

    def _peer_timers(self, peer: Peer, now: float, out: list[Transmit]) -> None:
        due = peer.retransmit_due
        if due is not None and now >= due:
            peer.retransmit_due = None
            started = peer.handshake_started
            if started is not None and now - started >= REKEY_ATTEMPT_TIME:
                # Give up: drop the handshake and what waited for it.
                self._drop_handshake(peer)
                peer.handshake_started = None
                peer.queue.clear()
                if peer.zero_keys_due is None:
                    peer.zero_keys_due = now + ZERO_KEYS_AFTER
            else:
                t = self._initiate(peer, now, True)
                if t is not None:
                    out.append(t)
        due = peer.keepalive_due
        if due is not None and now >= due:
            peer.keepalive_due = None
            out.extend(self._send_keepalive(peer, now))
        due = peer.new_handshake_due
        if due is not None and now >= due:
            # We sent data and heard nothing back for KEEPALIVE_TIMEOUT + REKEY_TIMEOUT.
            peer.new_handshake_due = None
            t = self._initiate(peer, now, False)
            if t is not None:
                out.append(t)
        due = peer.zero_keys_due
        if due is not None and now >= due:
            peer.zero_keys_due = None
            self._drop_keypairs(peer)
            self._drop_handshake(peer)
            peer.retransmit_due = None
            peer.handshake_started = None
        interval = peer.persistent_keepalive
        if interval and now >= peer.last_traversal + interval:
            peer.last_traversal = now
            out.extend(self._send_keepalive(peer, now))
