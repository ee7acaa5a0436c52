"""WireGuard wire messages (whitepaper section 5.4): fixed layouts, little-endian integers.

Every message starts with a 32-bit little-endian word whose low byte is the type and whose three
high bytes are reserved zeros, so a single integer compare checks both. Parsers return None for
anything that is not exactly a well-formed message of their type; they never raise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

MESSAGE_INITIATION = 1
MESSAGE_RESPONSE = 2
MESSAGE_COOKIE_REPLY = 3
MESSAGE_DATA = 4

INITIATION_SIZE = 148
RESPONSE_SIZE = 92
COOKIE_REPLY_SIZE = 64
DATA_HEADER_SIZE = 16
DATA_MIN_SIZE = DATA_HEADER_SIZE + 16  # header + Poly1305 tag (a keepalive)

# Offsets of mac1 in the two handshake messages; mac2 follows mac1.
INITIATION_MAC1_OFFSET = INITIATION_SIZE - 32
RESPONSE_MAC1_OFFSET = RESPONSE_SIZE - 32

_INITIATION = struct.Struct("<II32s48s28s16s16s")
_RESPONSE = struct.Struct("<III32s16s16s16s")
_COOKIE_REPLY = struct.Struct("<II24s32s")
DATA_HEADER = struct.Struct("<IIQ")


# The two handshake messages are NamedTuples: immutable like a frozen dataclass, but built in a
# third of the time (a frozen dataclass sets each field through object.__setattr__).
class Initiation(NamedTuple):
    sender: int
    ephemeral: bytes  # 32
    encrypted_static: bytes  # 32 + 16
    encrypted_timestamp: bytes  # 12 + 16
    mac1: bytes
    mac2: bytes


class Response(NamedTuple):
    sender: int
    receiver: int
    ephemeral: bytes  # 32
    encrypted_nothing: bytes  # 0 + 16
    mac1: bytes
    mac2: bytes


@dataclass(frozen=True, slots=True)
class CookieReply:
    receiver: int
    nonce: bytes  # 24
    encrypted_cookie: bytes  # 16 + 16


@dataclass(frozen=True, slots=True)
class DataHeader:
    receiver: int
    counter: int


def message_type(data: bytes) -> int | None:
    """The message type if the first word is a known type with zero reserved bytes."""
    if len(data) < 4:
        return None
    word: int = int.from_bytes(data[:4], "little")
    if 1 <= word <= 4:
        return word
    return None


def pack_initiation_body(
    sender: int, ephemeral: bytes, encrypted_static: bytes, encrypted_timestamp: bytes
) -> bytes:
    """The initiation up to (excluding) mac1, which is computed over exactly these bytes."""
    return _INITIATION.pack(
        MESSAGE_INITIATION, sender, ephemeral, encrypted_static, encrypted_timestamp, b"", b""
    )[:INITIATION_MAC1_OFFSET]


def pack_response_body(
    sender: int, receiver: int, ephemeral: bytes, encrypted_nothing: bytes
) -> bytes:
    return _RESPONSE.pack(
        MESSAGE_RESPONSE, sender, receiver, ephemeral, encrypted_nothing, b"", b""
    )[:RESPONSE_MAC1_OFFSET]


def pack_initiation(msg: Initiation) -> bytes:
    return _INITIATION.pack(
        MESSAGE_INITIATION,
        msg.sender,
        msg.ephemeral,
        msg.encrypted_static,
        msg.encrypted_timestamp,
        msg.mac1,
        msg.mac2,
    )


def pack_response(msg: Response) -> bytes:
    return _RESPONSE.pack(
        MESSAGE_RESPONSE,
        msg.sender,
        msg.receiver,
        msg.ephemeral,
        msg.encrypted_nothing,
        msg.mac1,
        msg.mac2,
    )


def pack_cookie_reply(msg: CookieReply) -> bytes:
    return _COOKIE_REPLY.pack(MESSAGE_COOKIE_REPLY, msg.receiver, msg.nonce, msg.encrypted_cookie)


def pack_data_header(receiver: int, counter: int) -> bytes:
    return DATA_HEADER.pack(MESSAGE_DATA, receiver, counter)


def parse_initiation(data: bytes) -> Initiation | None:
    if len(data) != INITIATION_SIZE:
        return None
    kind, sender, eph, static, ts, mac1, mac2 = _INITIATION.unpack(data)
    if kind != MESSAGE_INITIATION:
        return None
    return Initiation(sender, eph, static, ts, mac1, mac2)


def parse_response(data: bytes) -> Response | None:
    if len(data) != RESPONSE_SIZE:
        return None
    kind, sender, receiver, eph, nothing, mac1, mac2 = _RESPONSE.unpack(data)
    if kind != MESSAGE_RESPONSE:
        return None
    return Response(sender, receiver, eph, nothing, mac1, mac2)


def parse_cookie_reply(data: bytes) -> CookieReply | None:
    if len(data) != COOKIE_REPLY_SIZE:
        return None
    kind, receiver, nonce, cookie = _COOKIE_REPLY.unpack(data)
    if kind != MESSAGE_COOKIE_REPLY:
        return None
    return CookieReply(receiver, nonce, cookie)


def parse_data_header(data: bytes) -> DataHeader | None:
    if len(data) < DATA_MIN_SIZE:
        return None
    kind, receiver, counter = DATA_HEADER.unpack_from(data)
    if kind != MESSAGE_DATA:
        return None
    return DataHeader(receiver, counter)
