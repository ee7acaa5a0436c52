"""Swagger UI at /api/docs/ renders in Chromium under the portal's strict CSP, from local files."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CSPViolations, Shots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_renders_the_api_under_the_policy(
    page: Any, live_server: Any, csp_violations: CSPViolations, shots: Shots
) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = page.goto(f"{live_server.url}/api/docs/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.wait_for_selector(".swagger-ui .info .title:has-text('Firezone-py API')")
    page.wait_for_selector(".opblock-tag-section")
    assert page.locator(".opblock-tag").count() >= 10  # actors, groups, ... one per resource
    page.wait_for_selector(".opblock-summary-path[data-path='/api/v1/sites/{id}']")
    assert page.locator("button.authorize").count() == 1  # the bearer scheme is offered
    shots(page, "swagger-ui")
    assert all(url.startswith(live_server.url) for url in requested), requested
    assert csp_violations == []
