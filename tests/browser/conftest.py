"""Chromium (Debian's /usr/bin/chromium) driven by PyPI playwright against pytest-django's
live server. Never ``playwright install``: the browser is the system one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while it is open, which would break every later test that calls asyncio.run().
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    # The ORM calls the tests make between browser steps are plain synchronous ones, so Django's
    # async-safety guard is switched off while the browser runs, and only then.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_api.sync_playwright() as pw:
            instance = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
            try:
                yield instance
            finally:
                instance.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# Every page reports Content-Security-Policy violations as a console error with this prefix
# (Chromium also logs its own "Refused to ..." line naming the policy); both are collected.
_REPORT_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP violation: " + e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                + " on " + e.documentURI + " (from " + (e.sourceFile || "the page") + ":"
                + e.lineNumber + ")");
});
"""


class CSPViolations(list[str]):
    """Console lines about CSP violations seen by the current test's browser tab."""

    def on_console(self, message: Any) -> None:
        text = message.text
        if message.type == "error" and (
            text.startswith("CSP violation:") or "Content Security Policy" in text
        ):
            self.append(text)


@pytest.fixture
def csp_violations() -> CSPViolations:
    return CSPViolations()


@pytest.fixture
def page(browser: Any, csp_violations: CSPViolations) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    context.set_default_timeout(15_000)
    context.add_init_script(_REPORT_VIOLATIONS)
    tab = context.new_page()
    tab.on("console", csp_violations.on_console)
    try:
        yield tab
    finally:
        context.close()
    # Any browser test fails when a page broke the Content-Security-Policy.
    if csp_violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(csp_violations))


class Shots:
    """Numbered full-page screenshots of every page the run visits."""

    def __init__(self, prefix: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.n = 0

    def __call__(self, page: Any, name: str) -> Path:
        self.n += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.n:02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name.removeprefix("test_"))
