"""schemathesis against the live portal (``manage.py serve``: daphne, the production ASGI app) with
a valid API client token: every operation, schema-valid and schema-invalid inputs. The run must
find no server error and no response that its schema does not describe."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from accounts.models import Account, Actor
from tests.integration.served.conftest import serve_portal

from .conftest import build_world

pytestmark = pytest.mark.django_db(transaction=True)

MAX_EXAMPLES = int(os.environ.get("FZ_SCHEMATHESIS_EXAMPLES", "100"))
MAX_SECONDS = int(os.environ.get("FZ_SCHEMATHESIS_SECONDS", "150"))
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance,response_headers_conformance"
)
# What would lock the fuzzer out (its own token revoked, its actor disabled, deleted or made a
# user): the stateful phase finds real ids in list responses, so these run without it, on
# generated ids only.
SELF_LOCKING = (
    "api_tokens_destroy", "actors_disable_create", "actors_destroy", "actors_update",
    "actors_partial_update",
)  # fmt: skip


def _schemathesis(
    url: str, secret: str, out: Path, *, seconds: int, phases: str, operations: list[str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"), "run", url,
            "--header", f"Authorization: Bearer {secret}",
            "--checks", CHECKS,
            "--phases", phases,
            "--max-examples", str(MAX_EXAMPLES),
            "--max-time", str(seconds),
            "--workers", "2",
            "--request-timeout", "30",
            "--suppress-health-check", "all",
            "--report", "junit", "--report-junit-path", str(out),
            "--no-color",
            *operations,
        ],
        capture_output=True, text=True, timeout=seconds + 300,
        cwd=out.parent,  # its cache (.schemathesis/) stays out of the work tree
    )  # fmt: skip


def _counts(junit: Path) -> dict[str, int]:
    root = ElementTree.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    return {
        key: sum(int(suite.get(key, "0")) for suite in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    acme: Account, bob: Actor, tmp_path: Path
) -> None:
    world = build_world(acme, bob)
    excluded = [arg for op in SELF_LOCKING for arg in ("--exclude-operation-id", op)]
    included = [arg for op in SELF_LOCKING for arg in ("--include-operation-id", op)]
    with serve_portal(tmp_path, FZ_API_RATE="1000000/min") as portal:
        url = f"{portal.http_url}/api/openapi.json"
        runs = {
            "all": _schemathesis(
                url, world.secret, tmp_path / "all.xml", seconds=MAX_SECONDS,
                phases="examples,coverage,fuzzing,stateful", operations=excluded,
            ),
            "self-locking": _schemathesis(
                url, world.secret, tmp_path / "self.xml", seconds=max(MAX_SECONDS // 4, 20),
                phases="examples,coverage,fuzzing", operations=included,
            ),
        }  # fmt: skip
        portal_log = portal.log()
    for name, result in runs.items():
        print(f"--- schemathesis ({name}) ---\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}")
    counts = {"all": _counts(tmp_path / "all.xml"), "self-locking": _counts(tmp_path / "self.xml")}
    print("schemathesis operations:", json.dumps(counts))
    assert "Traceback" not in portal_log, portal_log[portal_log.index("Traceback") :][:5000]
    for name, result in runs.items():
        assert result.returncode == 0, f"{name}:\n{result.stdout[-8000:]}"
    assert counts["all"]["tests"] >= 55 and counts["self-locking"]["tests"] == len(SELF_LOCKING)
