"""A scratch PostgreSQL database for one benchmark run, and Django set up on it.

The benchmarks that need the portal's models create their own database next to the configured one
(so they never touch the test database's rows), migrate it, and drop it at the end, also when the
run fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse, urlunparse

BENCH_SECRET_KEY = "benchmark-only-secret-key-0123456789abcdef"


def with_db(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return urlunparse(urlparse(url)._replace(path=f"/{name}"))


def create_database(base_url: str, name: str) -> str:
    """Create database ``name`` on ``base_url``'s server; returns its URL."""
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_db(base_url, name)


def drop_database(base_url: str, name: str) -> None:
    """Close Django's connections (if Django is loaded) and drop database ``name``."""
    import psycopg

    if "django.db" in sys.modules:
        from django.db import connections

        connections.close_all()
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(base_url: str, name: str) -> Iterator[str]:
    """``create_database`` on entry; yields its URL, ``drop_database`` on exit (also on error)."""
    url = create_database(base_url, name)
    try:
        yield url
    finally:
        drop_database(base_url, name)


def setup_django(database_url: str) -> None:
    """Django on ``database_url``, migrated (settings from the environment where already set)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("SECRET_KEY", BENCH_SECRET_KEY)
    os.environ.setdefault("FZ_TESTING", "1")  # fast password hasher, any host
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "firezone_site.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
