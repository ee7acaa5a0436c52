"""Content-Security-Policy: a strict header on every page, and templates that need nothing more."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

TEMPLATES = Path(__file__).resolve().parents[3] / "templates"
# What a strict policy blocks: inline <script>/<style>, style attributes, on* handlers,
# javascript: URLs, and htmx features that need eval (hx-on, hx-vars, js: values).
INLINE = re.compile(
    r"<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=|javascript:|hx-on|hx-vars|js:",
    re.IGNORECASE,
)


def directives(header: str) -> dict[str, str]:
    parts = (d.strip().split(None, 1) for d in header.split(";") if d.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in parts}


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/sign-in/", "/django-admin/login/", "/healthz"])
def test_anonymous_pages_send_the_strict_policy(path: str) -> None:
    response = Client().get(path)
    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'" and policy["base-uri"] == "'none'"
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]


def test_a_signed_in_page_sends_it_too(alice_client: Client, charlie_client: Client) -> None:
    response = alice_client.get("/")
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    # Another account's object: a 404, still under the policy.
    other: Any = charlie_client.get("/sites/00000000-0000-0000-0000-000000000000/")
    assert other.status_code == 404
    assert "default-src 'self'" in other["Content-Security-Policy"]


def test_no_template_has_inline_script_style_or_handlers() -> None:
    found = [
        f"{path.relative_to(TEMPLATES)}: {match.group(0)!r}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for match in INLINE.finditer(path.read_text())
    ]
    assert found == []
    assert INLINE.search('<div style="x">') and INLINE.search("<script>alert(1)</script>")
    assert not INLINE.search('<script src="/static/js/app.js" defer></script>')
