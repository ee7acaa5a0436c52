"""Portal sessions: Django sessions that remember the provider they were signed in through, so
that disabling the provider (or the actor) can end them."""

from __future__ import annotations

from datetime import timedelta

SESSION_PROVIDER_KEY = "fz_provider_id"
DEFAULT_PORTAL_LIFETIME = timedelta(hours=8)
