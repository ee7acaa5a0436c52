"""The X25519 implementations compute the same function (RFC 7748) and interoperate."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.wireguard import Device, crypto

from .pair import A_ENDPOINT, B_ENDPOINT, START, ipv4_packet, private_key, seeded_rng

IMPLEMENTATIONS = sorted(crypto.X25519_IMPLEMENTATIONS)
keys32 = st.binary(min_size=32, max_size=32)

# RFC 7748 section 5.2, first test vector (unclamped scalar, u with the top bit clear).
RFC_SCALAR = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
RFC_U = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
RFC_OUT = bytes.fromhex("c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552")
# RFC 7748 section 6.1: Alice's key pair.
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_it_matches_the_rfc7748_vectors(name: str) -> None:
    x25519 = crypto.X25519_IMPLEMENTATIONS[name]
    private, _ = x25519.load_private(RFC_SCALAR)
    assert x25519.dh(private, x25519.load_public(RFC_U)) == RFC_OUT
    assert x25519.load_private(ALICE_PRIVATE)[1] == ALICE_PUBLIC
    assert x25519.load_private(RFC_SCALAR)[1] != ALICE_PUBLIC


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_it_refuses_keys_that_are_not_32_bytes(name: str) -> None:
    x25519 = crypto.X25519_IMPLEMENTATIONS[name]
    for size in (0, 31, 33):
        with pytest.raises(ValueError):
            x25519.load_private(bytes(size))
        with pytest.raises(ValueError):
            x25519.load_public(bytes(size))


@settings(max_examples=60, deadline=None)
@given(scalar=keys32, other=keys32, raw_point=keys32)
def test_every_implementation_computes_what_cryptography_computes(
    scalar: bytes, other: bytes, raw_point: bytes
) -> None:
    reference = X25519PrivateKey.from_private_bytes(scalar)
    public = reference.public_key().public_bytes_raw()
    peer_public = X25519PrivateKey.from_private_bytes(other).public_key().public_bytes_raw()
    expected_shared = reference.exchange(X25519PublicKey.from_public_bytes(peer_public))
    try:  # an arbitrary 32-byte string: top bit, non-canonical and twist points included
        expected_raw: bytes | None = reference.exchange(
            X25519PublicKey.from_public_bytes(raw_point)
        )
    except ValueError:
        expected_raw = None
    for name in IMPLEMENTATIONS:
        x25519 = crypto.X25519_IMPLEMENTATIONS[name]
        private, derived = x25519.load_private(scalar)
        assert derived == public, name
        assert x25519.dh(private, x25519.load_public(peer_public)) == expected_shared, name
        if expected_raw is None:
            with pytest.raises(crypto.CryptoError):
                x25519.dh(private, x25519.load_public(raw_point))
        else:
            assert x25519.dh(private, x25519.load_public(raw_point)) == expected_raw, name


@pytest.mark.parametrize("initiator", IMPLEMENTATIONS)
@pytest.mark.parametrize("responder", IMPLEMENTATIONS)
def test_devices_on_any_implementations_complete_a_handshake(
    monkeypatch: pytest.MonkeyPatch, initiator: str, responder: str
) -> None:
    psk = bytes(32 * [3])
    monkeypatch.setattr(crypto, "x25519", crypto.X25519_IMPLEMENTATIONS[initiator])
    a = Device(private_key(1), rng=seeded_rng(1))
    monkeypatch.setattr(crypto, "x25519", crypto.X25519_IMPLEMENTATIONS[responder])
    b = Device(private_key(2), rng=seeded_rng(2))
    assert a._identity.x25519.name == initiator
    assert b._identity.x25519.name == responder
    a.add_peer(b.public_key, preshared_key=psk, endpoint=B_ENDPOINT)
    b.add_peer(a.public_key, preshared_key=psk)

    [init] = a.encapsulate(b.public_key, ipv4_packet(b"over"), START)
    answered = b.decapsulate(init.data, A_ENDPOINT, START)
    assert answered.error is None
    [response] = answered.transmits
    completed = a.decapsulate(response.data, B_ENDPOINT, START)
    assert completed.error is None and completed.peer == b.public_key
    [data] = completed.transmits
    assert b.decapsulate(data.data, A_ENDPOINT, START).packet == ipv4_packet(b"over")
    [back] = b.encapsulate(a.public_key, ipv4_packet(b"back"), START)
    assert a.decapsulate(back.data, B_ENDPOINT, START).packet == ipv4_packet(b"back")
    # the response is good for one handshake only
    assert a.decapsulate(response.data, B_ENDPOINT, START).error == "unknown receiver index"
