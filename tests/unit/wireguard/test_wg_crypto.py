"""Known-answer checks of the primitives against independent definitions and published vectors."""

from __future__ import annotations

import hashlib

import pytest

from agents.wireguard import crypto
from agents.wireguard.noise import CONSTRUCTION, IDENTIFIER, INITIAL_CHAIN_KEY, tai64n


def test_hchacha20_matches_the_xchacha_draft_vector() -> None:
    # draft-irtf-cfrg-xchacha-03 section 2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    expected = "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    assert crypto.hchacha20(key, nonce).hex() == expected
    assert crypto.hchacha20(key, bytes(16)).hex() != expected


def test_xchacha20poly1305_matches_the_xchacha_draft_vector() -> None:
    # draft-irtf-cfrg-xchacha-03 appendix A.3.1
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
        b"the future, sunscreen would be it."
    )
    aad = bytes.fromhex("50515253c0c1c2c3c4c5c6c7")
    key = bytes(range(0x80, 0xA0))
    nonce = bytes.fromhex("404142434445464748494a4b4c4d4e4f5051525354555657")
    ciphertext = bytes.fromhex(
        "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb"
        "731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452"
        "2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9"
        "21f9664c97637da9768812f615c68b13b52e"
    )
    tag = bytes.fromhex("c0875924c1c7987947deafd8780acf49")
    assert crypto.xaead_encrypt(key, nonce, plaintext, aad) == ciphertext + tag
    assert crypto.xaead_decrypt(key, nonce, ciphertext + tag, aad) == plaintext
    with pytest.raises(crypto.CryptoError):
        crypto.xaead_decrypt(key, nonce, ciphertext + tag, aad + b"x")


def _hmac_blake2s_by_definition(key: bytes, data: bytes) -> bytes:
    # RFC 2104 with BLAKE2s (block size 64)
    block = key.ljust(64, b"\x00")
    inner = hashlib.blake2s(bytes(b ^ 0x36 for b in block) + data).digest()
    return hashlib.blake2s(bytes(b ^ 0x5C for b in block) + inner).digest()


@pytest.mark.parametrize("data", [b"", b"\x01", bytes(range(200))])
def test_hmac_blake2s_matches_the_rfc2104_definition(data: bytes) -> None:
    key = bytes(range(32))
    assert crypto.hmac_(key, data) == _hmac_blake2s_by_definition(key, data)


def test_kdf_follows_the_whitepaper_definition() -> None:
    key, data = b"k" * 32, b"input"
    t0 = _hmac_blake2s_by_definition(key, data)
    t1 = _hmac_blake2s_by_definition(t0, b"\x01")
    t2 = _hmac_blake2s_by_definition(t0, t1 + b"\x02")
    t3 = _hmac_blake2s_by_definition(t0, t2 + b"\x03")
    assert crypto.kdf1(key, data) == t1
    assert crypto.kdf2(key, data) == (t1, t2)
    assert crypto.kdf3(key, data) == (t1, t2, t3)


def test_mac_is_keyed_blake2s_with_16_bytes() -> None:
    assert (
        crypto.mac(b"k" * 32, b"m") == hashlib.blake2s(b"m", digest_size=16, key=b"k" * 32).digest()
    )
    assert len(crypto.mac(bytes(16), b"")) == 16


def test_the_initial_chaining_key_is_the_hash_of_the_construction() -> None:
    assert CONSTRUCTION == b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
    assert IDENTIFIER == b"WireGuard v1 zx2c4 Jason@zx2c4.com"
    assert hashlib.blake2s(CONSTRUCTION).digest() == INITIAL_CHAIN_KEY


def test_aead_uses_a_little_endian_counter_nonce() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key = bytes(range(32))
    nonce = bytes(4) + (0x0102030405).to_bytes(8, "little")
    expected = ChaCha20Poly1305(key).encrypt(nonce, b"payload", b"ad")
    assert crypto.aead_encrypt(key, 0x0102030405, b"payload", b"ad") == expected
    with pytest.raises(crypto.CryptoError):
        crypto.aead_decrypt(key, 0x0102030406, expected, b"ad")


def test_tai64n_labels_unix_time_and_grows() -> None:
    stamp = tai64n(1_700_000_000.5)
    assert int.from_bytes(stamp[:8], "big") == (1 << 62) + 10 + 1_700_000_000
    nanos = int.from_bytes(stamp[8:], "big")
    assert 500_000_000 - (1 << 24) < nanos <= 500_000_000
    assert tai64n(1_700_000_001.0) > stamp


_P = 2**255 - 19
# u-coordinates of the points of order 1, 2, 4 and 8 (and non-canonical encodings of them), as in
# libsodium's list; each is also tried with the ignored top bit set.
_LOW_ORDER = [
    0,
    1,
    0x00B8495F16056286FDB1329CEB8D09DA6AC49FF1FAE35616AEB8413B7C7AEBE0,
    0x57119FD0DD4E22D8868E1C58C45C44045BEF839C55B1D0B1248C50A3BC959C5F,
    _P - 1,
    _P,
    _P + 1,
]


@pytest.mark.parametrize("name", sorted(crypto.X25519_IMPLEMENTATIONS))
@pytest.mark.parametrize("u", _LOW_ORDER)
@pytest.mark.parametrize("top_bit", [False, True])
def test_dh_refuses_low_order_points(name: str, u: int, top_bit: bool) -> None:
    x25519 = crypto.X25519_IMPLEMENTATIONS[name]
    private, _ = x25519.load_private(bytes(range(1, 33)))
    point = (u | (1 << 255) if top_bit else u).to_bytes(32, "little")
    with pytest.raises(crypto.CryptoError):
        x25519.dh(private, x25519.load_public(point))
    # the same private key works with an ordinary point
    _, ordinary = x25519.load_private(bytes(range(2, 34)))
    assert len(x25519.dh(private, x25519.load_public(ordinary))) == 32
