"""Protocol constants and timers (whitepaper section 6.1, wireguard-go for the unspecified ones)."""

from __future__ import annotations

REKEY_AFTER_MESSAGES = 1 << 60
REJECT_AFTER_MESSAGES = (1 << 64) - (1 << 13) - 1
REKEY_AFTER_TIME = 120.0
REJECT_AFTER_TIME = 180.0
REKEY_ATTEMPT_TIME = 90.0
REKEY_TIMEOUT = 5.0
REKEY_TIMEOUT_JITTER_MAX = 1.0 / 3.0
KEEPALIVE_TIMEOUT = 10.0
# The initiator refreshes its session on receive before the responder would start dropping it.
REKEY_ON_RECEIVE_AGE = REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
ZERO_KEYS_AFTER = 3 * REJECT_AFTER_TIME
COOKIE_SECRET_LIFETIME = 120.0
COOKIE_LIFETIME = 120.0
# A peer may consume at most one initiation per this interval (wireguard-go: 50 per second).
INITIATION_MIN_INTERVAL = 1.0 / 50
# Handshake messages per second above which the device asks for cookies (default heuristic),
# and how long it keeps doing so after the rate drops (wireguard-go: UnderLoadAfterTime).
UNDER_LOAD_HANDSHAKES_PER_SECOND = 64
UNDER_LOAD_AFTER_TIME = 1.0

REPLAY_WINDOW = 2048
QUEUE_SIZE = 128
