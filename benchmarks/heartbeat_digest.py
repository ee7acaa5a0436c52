"""What the state digest costs the portal per heartbeat, for one realistic gateway.

A scratch PostgreSQL database holds one account with a gateway that carries ``--authorizations``
active flows (distinct dynamic devices, 50 resources with filters) and ``--static`` static
peers. Timed: ``gateways.queries.state_digest`` (the query + canonical JSON + SHA-256 the
consumer runs for every ``heartbeat_reply``), and for comparison the ``init`` it is derived from.
The last line printed is one JSON object.

    .venv/bin/python benchmarks/heartbeat_digest.py [--authorizations 1000] [--static 100]
        [--runs 50]
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._scratch_db import scratch_database, setup_django  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--authorizations", type=int, default=1000)
    parser.add_argument("--static", type=int, default=100)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    with scratch_database(base, f"fz_bench_digest_{os.getpid()}") as url:
        setup_django(url)
        print(json.dumps(run(args)))


def run(args: argparse.Namespace) -> dict[str, object]:
    from django.utils import timezone

    from accounts import services as accounts
    from accounts.models import Actor
    from gateways import queries, services
    from gateways.models import Authorization, ClientDevice, StaticDeviceAssignment
    from policies import services as policies

    account = accounts.create_account(name="Bench", slug="bench")
    site = services.create_site(account, name="Site")
    secret = services.issue_gateway_token(site).secret
    gateway = services.connect_gateway(
        secret=secret,
        params=services.GatewayParams(
            external_id="gw", name="gw", public_key=services.generate_key_pair()[1],
            version="0.1.0", endpoint="",
        ),
        remote_ip="127.0.0.1",
        channel_name="bench",
    )  # fmt: skip
    user = accounts.create_actor(account, email="u@bench.test", name="U", type=Actor.Type.USER)
    group = accounts.create_group(account, name="All")
    accounts.add_member(group, user)
    resources = [
        policies.create_resource(
            account, name=f"r{i}", kind="cidr", address=f"10.{i}.0.0/16", site=site,
            filters=[{"protocol": "tcp", "ports": ["22", "8000-8100"]}],
        )
        for i in range(50)
    ]  # fmt: skip
    policy_of = {r.pk: policies.create_policy(account, group=group, resource=r) for r in resources}

    def device(n: int, kind: str) -> ClientDevice:
        addresses = services.allocate_tunnel_address(account.pk)
        return ClientDevice(
            account=account, actor=user, external_id=f"{kind}{n}", name=f"{kind}{n}", kind=kind,
            public_key=services.generate_key_pair()[1], address=addresses.slot,
            ipv4=addresses.ipv4, ipv6=addresses.ipv6,
        )  # fmt: skip

    dynamic = ClientDevice.objects.bulk_create(
        [device(i, ClientDevice.Kind.DYNAMIC) for i in range(args.authorizations)]
    )
    later = timezone.now() + timedelta(hours=8)
    Authorization.objects.bulk_create(
        Authorization(
            account=account, actor=user, device=d, resource=resources[i % 50],
            policy=policy_of[resources[i % 50].pk], gateway=gateway, expires_at=later,
        )
        for i, d in enumerate(dynamic)
    )  # fmt: skip
    statics = ClientDevice.objects.bulk_create(
        [device(i, ClientDevice.Kind.STATIC) for i in range(args.static)]
    )
    StaticDeviceAssignment.objects.bulk_create(
        StaticDeviceAssignment(
            account=account, device=d, site=site, gateway=gateway,
            resource_ids=sorted(str(r.pk) for r in resources[:5]),
        )
        for d in statics
    )  # fmt: skip

    def timed(fn: object) -> list[float]:
        out = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            out.append((time.perf_counter() - t0) * 1000)
        return out

    now = timezone.now()
    digest = timed(lambda: queries.state_digest(account.pk, gateway.pk, now))
    cache = queries.DigestCache()
    cached = timed(lambda: queries.state_digest(account.pk, gateway.pk, now, cache))
    assert cache.computed == 1 and cache.digest == queries.state_digest(account.pk, gateway.pk, now)
    init = queries.gateway_init(account.pk, gateway.pk, now)
    assert init is not None and len(init.authorizations) == args.authorizations
    assert len(init.static_peers) == args.static
    init_ms = timed(lambda: queries.gateway_init(account.pk, gateway.pk, now))
    return {
        "cached_digest_p50_ms": round(statistics.median(cached), 2),
        "cached_digest_max_ms": round(max(cached), 2),
        "digest_p50_ms": round(statistics.median(digest), 2),
        "digest_max_ms": round(max(digest), 2),
        "init_p50_ms": round(statistics.median(init_ms), 2),
        "authorizations": args.authorizations,
        "static_peers": args.static,
    }


if __name__ == "__main__":
    main()
