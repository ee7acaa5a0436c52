"""Sans-IO WireGuard (wire-compatible with wireguard-go and the kernel module).

`Device` is the entry point; see agents/wireguard/device.py for the theory of operation.
"""

from __future__ import annotations

import os

from .crypto import private_to_public
from .device import ERRORS, Decapsulated, Device, Transmit


def generate_private_key() -> bytes:
    """A fresh X25519 private key (clamped like `wg genkey`)."""
    key = bytearray(os.urandom(32))
    key[0] &= 248
    key[31] = (key[31] & 127) | 64
    return bytes(key)


def public_key(private_key: bytes) -> bytes:
    return private_to_public(private_key)


__all__ = [
    "ERRORS",
    "Decapsulated",
    "Device",
    "Transmit",
    "generate_private_key",
    "public_key",
]
