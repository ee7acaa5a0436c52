"""Directory sync at scale: the Okta fake over HTTP (Okta's page sizes) into PostgreSQL.

The fake (tests/integration/directories/fakes.py) runs in its own process with ``--users`` users,
``--groups`` groups and ``--memberships`` memberships; this process is the worker: it runs the
real adapter + engine (``accounts.directories.services.sync_directory``) on a scratch database
(``fz_bench_dirsync_<pid>``, dropped at the end). Three timed runs: the first full sync, a no-op
re-sync, and a re-sync after 1% churn (users renamed, deleted, added; memberships moved). Peak
RSS is this (worker) process's. Goals: full < 120 s, no-op < 20 s, churn < 30 s, RSS < 1 GiB.
The last line printed is one JSON object.

    .venv/bin/python benchmarks/directory_sync.py [--users 100000] [--groups 10000]
        [--memberships 500000] [--churn 0.01]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._scratch_db import scratch_database, setup_django  # noqa: E402


def build_data(users: int, groups: int, memberships: int) -> Any:
    from tests.integration.directories.fakes import DirectoryData

    data = DirectoryData()
    for i in range(users):
        data.users[f"u{i:07d}"] = {
            "email": f"user{i}@bench.test",
            "name": f"User {i}",
            "active": True,
            "ou": "/",
        }
    ids = list(data.users)
    per_group, extra = divmod(memberships, groups)
    for g in range(groups):
        gid = f"g{g:06d}"
        data.groups[gid] = f"Group {g}"
        count = per_group + (1 if g < extra else 0)
        start = (g * 7919) % users
        data.members[gid] = [ids[(start + k) % users] for k in range(count)]
    return data


def serve_fake(users: int, groups: int, memberships: int, port_queue: Any) -> None:
    from tests.integration.directories.fakes import FakeState, serve

    state = FakeState(data=build_data(users, groups, memberships))
    with serve(state) as base:
        port_queue.put(base)
        while True:
            time.sleep(3600)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--memberships", type=int, default=500_000)
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    fake = ctx.Process(
        target=serve_fake, args=(args.users, args.groups, args.memberships, ports), daemon=True
    )
    fake.start()
    base = ports.get(timeout=600)
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    result: dict[str, Any] = {}
    try:
        with scratch_database(base_url, f"fz_bench_dirsync_{os.getpid()}") as url:
            setup_django(url)
            import logging

            logging.getLogger("httpx").setLevel(logging.WARNING)
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa

            from accounts import services
            from accounts.directories import services as directory_services
            from accounts.models import Actor, Membership

            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            private = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode()
            # The fake checks the client assertion with this public key: tell it (control call).
            public = (
                key.public_key()
                .public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
                .decode()
            )
            request = urllib.request.Request(
                f"{base}/_control/okta_key", data=public.encode(), method="POST"
            )
            urllib.request.urlopen(request, timeout=30).read()
            account = services.create_account(name="Bench", slug="bench")
            directory = directory_services.create_directory(
                account,
                name="Okta",
                kind="okta",
                config={"org_url": f"{base}/okta", "client_id": "0oaBench", "private_key": private},
            )

            def timed(label: str) -> float:
                start = time.monotonic()
                outcome = directory_services.sync_directory(directory.pk)
                elapsed = time.monotonic() - start
                if outcome.status != "succeeded":
                    raise SystemExit(f"{label} sync {outcome.status}: {outcome.error}")
                result[f"{label}_stats"] = outcome.stats
                print(f"{label}: {elapsed:.1f} s {outcome.stats}", file=sys.stderr)
                return elapsed

            result["full_s"] = round(timed("full"), 2)
            result["users"] = Actor.objects.filter(directory=directory).count()
            result["memberships"] = Membership.objects.filter(group__directory=directory).count()
            result["noop_s"] = round(timed("noop"), 2)
            churn = urllib.request.urlopen(
                urllib.request.Request(
                    f"{base}/_control/churn?fraction={args.churn}", data=b"", method="POST"
                ),
                timeout=60,
            ).read()
            result["churned"] = json.loads(churn)["changed"]
            result["churn_s"] = round(timed("churn"), 2)
            result["peak_rss_mb"] = round(peak_rss_mb(), 1)
            result["goals_met"] = (
                result["full_s"] < 120
                and result["noop_s"] < 20
                and result["churn_s"] < 30
                and result["peak_rss_mb"] < 1024
            )
    finally:
        fake.terminate()
        fake.join(timeout=10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
