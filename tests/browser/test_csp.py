"""The Content-Security-Policy holds in Chromium, and the suite's violation check can fail."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CSPViolations
from .test_admin_workflow import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_pages_load_their_scripts_and_styles_under_the_policy(
    page: Any, live_server: Any, alice: Any, csp_violations: CSPViolations
) -> None:
    response = page.goto(f"{live_server.url}/sign-in/")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    sign_in(page, live_server.url, "acme/alice@acme.test")
    page.wait_for_selector("main h1")
    # The static stylesheet applied and htmx ran (it boosts the sidebar links).
    assert page.evaluate("getComputedStyle(document.querySelector('nav.sidebar')).display") != ""
    assert page.evaluate("typeof window.htmx") == "object"
    page.click("nav.sidebar >> text=Sites")
    page.wait_for_selector("main h1:text-is('Sites')")
    assert csp_violations == []


def test_an_inline_script_or_style_is_blocked_and_reported(
    page: Any, live_server: Any, csp_violations: CSPViolations
) -> None:
    page.goto(f"{live_server.url}/sign-in/")
    page.evaluate(
        """() => {
          const s = document.createElement("script");
          s.textContent = "window.injected = true";
          document.head.appendChild(s);
          const st = document.createElement("style");
          st.textContent = "body { background: red }";
          document.head.appendChild(st);
        }"""
    )
    page.wait_for_function("() => true")
    page.wait_for_timeout(300)
    assert page.evaluate("window.injected === undefined")
    assert any("script-src" in line for line in csp_violations), csp_violations
    assert any("style-src" in line for line in csp_violations), csp_violations
    csp_violations.clear()  # seen and expected: the fixture must not fail this test
