"""Policy evaluation benchmark (issue: portal foundation).

Creates a scratch PostgreSQL database, fills one account with 10,000 actors, 1,000 resources,
5,000 policies and 50,000 memberships, then measures
  * pure evaluator decisions per second (policies.evaluation.evaluate), goal >= 200,000/s;
  * allowed_resources(actor, context) p50/p99 latency for one actor, goal p50 < 20 ms.
The last line printed is one JSON object. The scratch database is dropped at the end.

    .venv/bin/python benchmarks/policy_eval.py [--base-url postgres://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._scratch_db import scratch_database, setup_django

ACTORS = 10_000
RESOURCES = 1_000
POLICIES = 5_000
MEMBERSHIPS = 50_000
GROUPS = 500


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url",
        default=os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test"),
    )
    parser.add_argument("--decisions", type=int, default=300_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()

    with scratch_database(args.base_url, f"fz_bench_policy_{os.getpid()}") as database_url:
        run(database_url, args.decisions, args.samples)


def run(database_url: str, n_decisions: int, n_samples: int) -> None:
    setup_django(database_url)

    from accounts import services as accounts
    from accounts.models import Actor, Group, Membership
    from gateways import services as gateways
    from policies import evaluation, queries
    from policies.models import Policy, Resource

    rng = random.Random(42)
    t0 = time.perf_counter()
    account = accounts.create_account(name="Bench", slug="bench")
    site = gateways.create_site(account, name="Site")
    actors = Actor.objects.bulk_create(
        [
            Actor(account=account, email=f"user{i}@bench.test", name=f"User {i}")
            for i in range(ACTORS)
        ],
        batch_size=2000,
    )
    groups = Group.objects.bulk_create(
        [Group(account=account, name=f"Group {i}") for i in range(GROUPS)], batch_size=2000
    )
    memberships: set[tuple[int, int]] = set()
    for a in range(ACTORS):
        for g in rng.sample(range(GROUPS), MEMBERSHIPS // ACTORS):
            memberships.add((a, g))
    Membership.objects.bulk_create(
        [Membership(account=account, actor=actors[a], group=groups[g]) for a, g in memberships],
        batch_size=5000,
    )
    resources = Resource.objects.bulk_create(
        [
            Resource(
                account=account,
                name=f"Resource {i}",
                kind="cidr",
                address=f"10.{i // 256}.{i % 256}.0/24",
                site=site,
            )
            for i in range(RESOURCES)
        ],
        batch_size=2000,
    )
    condition_sets = [
        [],
        [],
        [{"property": "remote_ip", "operator": "is_in_cidr", "values": ["0.0.0.0/0"]}],
        [
            {
                "property": "remote_ip_location_region",
                "operator": "is_in",
                "values": ["DE", "FR", "US"],
            }
        ],
        [
            {
                "property": "current_utc_datetime",
                "operator": "is_in_day_of_week_time_ranges",
                "values": [
                    "M/true/UTC",
                    "T/true/UTC",
                    "W/true/UTC",
                    "R/true/UTC",
                    "F/true/UTC",
                    "S/true/UTC",
                    "U/true/UTC",
                ],
            }
        ],
    ]
    # Validate the condition sets once through the real parser (the benchmark must not store
    # anything the product would refuse).
    for cs in condition_sets:
        evaluation.parse_conditions(cs)
    pairs: set[tuple[int, int]] = set()
    while len(pairs) < POLICIES:
        pairs.add((rng.randrange(GROUPS), rng.randrange(RESOURCES)))
    Policy.objects.bulk_create(
        [
            Policy(
                account=account,
                group=groups[g],
                resource=resources[r],
                conditions=rng.choice(condition_sets),
            )
            for g, r in pairs
        ],
        batch_size=5000,
    )
    setup_s = time.perf_counter() - t0

    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    import ipaddress

    context = evaluation.ClientContext(
        remote_ip=ipaddress.ip_address("203.0.113.7"),
        country="DE",
        auth_provider_id=None,
        verified=True,
        now=now,
    )

    # Pure evaluator: realistic inputs, precompiled once (as the portal caches compiled rules).
    actor_groups: dict[int, frozenset[uuid.UUID]] = {}
    for a, g in memberships:
        actor_groups.setdefault(a, frozenset())
        actor_groups[a] = actor_groups[a] | {groups[g].pk}
    rules_by_resource: dict[int, list[evaluation.PolicyRule]] = {}
    for (g, r), cs in zip(pairs, (rng.choice(condition_sets) for _ in pairs), strict=False):
        rules_by_resource.setdefault(r, []).append(
            evaluation.PolicyRule(
                policy_id=uuid.uuid4(),
                group_id=groups[g].pk,
                resource_id=resources[r].pk,
                conditions=evaluation.parse_conditions(cs),
            )
        )
    resource_idx = list(rules_by_resource)
    inputs = [
        (actor_groups[rng.randrange(ACTORS)], rules_by_resource[rng.choice(resource_idx)])
        for _ in range(10_000)
    ]
    evaluate = evaluation.evaluate
    allowed_count = 0
    start = time.perf_counter()
    done = 0
    while done < n_decisions:
        for group_ids, rules in inputs:
            if evaluate(group_ids, rules, context).allowed:
                allowed_count += 1
        done += len(inputs)
    pure_s = time.perf_counter() - start
    decisions_per_s = done / pure_s

    # The same, only for pairs where at least one policy applies (the actor is in one of the
    # resource's groups), so conditions are actually evaluated.
    applicable: list[tuple[frozenset[uuid.UUID], list[evaluation.PolicyRule]]] = []
    while len(applicable) < 10_000:
        group_ids = actor_groups[rng.randrange(ACTORS)]
        rules = rules_by_resource[rng.choice(resource_idx)]
        if any(rule.group_id in group_ids for rule in rules):
            applicable.append((group_ids, rules))
    start = time.perf_counter()
    done_applicable = 0
    allowed_applicable = 0
    while done_applicable < n_decisions:
        for group_ids, rules in applicable:
            if evaluate(group_ids, rules, context).allowed:
                allowed_applicable += 1
        done_applicable += len(applicable)
    applicable_per_s = done_applicable / (time.perf_counter() - start)

    # allowed_resources on PostgreSQL, one actor at a time.
    sample = rng.sample(actors, n_samples)
    for actor in sample[:10]:  # warm connection and caches
        queries.allowed_resources(actor, context)
    latencies = []
    counts = []
    for actor in sample:
        s = time.perf_counter()
        result = queries.allowed_resources(actor, context)
        latencies.append((time.perf_counter() - s) * 1000)
        counts.append(len(result))
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[int(len(latencies) * 0.99) - 1]

    out = {
        "benchmark": "policy_eval",
        "actors": ACTORS,
        "resources": RESOURCES,
        "policies": POLICIES,
        "memberships": len(memberships),
        "setup_s": round(setup_s, 1),
        "decisions": done,
        "decisions_allowed_fraction": round(allowed_count / done, 3),
        "decisions_per_s": round(decisions_per_s),
        "decisions_goal_per_s": 200_000,
        "decisions_goal_met": decisions_per_s >= 200_000,
        "applicable_decisions_per_s": round(applicable_per_s),
        "applicable_allowed_fraction": round(allowed_applicable / done_applicable, 3),
        "applicable_goal_met": applicable_per_s >= 200_000,
        "allowed_resources_p50_ms": round(p50, 2),
        "allowed_resources_p99_ms": round(p99, 2),
        "allowed_resources_mean_count": round(statistics.mean(counts), 1),
        "allowed_resources_goal_p50_ms": 20,
        "allowed_resources_goal_met": p50 < 20,
    }
    print(f"pure evaluator: {decisions_per_s:,.0f} decisions/s over {done:,} decisions")
    print(f"pure evaluator, a policy applies: {applicable_per_s:,.0f} decisions/s")
    print(
        f"allowed_resources: p50 {p50:.2f} ms, p99 {p99:.2f} ms over {n_samples} actors "
        f"(mean {out['allowed_resources_mean_count']} resources each)"
    )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
