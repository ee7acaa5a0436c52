"""Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (whitepaper section 5.4.2-5.4.5).

Theory of operation: the initiator knows the responder's static key in advance (IK). Message 1
(initiation) carries the initiator's ephemeral key, its static key encrypted to the responder, and
a TAI64N timestamp for replay protection. Message 2 (response) carries the responder's ephemeral
key and an empty AEAD payload that proves possession of all keys and of the preshared key (psk2:
mixed in at the end of message 2). Both sides then derive a pair of transport keys from the final
chaining key. These functions are pure: ephemeral keys and indices are passed in, macs are the
device's business (they cover the packed message bodies).

Cost: everything that depends only on static keys is computed once, when the identity or the
peer is configured (`StaticIdentity`, `PeerKeys`): the static-static DH (the same value serves
either role), the parsed peer public key, the initial hashes of both roles, the mac1 and cookie
keys; the constant initial chaining key's HMAC blocks are module constants. What is left per
handshake side is one key generation and three X25519 exchanges (each received ephemeral key is
parsed once and used twice), about twenty HMAC-BLAKE2s and two or three one-shot AEADs. X25519
dominates: see benchmarks/handshakes.py for the measured split.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from . import crypto
from .messages import Initiation, Response, pack_initiation_body, pack_response_body

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"

INITIAL_CHAIN_KEY = crypto.hash_(CONSTRUCTION)
_INITIAL_HASH = crypto.hash_(INITIAL_CHAIN_KEY, IDENTIFIER)
# Every handshake starts with KDF1(INITIAL_CHAIN_KEY, ephemeral): its HMAC key blocks are fixed.
_INITIAL_CHAIN = crypto.HmacKey(INITIAL_CHAIN_KEY)
ZERO_KEY = bytes(32)
# Each handshake AEAD key is used exactly once, so its nonce is always counter 0.
_NONCE0 = crypto.ZERO_NONCE
_blake2s = hashlib.blake2s
_kdf1 = crypto.kdf1
_kdf2 = crypto.kdf2
_kdf3 = crypto.kdf3

# TAI64 labels seconds with 2^62 + 10 (the TAI-UTC offset at 1970); nanoseconds are rounded down
# to 2^24 ns so the timestamp does not leak a fine-grained clock (as wireguard-go does).
_TAI64_BASE = (1 << 62) + 10
_TAI64N = struct.Struct(">QI")
_WHITENER = ~((1 << 24) - 1) & 0xFFFFFFFF


def tai64n(unix_time: float) -> bytes:
    secs = int(unix_time // 1)
    nanos = int((unix_time - secs) * 1e9) & _WHITENER
    return _TAI64N.pack(_TAI64_BASE + secs, min(nanos, 999_999_999))


@dataclass(frozen=True, slots=True)
class StaticIdentity:
    """Our long-term key and everything precomputed from it."""

    x25519: crypto.X25519  # the implementation this identity's keys (and its peers') belong to
    private: Any  # the x25519 handle of our private key
    public: bytes
    initial_hash: bytes  # HASH(HASH(C0 || IDENTIFIER) || our public), the responder's H start
    mac1_key: bytes  # verifies mac1 of messages sent to us
    cookie_key: bytes  # encrypts the cookie replies we send

    @classmethod
    def from_private(
        cls, private_key: bytes, x25519: crypto.X25519 | None = None
    ) -> StaticIdentity:
        if len(private_key) != 32:
            raise ValueError("private key must be 32 bytes")
        x25519 = x25519 or crypto.x25519
        priv, pub = x25519.load_private(private_key)
        return cls(
            x25519,
            priv,
            pub,
            crypto.hash_(_INITIAL_HASH, pub),
            crypto.hash_(LABEL_MAC1, pub),
            crypto.hash_(LABEL_COOKIE, pub),
        )


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """A peer's static key and the values precomputed from it and our key.

    `static_static` serves both roles: DH(our private, peer public) is the ss of the initiation
    whichever side initiates (the initiator mixes it in, the responder needs the same value)."""

    x25519: crypto.X25519
    public: bytes
    public_key: Any  # `public` parsed once (the responder's se = DH(e_r, S_i))
    preshared: bytes  # 32 zero bytes when no psk is configured (as the protocol specifies)
    static_static: bytes  # DH(our static, peer static)
    initial_hash: bytes  # HASH(HASH(C0 || IDENTIFIER) || peer public), the initiator's H start
    mac1_key: bytes  # mac1 of messages we send to the peer
    cookie_key: bytes  # decrypts cookie replies from the peer

    @classmethod
    def create(cls, identity: StaticIdentity, public: bytes, preshared: bytes | None) -> PeerKeys:
        if len(public) != 32:
            raise ValueError("public key must be 32 bytes")
        if preshared is not None and len(preshared) != 32:
            raise ValueError("preshared key must be 32 bytes")
        x25519 = identity.x25519
        public_key = x25519.load_public(public)
        return cls(
            x25519,
            public,
            public_key,
            preshared if preshared is not None else ZERO_KEY,
            x25519.dh(identity.private, public_key),
            crypto.hash_(_INITIAL_HASH, public),
            crypto.hash_(LABEL_MAC1, public),
            crypto.hash_(LABEL_COOKIE, public),
        )


@dataclass(slots=True)
class InitiatorState:
    """What the initiator keeps between sending message 1 and receiving message 2."""

    local_index: int
    ephemeral: Any  # x25519 handle
    chain_key: bytes
    hash: bytes


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__, which
# costs more than a KDF here. Treat instances as immutable all the same.
@dataclass(slots=True)
class ConsumedInitiation:
    peer_public: bytes
    timestamp: bytes
    remote_index: int
    remote_ephemeral: Any  # x25519 handle: parsed once for es, reused for the response's ee
    chain_key: bytes
    hash: bytes


@dataclass(slots=True)
class TransportKeys:
    send: bytes
    receive: bytes


def _open(key: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(_NONCE0, ciphertext, ad)
    except InvalidTag as exc:
        raise crypto.CryptoError("decryption failed") from exc


def create_initiation(
    identity: StaticIdentity,
    peer: PeerKeys,
    local_index: int,
    ephemeral_private: bytes,
    timestamp: bytes,
) -> tuple[bytes, InitiatorState]:
    """Message 1 without mac1/mac2, and the state needed to consume the response."""
    x25519 = identity.x25519
    eph, eph_pub = x25519.load_private(ephemeral_private)
    c = _INITIAL_CHAIN.kdf1(eph_pub)
    h = _blake2s(peer.initial_hash + eph_pub).digest()
    c, k = _kdf2(c, x25519.dh(eph, peer.public_key))
    enc_static = ChaCha20Poly1305(k).encrypt(_NONCE0, identity.public, h)
    h = _blake2s(h + enc_static).digest()
    c, k = _kdf2(c, peer.static_static)
    enc_ts = ChaCha20Poly1305(k).encrypt(_NONCE0, timestamp, h)
    h = _blake2s(h + enc_ts).digest()
    body = pack_initiation_body(local_index, eph_pub, enc_static, enc_ts)
    return body, InitiatorState(local_index, eph, c, h)


def consume_initiation(
    identity: StaticIdentity, msg: Initiation, lookup: Callable[[bytes], PeerKeys | None]
) -> ConsumedInitiation:
    """Decrypt message 1. Raises CryptoError if it does not authenticate or the peer is unknown."""
    x25519 = identity.x25519
    eph_pub = msg.ephemeral
    eph = x25519.load_public(eph_pub)
    c = _INITIAL_CHAIN.kdf1(eph_pub)
    h = _blake2s(identity.initial_hash + eph_pub).digest()
    c, k = _kdf2(c, x25519.dh(identity.private, eph))
    peer_public = _open(k, msg.encrypted_static, h)
    h = _blake2s(h + msg.encrypted_static).digest()
    peer = lookup(peer_public)
    if peer is None:
        raise UnknownPeerError(peer_public)
    c, k = _kdf2(c, peer.static_static)
    timestamp = _open(k, msg.encrypted_timestamp, h)
    h = _blake2s(h + msg.encrypted_timestamp).digest()
    return ConsumedInitiation(peer_public, timestamp, msg.sender, eph, c, h)


class UnknownPeerError(crypto.CryptoError):
    def __init__(self, public_key: bytes) -> None:
        super().__init__("unknown peer")
        self.public_key = public_key


def create_response(
    peer: PeerKeys, state: ConsumedInitiation, local_index: int, ephemeral_private: bytes
) -> tuple[bytes, TransportKeys]:
    """Message 2 without macs, and the responder's transport keys."""
    x25519 = peer.x25519
    eph, eph_pub = x25519.load_private(ephemeral_private)
    c = _kdf1(state.chain_key, eph_pub)
    h = _blake2s(state.hash + eph_pub).digest()
    c = _kdf1(c, x25519.dh(eph, state.remote_ephemeral))
    c = _kdf1(c, x25519.dh(eph, peer.public_key))
    c, t, k = _kdf3(c, peer.preshared)
    h = _blake2s(h + t).digest()
    enc_nothing = ChaCha20Poly1305(k).encrypt(_NONCE0, b"", h)
    recv, send = _kdf2(c, b"")
    body = pack_response_body(local_index, state.remote_index, eph_pub, enc_nothing)
    return body, TransportKeys(send, recv)


def consume_response(
    identity: StaticIdentity, peer: PeerKeys, state: InitiatorState, msg: Response
) -> TransportKeys:
    """Verify message 2; raises CryptoError (e.g. a preshared key mismatch)."""
    x25519 = identity.x25519
    eph_pub = msg.ephemeral
    eph = x25519.load_public(eph_pub)
    c = _kdf1(state.chain_key, eph_pub)
    h = _blake2s(state.hash + eph_pub).digest()
    c = _kdf1(c, x25519.dh(state.ephemeral, eph))
    c = _kdf1(c, x25519.dh(identity.private, eph))
    c, t, k = _kdf3(c, peer.preshared)
    h = _blake2s(h + t).digest()
    _open(k, msg.encrypted_nothing, h)
    send, recv = _kdf2(c, b"")
    return TransportKeys(send, recv)
