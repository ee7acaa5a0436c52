"""Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s as WireGuard uses it (whitepaper section 5.4.2-5.4.5).

Theory of operation: the initiator knows the responder's static key in advance (IK). Message 1
(initiation) carries the initiator's ephemeral key, its static key encrypted to the responder, and
a TAI64N timestamp for replay protection. Message 2 (response) carries the responder's ephemeral
key and an empty AEAD payload that proves possession of all keys and of the preshared key (psk2:
mixed in at the end of message 2). Both sides then derive a pair of transport keys from the final
chaining key. These functions are pure: ephemeral keys and indices are passed in, macs are the
device's business (they cover the packed message bodies).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import crypto
from .messages import Initiation, Response, pack_initiation_body, pack_response_body

CONSTRUCTION = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
IDENTIFIER = b"WireGuard v1 zx2c4 Jason@zx2c4.com"
LABEL_MAC1 = b"mac1----"
LABEL_COOKIE = b"cookie--"

INITIAL_CHAIN_KEY = crypto.hash_(CONSTRUCTION)
_INITIAL_HASH = crypto.hash_(INITIAL_CHAIN_KEY, IDENTIFIER)
ZERO_KEY = bytes(32)

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

    private: X25519PrivateKey
    public: bytes
    initial_hash: bytes  # HASH(HASH(C0 || IDENTIFIER) || our public), the responder's H start
    mac1_key: bytes  # verifies mac1 of messages sent to us
    cookie_key: bytes  # encrypts the cookie replies we send

    @classmethod
    def from_private(cls, private_key: bytes) -> StaticIdentity:
        if len(private_key) != 32:
            raise ValueError("private key must be 32 bytes")
        priv = X25519PrivateKey.from_private_bytes(private_key)
        pub = priv.public_key().public_bytes_raw()
        return cls(
            priv,
            pub,
            crypto.hash_(_INITIAL_HASH, pub),
            crypto.hash_(LABEL_MAC1, pub),
            crypto.hash_(LABEL_COOKIE, pub),
        )


@dataclass(frozen=True, slots=True)
class PeerKeys:
    """A peer's static key and the values precomputed from it and our key."""

    public: bytes
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
        return cls(
            public,
            preshared if preshared is not None else ZERO_KEY,
            crypto.dh(identity.private, public),
            crypto.hash_(_INITIAL_HASH, public),
            crypto.hash_(LABEL_MAC1, public),
            crypto.hash_(LABEL_COOKIE, public),
        )


@dataclass(slots=True)
class InitiatorState:
    """What the initiator keeps between sending message 1 and receiving message 2."""

    local_index: int
    ephemeral: X25519PrivateKey
    chain_key: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class ConsumedInitiation:
    peer_public: bytes
    timestamp: bytes
    remote_index: int
    remote_ephemeral: bytes
    chain_key: bytes
    hash: bytes


@dataclass(frozen=True, slots=True)
class TransportKeys:
    send: bytes
    receive: bytes


def create_initiation(
    identity: StaticIdentity,
    peer: PeerKeys,
    local_index: int,
    ephemeral_private: bytes,
    timestamp: bytes,
) -> tuple[bytes, InitiatorState]:
    """Message 1 without mac1/mac2, and the state needed to consume the response."""
    eph = X25519PrivateKey.from_private_bytes(ephemeral_private)
    eph_pub = eph.public_key().public_bytes_raw()
    h = peer.initial_hash
    c = crypto.kdf1(INITIAL_CHAIN_KEY, eph_pub)
    h = crypto.hash_(h, eph_pub)
    c, k = crypto.kdf2(c, crypto.dh(eph, peer.public))
    enc_static = crypto.aead_encrypt(k, 0, identity.public, h)
    h = crypto.hash_(h, enc_static)
    c, k = crypto.kdf2(c, peer.static_static)
    enc_ts = crypto.aead_encrypt(k, 0, timestamp, h)
    h = crypto.hash_(h, enc_ts)
    body = pack_initiation_body(local_index, eph_pub, enc_static, enc_ts)
    return body, InitiatorState(local_index, eph, c, h)


def consume_initiation(
    identity: StaticIdentity, msg: Initiation, lookup: Callable[[bytes], PeerKeys | None]
) -> ConsumedInitiation:
    """Decrypt message 1. Raises CryptoError if it does not authenticate or the peer is unknown."""
    h = identity.initial_hash
    c = crypto.kdf1(INITIAL_CHAIN_KEY, msg.ephemeral)
    h = crypto.hash_(h, msg.ephemeral)
    c, k = crypto.kdf2(c, crypto.dh(identity.private, msg.ephemeral))
    peer_public = crypto.aead_decrypt(k, 0, msg.encrypted_static, h)
    h = crypto.hash_(h, msg.encrypted_static)
    peer = lookup(peer_public)
    if peer is None:
        raise UnknownPeerError(peer_public)
    c, k = crypto.kdf2(c, peer.static_static)
    timestamp = crypto.aead_decrypt(k, 0, msg.encrypted_timestamp, h)
    h = crypto.hash_(h, msg.encrypted_timestamp)
    return ConsumedInitiation(peer_public, timestamp, msg.sender, msg.ephemeral, c, h)


class UnknownPeerError(crypto.CryptoError):
    def __init__(self, public_key: bytes) -> None:
        super().__init__("unknown peer")
        self.public_key = public_key


def create_response(
    peer: PeerKeys, state: ConsumedInitiation, local_index: int, ephemeral_private: bytes
) -> tuple[bytes, TransportKeys]:
    """Message 2 without macs, and the responder's transport keys."""
    eph = X25519PrivateKey.from_private_bytes(ephemeral_private)
    eph_pub = eph.public_key().public_bytes_raw()
    c = crypto.kdf1(state.chain_key, eph_pub)
    h = crypto.hash_(state.hash, eph_pub)
    c = crypto.kdf1(c, crypto.dh(eph, state.remote_ephemeral))
    c = crypto.kdf1(c, crypto.dh(eph, peer.public))
    c, t, k = crypto.kdf3(c, peer.preshared)
    h = crypto.hash_(h, t)
    enc_nothing = crypto.aead_encrypt(k, 0, b"", h)
    recv, send = crypto.kdf2(c, b"")
    body = pack_response_body(local_index, state.remote_index, eph_pub, enc_nothing)
    return body, TransportKeys(send, recv)


def consume_response(
    identity: StaticIdentity, peer: PeerKeys, state: InitiatorState, msg: Response
) -> TransportKeys:
    """Verify message 2; raises CryptoError (e.g. a preshared key mismatch)."""
    c = crypto.kdf1(state.chain_key, msg.ephemeral)
    h = crypto.hash_(state.hash, msg.ephemeral)
    c = crypto.kdf1(c, crypto.dh(state.ephemeral, msg.ephemeral))
    c = crypto.kdf1(c, crypto.dh(identity.private, msg.ephemeral))
    c, t, k = crypto.kdf3(c, peer.preshared)
    h = crypto.hash_(h, t)
    crypto.aead_decrypt(k, 0, msg.encrypted_nothing, h)
    send, recv = crypto.kdf2(c, b"")
    return TransportKeys(send, recv)
