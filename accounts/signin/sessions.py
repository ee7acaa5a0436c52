"""Portal sessions: Django sessions that remember the provider they were signed in through, so
that disabling the provider (or the actor) can end them."""

from __future__ import annotations

from datetime import timedelta

SESSION_PROVIDER_KEY = "fz_provider_id"
# Set when the provider signs people in to clients only: the session may confirm a client
# sign-in (/device) and nothing else of the portal.
CLIENTS_ONLY_KEY = "fz_clients_only"
DEVICE_PATH = "/device"
DEFAULT_PORTAL_LIFETIME = timedelta(hours=8)
