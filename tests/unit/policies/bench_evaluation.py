"""Micro-benchmark of the pure evaluator (not collected by pytest: not a test_*.py file).

Typical input: an actor in 5 groups, a resource with 5 policies of 0-2 conditions each, in five
shapes (a timed grant, a mixed grant, an unconditional grant last, every condition failing,
no applying policy). Prints one line per shape and, last, one JSON object.

    .venv/bin/python -m tests.unit.policies.bench_evaluation [--number 100000]
"""

from __future__ import annotations

import argparse
import json
import random
import timeit
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any
from uuid import uuid4

from policies.evaluation import ClientContext, PolicyRule, evaluate, parse_conditions

PROVIDER = str(uuid4())
CONDITION_SETS: list[list[dict[str, Any]]] = [
    [],
    [
        {
            "property": "remote_ip",
            "operator": "is_in_cidr",
            "values": ["10.0.0.0/8", "192.168.0.0/16"],
        }
    ],
    [{"property": "remote_ip_location_region", "operator": "is_in", "values": ["DE", "FR", "US"]}],
    [
        {"property": "provider_id", "operator": "is_in", "values": [PROVIDER]},
        {"property": "client_verified", "operator": "is", "values": ["true"]},
    ],
    [
        {
            "property": "current_utc_datetime",
            "operator": "is_in_day_of_week_time_ranges",
            "values": ["MTWRF/08:00-18:00/Europe/Berlin"],
        },
        {"property": "remote_ip", "operator": "is_not_in_cidr", "values": ["203.0.113.0/24"]},
    ],
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--number", type=int, default=100_000)
    args = parser.parse_args()
    rng = random.Random(1)
    mine = [uuid4() for _ in range(5)]
    others = [uuid4() for _ in range(20)]
    group_ids = frozenset(mine)
    resource = uuid4()
    now = datetime(2026, 5, 13, 10, 30, tzinfo=UTC)  # a Wednesday, inside office hours
    good = ClientContext(ip_address("10.1.2.3"), "DE", PROVIDER, True, now, now + timedelta(days=7))
    bad = ClientContext(ip_address("203.0.113.9"), "CN", None, False, now, now + timedelta(days=7))

    def rule(group: Any, conditions: list[dict[str, Any]]) -> PolicyRule:
        return PolicyRule(uuid4(), group, resource, parse_conditions(conditions))

    shapes = {
        "one_timed_grant": (
            [rule(others[i], CONDITION_SETS[i % 4 + 1]) for i in range(4)]
            + [rule(mine[2], CONDITION_SETS[4])],
            good,
        ),
        "mixed_two_apply": (
            [
                rule(mine[i] if i in (1, 3) else others[i], CONDITION_SETS[rng.randrange(1, 5)])
                for i in range(5)
            ],
            good,
        ),
        "unconditional_last": (
            [rule(others[i], CONDITION_SETS[i % 5]) for i in range(4)] + [rule(mine[0], [])],
            good,
        ),
        "all_conditions_fail": (
            [rule(mine[i], CONDITION_SETS[i]) for i in range(1, 5)] + [rule(others[0], [])],
            bad,
        ),
        "no_policy_applies": ([rule(others[i], CONDITION_SETS[i]) for i in range(5)], good),
    }
    results = {}
    for name, (rules, context) in shapes.items():
        allowed = evaluate(group_ids, rules, context).allowed
        best = min(
            timeit.repeat(
                lambda r=rules, c=context: evaluate(group_ids, r, c),  # type: ignore[misc]
                number=args.number,
                repeat=3,
            )
        )
        results[name] = round(args.number / best)
        print(f"{name:22s} allowed={allowed!s:5s} {results[name]:>10,} decisions/s")
    print(
        json.dumps(
            {
                "benchmark": "policy_evaluation_micro",
                "decisions_per_s": results,
                "min_decisions_per_s": min(results.values()),
                "goal_per_s": 200_000,
            }
        )
    )


if __name__ == "__main__":
    main()
