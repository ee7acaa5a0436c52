"""Slow, obvious reference implementations to check the fast ones against."""

from __future__ import annotations

import struct


def naive_checksum(data: bytes) -> int:
    """RFC 1071 word by word with an end-around carry per step."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
