"""Brute-force limits on password and one-time-code attempts, kept in Django's cache.

Two independent keys are counted: the account+email being tried and the source IP. A key that
reaches its limit of failures within the window is locked for the lockout period: every attempt
on it is refused, even with the right secret, and the person is told so. Emails are hashed into
the key, so the cache holds no address in clear.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

log = logging.getLogger(__name__)

LOCKOUT_MESSAGE = (
    "Too many failed sign-in attempts. Sign-in is locked for {minutes} minutes; try again later."
)


@dataclass(frozen=True, slots=True)
class Attempt:
    """Who is trying: the account (id or slug as typed), the email and the source address."""

    account: str
    email: str
    ip: str

    def counters(self) -> list[tuple[str, int]]:
        """(cache key, failure limit) pairs; no email key when no email is known."""
        counters = [(f"signin:ip:{self.ip}", settings.FZ_SIGNIN_MAX_FAILURES_PER_IP)]
        if self.email:
            digest = hashlib.sha256(f"{self.account}\0{self.email.lower()}".encode()).hexdigest()
            counters.insert(0, (f"signin:email:{digest}", settings.FZ_SIGNIN_MAX_FAILURES))
        return counters


def lockout_message() -> str:
    return LOCKOUT_MESSAGE.format(minutes=max(1, settings.FZ_SIGNIN_LOCKOUT_S // 60))


def is_locked(attempt: Attempt) -> bool:
    return any(cache.get(f"{key}:locked") for key, _ in attempt.counters())


def record_failure(attempt: Attempt) -> bool:
    """Count a failed attempt; True when this failure locked a key."""
    locked = False
    for key, limit in attempt.counters():
        cache.add(f"{key}:failures", 0, timeout=settings.FZ_SIGNIN_WINDOW_S)
        try:
            count = cache.incr(f"{key}:failures")
        except ValueError:  # expired between add and incr
            cache.set(f"{key}:failures", 1, timeout=settings.FZ_SIGNIN_WINDOW_S)
            count = 1
        if count >= limit and cache.add(f"{key}:locked", 1, timeout=settings.FZ_SIGNIN_LOCKOUT_S):
            locked = True
            log.warning(
                "sign-in locked for %s s after %s failures (%s, account %s, ip %s)",
                settings.FZ_SIGNIN_LOCKOUT_S,
                count,
                "email" if key.startswith("signin:email:") else "source ip",
                attempt.account,
                attempt.ip,
            )
    return locked


def record_success(attempt: Attempt) -> None:
    """A success clears the email's failure count (not the IP's: one good password must not
    reset a spray across many accounts)."""
    key, _ = attempt.counters()[0]
    cache.delete(f"{key}:failures")


def client_ip(meta: dict[str, object]) -> str:
    # REMOTE_ADDR only: X-Forwarded-For is the client's to forge unless a proxy sets it, and
    # daphne behind a proxy puts the real address in REMOTE_ADDR when run with --proxy-headers.
    return str(meta.get("REMOTE_ADDR") or "unknown")


def _count(key: str) -> int:
    cache.add(key, 0, timeout=settings.FZ_SIGNIN_WINDOW_S)
    try:
        return int(cache.incr(key))
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=settings.FZ_SIGNIN_WINDOW_S)
        return 1


def allow_mail(attempt: Attempt) -> bool:
    """At most FZ_SIGNIN_MAX_MAILS sign-in mails per account+email within the window."""
    digest = hashlib.sha256(f"{attempt.account}\0{attempt.email.lower()}".encode()).hexdigest()
    count = _count(f"signin:mail:{digest}")
    if count > settings.FZ_SIGNIN_MAX_MAILS:
        if count == settings.FZ_SIGNIN_MAX_MAILS + 1:
            log.warning("sign-in mails for one address held back (account %s)", attempt.account)
        return False
    return True


def allow_device_start(ip: str) -> bool:
    """At most FZ_SIGNIN_MAX_DEVICE_STARTS client sign-ins started per source IP and window."""
    return _count(f"signin:device:{ip}") <= settings.FZ_SIGNIN_MAX_DEVICE_STARTS


def forget_all() -> None:
    """Drop every sign-in counter and lock (tests; an operator lifting all lockouts)."""
    backend = cache._cache if hasattr(cache, "_cache") else None
    client = getattr(backend, "get_client", None)
    if client is None:
        cache.clear()  # process memory: nothing else lives there
        return
    redis = client(write=True)
    pattern = cache.make_key("signin:*")
    keys = list(redis.scan_iter(match=pattern, count=1000))
    if keys:
        redis.delete(*keys)
