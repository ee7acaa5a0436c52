"""Under CI=true an e2e or browser test that skips fails the run (firezone_site.pytest_env);
other skips stay skips, and without CI nothing changes. Runs a real pytest in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

SKIPPING = """
import pytest

def test_skips_for_a_missing_tool():
    pytest.skip("missing tools: wireguard-go")

@pytest.mark.skip(reason="needs root")
def test_marked_skip():
    pass

def test_runs():
    pass
"""

MODULE_SKIP = """
import pytest
pytest.skip("needs /dev/net/tun", allow_module_level=True)

def test_never_collected():
    pass
"""

MARKED_ELSEWHERE = """
import pytest

@pytest.mark.browser
def test_browser_test_outside_the_browser_dir():
    pytest.skip("/usr/bin/chromium is not installed")
"""

XFAIL = """
import pytest

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


def _tree(root: Path) -> None:
    for folder in ("tests/e2e", "tests/browser", "tests/unit", "tests/e2e_modules/e2e"):
        (root / folder).mkdir(parents=True)
    (root / "tests/e2e/test_dataplane.py").write_text(SKIPPING)
    (root / "tests/browser/test_ui.py").write_text(SKIPPING)
    (root / "tests/unit/test_plain.py").write_text(SKIPPING + MARKED_ELSEWHERE + XFAIL)
    (root / "tests/e2e_modules/e2e/test_module_skip.py").write_text(MODULE_SKIP)
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    e2e: e2e\n    browser: browser\n")


def _run(root: Path, ci: str | None, *paths: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "firezone_site.pytest_env",
            "-p",
            "no:django",
            "-p",
            "no:cacheprovider",
            "-q",
            "-rA",
            *paths,
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _tree(tmp_path)
    return tmp_path


def test_under_ci_an_end_to_end_skip_fails_the_run(tree: Path) -> None:
    result = _run(tree, "true", "tests/e2e", "tests/browser")
    assert result.returncode == 1, result.stdout
    out = result.stdout
    # Both kinds of skip (called inside the test, or a skip mark), in both directories.
    for path in ("tests/e2e/test_dataplane.py", "tests/browser/test_ui.py"):
        assert f"{path}::test_skips_for_a_missing_tool" in out
        assert f"{path}::test_marked_skip" in out
    assert "CI=true: end-to-end test" in out and "(missing tools: wireguard-go)" in out
    assert "(needs root)" in out
    assert "skipped" not in out.splitlines()[-1]
    assert "2 passed" in out.splitlines()[-1]


def test_under_ci_a_module_level_skip_in_an_e2e_dir_fails_too(tree: Path) -> None:
    result = _run(tree, "true", "tests/e2e_modules")
    assert result.returncode != 0, result.stdout
    assert "CI=true: end-to-end module" in result.stdout
    assert "needs /dev/net/tun" in result.stdout


def test_under_ci_other_skips_stay_skips_but_e2e_markers_count(tree: Path) -> None:
    result = _run(tree, "true", "tests/unit")
    out = result.stdout
    summary = out.splitlines()[-1]
    # The plain unit skips are skips; the @pytest.mark.browser test fails; xfail stays xfail.
    assert "2 skipped" in summary and "1 failed" in summary and "1 xfailed" in summary, out
    assert "test_browser_test_outside_the_browser_dir" in out
    assert result.returncode == 1


@pytest.mark.parametrize("ci", [None, "false", ""])
def test_without_ci_skips_are_skips(tree: Path, ci: str | None) -> None:
    result = _run(tree, ci, "tests")
    summary = result.stdout.splitlines()[-1]
    assert result.returncode == 0, result.stdout
    assert not re.search(r"\d+ (failed|errors?)\b", summary), summary
    assert "8 skipped" in summary and "3 passed" in summary and "1 xfailed" in summary
