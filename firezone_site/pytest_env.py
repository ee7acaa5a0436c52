"""pytest plugin loaded with ``-p`` (see pyproject) so the environment is set before pytest-django
imports the settings: tests run against the machine's PostgreSQL and Redis unless told otherwise."""

from __future__ import annotations

import os

os.environ.setdefault("FZ_TESTING", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# Connections opened by worker threads (websocket consumers) must not outlive a test.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-that-is-long-enough-0123456789")
# Each test process gets its own channel-layer prefix so parallel runs never see each other.
os.environ.setdefault("FZ_CHANNEL_PREFIX", f"fztest{os.getpid()}")
# ... and its own cache prefix (the sign-in throttle counters live in the cache).
os.environ.setdefault("FZ_CACHE_PREFIX", f"fztest{os.getpid()}")
