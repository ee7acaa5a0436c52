"""Server time and query count of the REST API's list endpoints with 10,000 rows.

Creates its own PostgreSQL database (dropped at the end), seeds one account in bulk (the same
rows as benchmarks/ui_pages.py), then times each list endpoint through the DRF test client
in-process (bearer-token authentication with its last-use write, rate limit, filters, cursor
pagination, serialization; no network). Query counts are taken on the first page, on a page
five ``next`` links deep and on a ten times larger page: they must be equal (no N+1, no OFFSET
scans). Prints a table and, as the last line, one JSON object. Goal: every p50 under 50 ms.

    .venv/bin/python benchmarks/api.py [--rows 10000] [--requests 30]

PostgreSQL is found through BENCH_DATABASE_URL or DATABASE_URL (any database on the server; it
is only used to create and drop ``fz_api_bench_<pid>``), default postgres://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._scratch_db import scratch_database, setup_django  # noqa: E402
from benchmarks.ui_pages import _server_url, seed  # noqa: E402

ENDPOINTS = {
    "actors": "/api/v1/actors",
    "groups": "/api/v1/groups",
    "memberships": "/api/v1/memberships",
    "resources": "/api/v1/resources",
    "resources_filtered": "/api/v1/resources?kind=ip&ordering=name",
    "policies": "/api/v1/policies",
    "devices": "/api/v1/devices",
    "static_devices": "/api/v1/static-devices",
    "authorizations": "/api/v1/authorizations",
    "authorizations_active": "/api/v1/authorizations?active=true",
    "sites": "/api/v1/sites",
}


def _queries(client: Any, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    return len(ctx.captured_queries)


def _deep(client: Any, url: str, hops: int = 5) -> str:
    for _ in range(hops):
        following = client.get(url).json()["next"]
        if not following:
            break
        url = following.removeprefix("http://testserver")
    return url


def measure(secret: str, requests: int) -> tuple[dict[str, float], dict[str, list[int]]]:
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    p50: dict[str, float] = {}
    queries: dict[str, list[int]] = {}
    for name, url in ENDPOINTS.items():
        for _ in range(3):  # warm caches (compiled queries, connection)
            assert client.get(url).status_code == 200
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        p50[name] = round(statistics.median(times), 2)
        sep = "&" if "?" in url else "?"
        queries[name] = [
            _queries(client, url),
            _queries(client, _deep(client, url)),
            _queries(client, f"{url}{sep}page_size=500"),
        ]
        p90 = sorted(times)[int(len(times) * 0.9) - 1]
        print(
            f"{name:22s} p50 {p50[name]:7.2f} ms   p90 {p90:7.2f} ms   "
            f"queries first/deep/500 {queries[name]}   {url}",
            flush=True,
        )
    return p50, queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("FZ_API_RATE", "1000000/min")  # measure the work, not the limiter

    with scratch_database(_server_url(), f"fz_api_bench_{os.getpid()}") as database_url:
        setup_django(database_url)
        from django.db import connection
        from django.utils import timezone

        from accounts import services as accounts
        from accounts.models import Actor, Token

        start = time.perf_counter()
        account, _ = seed(args.rows)
        robot = accounts.create_actor(account, email="", name="Bench", type=Actor.Type.API_CLIENT)
        secret = accounts.create_token(
            account, kind=Token.Kind.API, actor=robot,
            expires_at=timezone.now() + timedelta(days=1),
        ).secret  # fmt: skip
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(f"seeded {args.rows} rows per model in {time.perf_counter() - start:.1f} s")
        p50, queries = measure(secret, args.requests)
        fast = max(p50.values()) < 50
        constant = all(len(set(counts)) == 1 for counts in queries.values())
        print(f"goal p50 < 50 ms on every list: {'met' if fast else 'NOT met'}", flush=True)
        print(f"query count constant in depth and page size: {'yes' if constant else 'NO'}")
    print(json.dumps({"list_p50_ms": p50, "rows": args.rows, "queries": queries}))


if __name__ == "__main__":
    main()
