"""Cryptographic primitives of the WireGuard protocol (whitepaper section 5.4).

HASH/MAC/HMAC/KDF are BLAKE2s based, DH is X25519, AEAD is ChaCha20Poly1305 with a 64-bit
little-endian counter nonce, and XAEAD (cookie replies only) is XChaCha20Poly1305. BLAKE2s
comes from hashlib (HMAC is assembled here on it, see below); X25519 from libsodium (PyNaCl) if
installed, else from the `cryptography` package (see `X25519`), which also provides the AEADs
except HChaCha20, implemented here in pure Python: it only runs for cookie replies, which are
rare by design.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_LEN = 32
TAG_LEN = 16

__all__ = [
    "KEY_LEN",
    "TAG_LEN",
    "X25519",
    "X25519_IMPLEMENTATIONS",
    "ZERO_NONCE",
    "CryptoError",
    "HmacKey",
    "OpenSSLX25519",
    "SodiumX25519",
    "aead_decrypt",
    "aead_encrypt",
    "dh",
    "hash_",
    "hchacha20",
    "hmac_",
    "kdf1",
    "kdf2",
    "kdf3",
    "load_public",
    "mac",
    "private_to_public",
    "x25519",
    "xaead_decrypt",
    "xaead_encrypt",
]


class CryptoError(Exception):
    """Authentication or key agreement failed (bad tag, low-order point, ...)."""


_blake2s = hashlib.blake2s


def hash_(*parts: bytes) -> bytes:
    h = _blake2s()
    for p in parts:
        h.update(p)
    return h.digest()


def mac(key: bytes, data: bytes) -> bytes:
    """Keyed BLAKE2s with a 16-byte digest (the `MAC` of the whitepaper)."""
    return _blake2s(data, digest_size=16, key=key).digest()


# HMAC-BLAKE2s (RFC 2104, 64-byte block) straight on hashlib.blake2s: the `hmac` module goes
# through OpenSSL's HMAC, which costs twice as much per call, and a handshake side computes
# twenty-odd HMACs. Every HMAC key in the protocol is a 32-byte chaining key or KDF output, so
# the padded key is the key XOR the pad byte (one `translate`) plus 32 constant pad bytes.
_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))
_IPAD_FILL = b"\x36" * 32
_OPAD_FILL = b"\x5c" * 32


def _pads(key: bytes) -> tuple[bytes, bytes]:
    """The inner and outer padded key blocks of HMAC-BLAKE2s."""
    if len(key) != 32:
        if len(key) > _BLOCK:
            key = _blake2s(key).digest()
        key = key.ljust(_BLOCK, b"\x00")
        return key.translate(_IPAD), key.translate(_OPAD)
    return key.translate(_IPAD) + _IPAD_FILL, key.translate(_OPAD) + _OPAD_FILL


def hmac_(key: bytes, data: bytes) -> bytes:
    if len(key) == 32:
        return _blake2s(
            key.translate(_OPAD)
            + _OPAD_FILL
            + _blake2s(key.translate(_IPAD) + _IPAD_FILL + data).digest()
        ).digest()
    inner, outer = _pads(key)
    return _blake2s(outer + _blake2s(inner + data).digest()).digest()


def kdf1(key: bytes, data: bytes) -> bytes:
    t0 = hmac_(key, data)
    return _blake2s(
        t0.translate(_OPAD)
        + _OPAD_FILL
        + _blake2s(t0.translate(_IPAD) + _IPAD_FILL + b"\x01").digest()
    ).digest()


def kdf2(key: bytes, data: bytes) -> tuple[bytes, bytes]:
    t0 = hmac_(key, data)
    inner = t0.translate(_IPAD) + _IPAD_FILL
    outer = t0.translate(_OPAD) + _OPAD_FILL
    t1 = _blake2s(outer + _blake2s(inner + b"\x01").digest()).digest()
    t2 = _blake2s(outer + _blake2s(inner + t1 + b"\x02").digest()).digest()
    return t1, t2


def kdf3(key: bytes, data: bytes) -> tuple[bytes, bytes, bytes]:
    t0 = hmac_(key, data)
    inner = t0.translate(_IPAD) + _IPAD_FILL
    outer = t0.translate(_OPAD) + _OPAD_FILL
    t1 = _blake2s(outer + _blake2s(inner + b"\x01").digest()).digest()
    t2 = _blake2s(outer + _blake2s(inner + t1 + b"\x02").digest()).digest()
    t3 = _blake2s(outer + _blake2s(inner + t2 + b"\x03").digest()).digest()
    return t1, t2, t3


class HmacKey:
    """A fixed HMAC-BLAKE2s key with its padded blocks computed once (e.g. the constant initial
    chaining key, which starts every handshake's first KDF)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        self._inner, self._outer = _pads(key)

    def kdf1(self, data: bytes) -> bytes:
        t0 = _blake2s(self._outer + _blake2s(self._inner + data).digest()).digest()
        return _blake2s(
            t0.translate(_OPAD)
            + _OPAD_FILL
            + _blake2s(t0.translate(_IPAD) + _IPAD_FILL + b"\x01").digest()
        ).digest()


class X25519:
    """One X25519 implementation, behind handles so each key is prepared once.

    `load_private` returns (handle, public key): loading derives the public key, the single
    scalar multiplication a key generation needs. `load_public` parses a public key for use in
    several exchanges. `dh` raises CryptoError when the result is all zeros (a low-order point),
    as the protocol requires. Both implementations clamp scalars and mask the top bit of
    public keys (RFC 7748), so they compute the same function; tests hold them to that.
    """

    name = "abstract"

    def load_private(self, raw: bytes) -> tuple[Any, bytes]:
        raise NotImplementedError

    def load_public(self, raw: bytes) -> Any:
        raise NotImplementedError

    def dh(self, private: Any, public: Any) -> bytes:
        raise NotImplementedError


class OpenSSLX25519(X25519):
    """X25519 of the `cryptography` package (OpenSSL): a variable-base ladder for everything,
    including the public key of a new private key."""

    name = "openssl"

    def load_private(self, raw: bytes) -> tuple[X25519PrivateKey, bytes]:
        key = X25519PrivateKey.from_private_bytes(raw)  # ValueError unless 32 bytes
        return key, key.public_key().public_bytes_raw()

    def load_public(self, raw: bytes) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(raw)  # ValueError unless 32 bytes

    def dh(self, private: X25519PrivateKey, public: X25519PublicKey) -> bytes:
        try:
            return private.exchange(public)
        except ValueError as exc:
            raise CryptoError("invalid public key") from exc


class SodiumX25519(X25519):
    """X25519 of libsodium (PyNaCl), on raw bytes. Its public-key derivation is a fixed-base
    multiplication with precomputed tables: about half the cost of OpenSSL's, which uses the
    ladder for it; the exchange itself costs the same. Ephemeral keys make that matter: every
    handshake side generates one."""

    name = "libsodium"

    def __init__(self) -> None:
        from nacl import bindings, exceptions

        self._base = bindings.crypto_scalarmult_base
        self._mult = bindings.crypto_scalarmult
        self._error = exceptions.RuntimeError

    def load_private(self, raw: bytes) -> tuple[bytes, bytes]:
        # The C functions read 32 bytes whatever they are given: check here.
        if len(raw) != 32:
            raise ValueError("an X25519 private key is 32 bytes")
        raw = bytes(raw)
        return raw, self._base(raw)

    def load_public(self, raw: bytes) -> bytes:
        if len(raw) != 32:
            raise ValueError("an X25519 public key is 32 bytes")
        return bytes(raw)

    def dh(self, private: bytes, public: bytes) -> bytes:
        try:
            result: bytes = self._mult(private, public)
        except self._error as exc:  # libsodium refuses low-order points and zero results
            raise CryptoError("invalid public key") from exc
        return result


def _available_x25519() -> dict[str, X25519]:
    found: dict[str, X25519] = {"openssl": OpenSSLX25519()}
    with contextlib.suppress(ImportError):
        found["libsodium"] = SodiumX25519()
    return found


# Every implementation importable here, and the one new keys use: libsodium when PyNaCl is
# installed (faster key generation), otherwise OpenSSL. Keys remember nothing of which
# implementation made them, so a StaticIdentity/PeerKeys keeps its own reference to it.
X25519_IMPLEMENTATIONS = _available_x25519()
x25519: X25519 = X25519_IMPLEMENTATIONS.get("libsodium") or X25519_IMPLEMENTATIONS["openssl"]


def private_to_public(private_key: bytes) -> bytes:
    return x25519.load_private(private_key)[1]


def load_public(public_key: bytes) -> Any:
    """Parse a 32-byte X25519 public key once, for several exchanges (ValueError if not 32)."""
    return x25519.load_public(public_key)


def dh(private_key: Any, public_key: Any) -> bytes:
    """X25519 on handles of the current implementation (`x25519`); CryptoError for a low-order
    point."""
    return x25519.dh(private_key, public_key)


_NONCE = struct.Struct("<4xQ")
ZERO_NONCE = bytes(12)


def aead_encrypt(key: bytes, counter: int, plaintext: bytes, ad: bytes) -> bytes:
    return ChaCha20Poly1305(key).encrypt(_NONCE.pack(counter), plaintext, ad)


def aead_decrypt(key: bytes, counter: int, ciphertext: bytes, ad: bytes) -> bytes:
    try:
        return ChaCha20Poly1305(key).decrypt(_NONCE.pack(counter), ciphertext, ad)
    except InvalidTag as exc:
        raise CryptoError("decryption failed") from exc


_M32 = 0xFFFFFFFF
_SIGMA = struct.unpack("<4I", b"expand 32-byte k")


def _rotl(v: int, c: int) -> int:
    return ((v << c) & _M32) | (v >> (32 - c))


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 (draft-irtf-cfrg-xchacha section 2.2): 20 ChaCha rounds, no feed-forward."""
    if len(key) != 32 or len(nonce16) != 16:
        raise ValueError("hchacha20 needs a 32-byte key and a 16-byte nonce")
    s = [*_SIGMA, *struct.unpack("<8I", key), *struct.unpack("<4I", nonce16)]

    def qr(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & _M32
        s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & _M32
        s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & _M32
        s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & _M32
        s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12)
        qr(1, 5, 9, 13)
        qr(2, 6, 10, 14)
        qr(3, 7, 11, 15)
        qr(0, 5, 10, 15)
        qr(1, 6, 11, 12)
        qr(2, 7, 8, 13)
        qr(3, 4, 9, 14)
    return struct.pack("<8I", *s[0:4], *s[12:16])


def xaead_encrypt(key: bytes, nonce24: bytes, plaintext: bytes, ad: bytes) -> bytes:
    subkey = hchacha20(key, nonce24[:16])
    return ChaCha20Poly1305(subkey).encrypt(b"\x00" * 4 + nonce24[16:24], plaintext, ad)


def xaead_decrypt(key: bytes, nonce24: bytes, ciphertext: bytes, ad: bytes) -> bytes:
    subkey = hchacha20(key, nonce24[:16])
    try:
        return ChaCha20Poly1305(subkey).decrypt(b"\x00" * 4 + nonce24[16:24], ciphertext, ad)
    except InvalidTag as exc:
        raise CryptoError("decryption failed") from exc
