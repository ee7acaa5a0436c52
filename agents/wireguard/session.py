"""Transport keypairs: one send and one receive ChaCha20Poly1305 key, counters, replay window.

The replay window is a sliding bitmap over the last REPLAY_WINDOW counters held in one Python
integer (`window_bits`): bit i set means counter `window_top - i` was accepted. In-order traffic
(the common case) costs a shift and an or in C. Counters older than the window, and counters
already seen, are rejected; the window only moves after the packet authenticated, so forged
counters cannot move it. The device inlines the window logic in its receive path.
"""

from __future__ import annotations

import itertools
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .constants import (
    REJECT_AFTER_TIME,
    REKEY_AFTER_TIME,
    REKEY_ON_RECEIVE_AGE,
)


class Keypair:
    """Keys of one session. `peer` is the device's peer object (typed loosely to avoid a cycle)."""

    __slots__ = (
        "created",
        "exhausted",
        "expires_at",
        "is_initiator",
        "local_index",
        "next_counter",
        "peer",
        "recv",
        "recv_rekey_at",
        "remote_index",
        "send",
        "send_rekey_at",
        "window_bits",
        "window_top",
    )

    def __init__(
        self,
        peer: Any,
        send_key: bytes,
        recv_key: bytes,
        local_index: int,
        remote_index: int,
        is_initiator: bool,
        created: float,
    ) -> None:
        self.peer = peer
        self.send = ChaCha20Poly1305(send_key)
        self.recv = ChaCha20Poly1305(recv_key)
        self.local_index = local_index
        self.remote_index = remote_index
        self.is_initiator = is_initiator
        self.created = created
        # Precomputed deadlines keep the per-packet checks to one compare each. Only the
        # initiator rekeys on time; the responder's send deadline is the expiry itself.
        self.expires_at = created + REJECT_AFTER_TIME
        self.send_rekey_at = created + (REKEY_AFTER_TIME if is_initiator else REJECT_AFTER_TIME)
        self.recv_rekey_at = created + REKEY_ON_RECEIVE_AGE if is_initiator else float("inf")
        # itertools.count's __next__ is atomic under the GIL: a sending thread and a receiving
        # thread that flushes queued packets can never reuse a nonce.
        self.next_counter = itertools.count().__next__
        self.exhausted = False  # REJECT_AFTER_MESSAGES reached
        # No counter seen yet: top = -1 with an empty bitmap accepts counter 0.
        self.window_top = -1
        self.window_bits = 0
