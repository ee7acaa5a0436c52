"""pytest plugin loaded with ``-p`` (see pyproject) so the environment is set before pytest-django
imports the settings: tests run against the machine's PostgreSQL and Redis unless told otherwise."""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("FZ_TESTING", "1")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
# Connections opened by worker threads (websocket consumers) must not outlive a test.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-that-is-long-enough-0123456789")
# Each test process gets its own channel-layer prefix so parallel runs never see each other.
os.environ.setdefault("FZ_CHANNEL_PREFIX", f"fztest{os.getpid()}")
# ... and its own cache prefix (the sign-in throttle counters live in the cache).
os.environ.setdefault("FZ_CACHE_PREFIX", f"fztest{os.getpid()}")


# --- under CI, end-to-end coverage may not quietly go missing ----------------------------------
# e2e and browser tests skip themselves when the machine lacks a tool or a privilege (root, TUN,
# wireguard-go, Chromium). On a developer's laptop that is a convenience; under CI=true a green
# run must not hide that they never ran, so such a skip is reported as a failure instead.

END_TO_END_DIRS = frozenset({"e2e", "browser"})
END_TO_END_MARKERS = ("e2e", "browser")


def ci_enabled() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _in_end_to_end_dir(path: Path, rootpath: Path) -> bool:
    try:
        parts = path.resolve().relative_to(rootpath.resolve()).parts
    except ValueError:
        return False
    return bool(END_TO_END_DIRS.intersection(parts[:-1]))


def _skip_reason(longrepr: object) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def _as_failure(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = _skip_reason(report.longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"CI=true: {what} skipped ({reason}); end-to-end tests must run under CI. "
        "Install what it needs (make test does, as root) or unset CI to allow the skip."
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not (report.skipped and ci_enabled()):
        return
    if getattr(report, "wasxfail", None) is not None:
        return  # an expected failure is not a skip
    end_to_end = any(item.get_closest_marker(m) for m in END_TO_END_MARKERS)
    if end_to_end or _in_end_to_end_dir(item.path, item.config.rootpath):
        _as_failure(report, f"end-to-end test {item.nodeid}")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    # A module-level ``pytest.skip(allow_module_level=True)`` skips at collection.
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()
    if not (report.skipped and ci_enabled() and isinstance(collector, pytest.Module)):
        return
    if _in_end_to_end_dir(collector.path, collector.config.rootpath):
        _as_failure(report, f"end-to-end module {collector.nodeid}")
