"""The handshake's fast paths against by-definition versions: HMAC/KDF assembled on hashlib, the
per-peer precomputation, and whole handshake messages from a straightforward Noise_IKpsk2
written here with the `hmac` module and fresh DH for every step."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.wireguard import Device, crypto, public_key
from agents.wireguard.messages import parse_initiation, parse_response
from agents.wireguard.noise import (
    CONSTRUCTION,
    IDENTIFIER,
    LABEL_COOKIE,
    LABEL_MAC1,
    PeerKeys,
    StaticIdentity,
    consume_initiation,
    consume_response,
    create_initiation,
    create_response,
)

from .pair import B_ENDPOINT, Pair, ipv4_packet, private_key

keys32 = st.binary(min_size=32, max_size=32)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.blake2s).digest()


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=130), data=st.binary(max_size=200))
def test_hmac_matches_the_hmac_module_for_any_key_and_data(key: bytes, data: bytes) -> None:
    assert crypto.hmac_(key, data) == _hmac(key, data)


@settings(max_examples=100, deadline=None)
@given(key=keys32, data=st.binary(max_size=100))
def test_kdfs_match_the_definition_on_the_hmac_module(key: bytes, data: bytes) -> None:
    t0 = _hmac(key, data)
    t1 = _hmac(t0, b"\x01")
    t2 = _hmac(t0, t1 + b"\x02")
    t3 = _hmac(t0, t2 + b"\x03")
    assert crypto.kdf1(key, data) == t1
    assert crypto.kdf2(key, data) == (t1, t2)
    assert crypto.kdf3(key, data) == (t1, t2, t3)
    assert crypto.HmacKey(key).kdf1(data) == t1
    assert crypto.HmacKey(key).kdf1(data + b"x") != t1


@pytest.mark.parametrize("length", [0, 16, 31, 33, 64, 65, 200])
def test_hmac_key_handles_keys_of_any_length(length: int) -> None:
    key = bytes(range(length)) if length <= 256 else bytes(length)
    assert crypto.HmacKey(key).kdf1(b"data") == _hmac(_hmac(key, b"data"), b"\x01")


IMPLEMENTATIONS = sorted(crypto.X25519_IMPLEMENTATIONS)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_peer_keys_precompute_the_static_dh_and_the_mac_and_cookie_keys(name: str) -> None:
    x25519 = crypto.X25519_IMPLEMENTATIONS[name]
    ours, theirs = private_key(1), private_key(2)
    identity = StaticIdentity.from_private(ours, x25519)
    assert identity.x25519 is x25519
    their_public = public_key(theirs)
    keys = PeerKeys.create(identity, their_public, None)
    fresh = X25519PrivateKey.from_private_bytes(ours).exchange(
        X25519PublicKey.from_public_bytes(their_public)
    )
    assert keys.static_static == fresh
    # the same value from the other side: one precomputation serves initiator and responder
    mirror = PeerKeys.create(StaticIdentity.from_private(theirs, x25519), public_key(ours), None)
    assert mirror.static_static == keys.static_static
    # the parsed public key is the peer's
    assert x25519.dh(identity.private, keys.public_key) == fresh
    assert keys.x25519 is x25519
    assert keys.mac1_key == hashlib.blake2s(LABEL_MAC1 + their_public).digest()
    assert keys.cookie_key == hashlib.blake2s(LABEL_COOKIE + their_public).digest()
    c0 = hashlib.blake2s(CONSTRUCTION).digest()
    h0 = hashlib.blake2s(c0 + IDENTIFIER).digest()
    assert keys.initial_hash == hashlib.blake2s(h0 + their_public).digest()
    assert identity.initial_hash == hashlib.blake2s(h0 + identity.public).digest()
    assert keys.preshared == bytes(32)
    other = PeerKeys.create(identity, public_key(private_key(3)), None)
    assert other.static_static != keys.static_static


def _peer_keys(device: Device, peer: bytes) -> PeerKeys:
    keys: PeerKeys = device._peers[peer].keys  # checking the precomputation
    return keys


def test_updating_a_peer_refreshes_its_precomputed_keys_and_keeps_unchanged_ones() -> None:
    device = Device(private_key(1))
    peer = public_key(private_key(2))
    device.add_peer(peer)
    first = _peer_keys(device, peer)
    device.add_peer(peer, endpoint=B_ENDPOINT)  # nothing key-related changed
    assert _peer_keys(device, peer) is first
    psk = bytes(range(32))
    device.add_peer(peer, preshared_key=psk)
    updated = _peer_keys(device, peer)
    assert updated is not first and updated.preshared == psk
    assert updated.static_static == first.static_static
    device.add_peer(peer)  # psk removed again
    assert _peer_keys(device, peer).preshared == bytes(32)
    # a removed and re-added peer gets a fresh precomputation too
    device.remove_peer(peer)
    device.add_peer(peer, preshared_key=psk)
    assert _peer_keys(device, peer) is not updated
    assert _peer_keys(device, peer).preshared == psk


def test_a_preshared_key_update_applies_to_the_next_handshake() -> None:
    psk = bytes(range(32))
    pair = Pair(psk_a=psk, psk_b=bytes(32 * [9]))
    pair.send(pair.a, ipv4_packet(b"x"))
    assert pair.a.results[-1].error == "decryption failed"
    assert pair.b.inbox == []
    pair.b.device.add_peer(pair.a.device.public_key, preshared_key=psk)
    pair.now += 6  # past REKEY_TIMEOUT: the next packet starts a new handshake
    pair.send(pair.a, ipv4_packet(b"y"))
    # the packet queued during the failed handshake goes out first
    assert pair.b.inbox == [ipv4_packet(b"x"), ipv4_packet(b"y")]


# ----------------------------------------------------------------- a by-definition handshake


def _hash(*parts: bytes) -> bytes:
    return hashlib.blake2s(b"".join(parts)).digest()


def _kdf(key: bytes, data: bytes, n: int) -> list[bytes]:
    t0 = _hmac(key, data)
    out = [_hmac(t0, b"\x01")]
    for i in range(2, n + 1):
        out.append(_hmac(t0, out[-1] + bytes([i])))
    return out


def _dh(private: bytes, public: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(private).exchange(
        X25519PublicKey.from_public_bytes(public)
    )


def _seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(bytes(12), plaintext, ad)


def _reference_handshake(
    s_i: bytes, s_r: bytes, e_i: bytes, e_r: bytes, psk: bytes, timestamp: bytes
) -> tuple[bytes, bytes, bytes, bytes]:
    """(initiation body fields, response body fields, initiator send key, initiator recv key)."""
    pub_i, pub_r = public_key(s_i), public_key(s_r)
    epub_i, epub_r = public_key(e_i), public_key(e_r)
    c = _hash(CONSTRUCTION)
    h = _hash(_hash(c, IDENTIFIER), pub_r)
    [c] = _kdf(c, epub_i, 1)
    h = _hash(h, epub_i)
    c, k = _kdf(c, _dh(e_i, pub_r), 2)
    enc_static = _seal(k, pub_i, h)
    h = _hash(h, enc_static)
    c, k = _kdf(c, _dh(s_i, pub_r), 2)
    enc_ts = _seal(k, timestamp, h)
    h = _hash(h, enc_ts)
    init = epub_i + enc_static + enc_ts
    [c] = _kdf(c, epub_r, 1)
    h = _hash(h, epub_r)
    [c] = _kdf(c, _dh(e_r, epub_i), 1)
    [c] = _kdf(c, _dh(e_r, pub_i), 1)
    c, t, k = _kdf(c, psk, 3)
    h = _hash(h, t)
    resp = epub_r + _seal(k, b"", h)
    send_i, recv_i = _kdf(c, b"", 2)
    return init, resp, send_i, recv_i


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
@settings(max_examples=15, deadline=None)
@given(
    s_i=keys32,
    s_r=keys32,
    e_i=keys32,
    e_r=keys32,
    psk=keys32,
    stamp=st.binary(min_size=12, max_size=12),
)
def test_handshake_messages_and_keys_equal_the_by_definition_handshake(
    name: str, s_i: bytes, s_r: bytes, e_i: bytes, e_r: bytes, psk: bytes, stamp: bytes
) -> None:
    init_ref, resp_ref, send_ref, recv_ref = _reference_handshake(s_i, s_r, e_i, e_r, psk, stamp)
    x25519 = crypto.X25519_IMPLEMENTATIONS[name]
    initiator = StaticIdentity.from_private(s_i, x25519)
    responder = StaticIdentity.from_private(s_r, x25519)
    peer_of_i = PeerKeys.create(initiator, responder.public, psk)
    peer_of_r = PeerKeys.create(responder, initiator.public, psk)

    body, state = create_initiation(initiator, peer_of_i, 7, e_i, stamp)
    assert body[8:] == init_ref
    msg = parse_initiation(body + bytes(32))
    assert msg is not None
    consumed = consume_initiation(responder, msg, {initiator.public: peer_of_r}.get)
    assert consumed.peer_public == initiator.public and consumed.timestamp == stamp

    body, keys_r = create_response(peer_of_r, consumed, 9, e_r)
    assert body[12:] == resp_ref
    response = parse_response(body + bytes(32))
    assert response is not None
    keys_i = consume_response(initiator, peer_of_i, state, response)
    assert (keys_i.send, keys_i.receive) == (send_ref, recv_ref)
    assert (keys_r.send, keys_r.receive) == (recv_ref, send_ref)
    assert send_ref != recv_ref


def test_a_tampered_response_is_refused() -> None:
    initiator = StaticIdentity.from_private(private_key(1))
    responder = StaticIdentity.from_private(private_key(2))
    peer_of_i = PeerKeys.create(initiator, responder.public, None)
    peer_of_r = PeerKeys.create(responder, initiator.public, None)
    body, state = create_initiation(initiator, peer_of_i, 1, private_key(3), bytes(12))
    msg = parse_initiation(body + bytes(32))
    assert msg is not None
    consumed = consume_initiation(responder, msg, {initiator.public: peer_of_r}.get)
    body, _ = create_response(peer_of_r, consumed, 2, private_key(4))
    tampered = bytearray(body + bytes(32))
    tampered[50] ^= 1  # inside encrypted_nothing
    response = parse_response(bytes(tampered))
    assert response is not None
    with pytest.raises(crypto.CryptoError):
        consume_response(initiator, peer_of_i, state, response)
    good = parse_response(body + bytes(32))
    assert good is not None
    consume_response(initiator, peer_of_i, state, good)
