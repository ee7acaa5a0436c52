"""Transport keypairs: one send and one receive ChaCha20Poly1305 key, counters, replay window.

The replay window is a sliding bitmap over the last REPLAY_WINDOW counters held in one Python
integer: bit i set means counter `top - i` was accepted. In-order traffic (the common case) costs a
shift, an or and a mask in C. Counters older than the window, and counters already seen, are
rejected; the check runs only after the packet authenticated, so forged counters cannot move the
window.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from .constants import REJECT_AFTER_MESSAGES, REPLAY_WINDOW

_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1


class Keypair:
    """Keys of one session. `peer` is the device's peer object (typed loosely to avoid a cycle)."""

    __slots__ = (
        "created",
        "is_initiator",
        "local_index",
        "peer",
        "recv",
        "remote_index",
        "send",
        "send_counter",
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
        self.send_counter = 0
        # No counter seen yet: top = -1 with an empty bitmap accepts counter 0.
        self.window_top = -1
        self.window_bits = 0

    def replay_ok(self, counter: int) -> bool:
        """Cheap pre-check before decrypting (no state change)."""
        if counter >= REJECT_AFTER_MESSAGES:
            return False
        top = self.window_top
        if counter > top:
            return True
        back = top - counter
        return back < REPLAY_WINDOW and not (self.window_bits >> back) & 1

    def replay_accept(self, counter: int) -> bool:
        """Record an authenticated counter; False if it is a replay or too old."""
        top = self.window_top
        if counter > top:
            shift = counter - top
            if shift >= REPLAY_WINDOW:
                self.window_bits = 1
            else:
                self.window_bits = ((self.window_bits << shift) | 1) & _WINDOW_MASK
            self.window_top = counter
            return True
        back = top - counter
        if back >= REPLAY_WINDOW:
            return False
        bit = 1 << back
        bits = self.window_bits
        if bits & bit:
            return False
        self.window_bits = bits | bit
        return True
