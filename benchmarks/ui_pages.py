"""Server time of the admin UI's list pages with 10,000 resources, policies and actors.

Creates its own PostgreSQL database (dropped at the end), seeds one account in bulk, then times
each list page through the Django test client in-process (middleware, session, auth, queries and
template rendering; no network). Prints a table and, as the last line, one JSON object mapping
page name to the p50 in milliseconds. Goal: every p50 under 150 ms.

    .venv/bin/python benchmarks/ui_pages.py [--rows 10000] [--requests 30]

PostgreSQL is found through BENCH_DATABASE_URL or DATABASE_URL (any database on the server; it
is only used to create and drop ``fz_ui_bench_<pid>``), default postgres://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._scratch_db import scratch_database, setup_django  # noqa: E402


def _server_url() -> str:
    return os.environ.get(
        "BENCH_DATABASE_URL",
        os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
    )


def _bulk(model: Any, rows: list[Any]) -> None:
    # Seeding 40,000+ rows through the services would take minutes; the benchmark measures reads,
    # so the rows go in with one bulk insert per model (the services' invariants hold by
    # construction: unique names, one slot per device, memberships of users only).
    model._default_manager.bulk_create(rows, batch_size=2000)


def seed(rows: int) -> tuple[Any, Any]:
    from accounts import services as accounts
    from accounts.models import Actor, Group, Membership
    from gateways import services as gateways
    from gateways.models import Authorization, ClientDevice, TunnelAddress
    from policies.models import Policy, Resource, Site

    account = accounts.create_account(name="Bench", slug="bench")
    admin = accounts.create_actor(
        account,
        email="admin@bench.test",
        name="Admin",
        type=Actor.Type.ADMIN,
        password="benchmark-password",
    )
    site_names = [f"site-{i:02d}" for i in range(20)]
    sites = [gateways.create_site(account, name=name) for name in site_names]
    site: Site = sites[0]
    everyone = accounts.everyone_group(account)

    actors = [
        Actor(
            account=account,
            email=f"user{i:05d}@bench.test",
            name=f"User {i:05d}",
            type=Actor.Type.USER,
        )
        for i in range(rows)
    ]
    _bulk(Actor, actors)
    _bulk(Membership, [Membership(account=account, group=everyone, actor=a) for a in actors])
    groups = [Group(account=account, name=f"team-{i:03d}") for i in range(100)]
    _bulk(Group, groups)
    _bulk(
        Membership,
        [Membership(account=account, group=groups[i % 100], actor=a) for i, a in enumerate(actors)],
    )
    resources = [
        Resource(
            account=account,
            name=f"res-{i:05d}",
            kind=Resource.Kind.IP,
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
            site=sites[i % 20],
            filters=[{"protocol": "tcp", "ports": ["443"]}] if i % 2 else [],
        )
        for i in range(rows)
    ]
    _bulk(Resource, resources)
    conditions = [{"property": "client_verified", "operator": "is", "values": ["true"]}]
    _bulk(
        Policy,
        [
            Policy(
                account=account,
                group=groups[i % 100],
                resource=r,
                conditions=conditions if i % 3 == 0 else [],
                description=f"policy {i}",
            )
            for i, r in enumerate(resources)
        ],
    )
    slots = [TunnelAddress(account=account, slot=i + 1) for i in range(rows)]
    _bulk(TunnelAddress, slots)
    devices = []
    for i, (actor, slot) in enumerate(zip(actors, slots, strict=True)):
        ipv4, ipv6 = gateways.slot_addresses(slot.slot)
        devices.append(
            ClientDevice(
                account=account,
                actor=actor,
                kind=ClientDevice.Kind.STATIC,
                external_id=f"static:{uuid.uuid4()}",
                name=f"device-{i:05d}",
                public_key=f"{i:043d}=",
                address=slot,
                ipv4=ipv4,
                ipv6=ipv6,
            )
        )
    _bulk(ClientDevice, devices)
    _bulk(
        Authorization,
        [
            Authorization(
                account=account,
                actor=actors[i],
                resource=resources[i],
                actor_email=actors[i].email,
                resource_name=resources[i].name,
                resource_address=resources[i].address,
            )
            for i in range(rows)
        ],
    )
    del site
    return account, admin


PAGES = {
    "overview": "/",
    "sites": "/sites/",
    "resources": "/resources/",
    "resources_search": "/resources/?q=res-09",
    "resources_last_page": "/resources/?page=last",
    "policies": "/policies/",
    "policies_search": "/policies/?q=res-0042",
    "actors": "/actors/",
    "actors_search": "/actors/?q=user0999",
    "groups": "/groups/",
    "devices": "/devices/",
    "audit": "/audit/",
    "audit_filtered": "/audit/?actor=user09&resource=res-09",
    "settings": "/settings/",
}


def measure(admin: Any, requests: int) -> dict[str, float]:
    from django.test import Client

    client = Client()
    client.force_login(admin.user)
    results: dict[str, float] = {}
    for name, url in PAGES.items():
        for _ in range(3):  # warm caches (templates, compiled queries, connection)
            response = client.get(url)
            assert response.status_code == 200, (name, response.status_code)
        times = []
        for _ in range(requests):
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200
        results[name] = round(statistics.median(times), 2)
        p90 = sorted(times)[int(len(times) * 0.9) - 1]
        print(f"{name:22s} p50 {results[name]:7.2f} ms   p90 {p90:7.2f} ms   {url}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()

    with scratch_database(_server_url(), f"fz_ui_bench_{os.getpid()}") as database_url:
        setup_django(database_url)
        from django.db import connection

        start = time.perf_counter()
        _, admin = seed(args.rows)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(
            f"seeded {args.rows} actors/resources/policies/devices/authorizations in "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
        results = measure(admin, args.requests)
        goal = max(results.values()) < 150
        print(f"goal p50 < 150 ms on every page: {'met' if goal else 'NOT met'}", flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
