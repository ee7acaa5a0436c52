"""Strings from agents cannot forge portal log lines or carry terminal escapes (issue 19 part 2)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from firezone_site.logsafe import EscapingFormatter

from .conftest import open_gateway

pytestmark = pytest.mark.django_db(transaction=True)

FORGED = "boom\n2026-12-04 12:00:00,000 ERROR accounts admin signed in\r\x1b[31mred\x1b[0m\u2028x"


def console_formatter() -> logging.Formatter:
    """The formatter of the console handler settings.LOGGING installs on the root logger."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, EscapingFormatter):
            return handler.formatter
    raise AssertionError("settings.LOGGING installed no EscapingFormatter on the root logger")


@pytest.fixture
def portal_log() -> Iterator[io.StringIO]:
    """What the portal's console handler would print, for records of every logger."""
    # Loading the ASGI application runs django.setup(), which re-applies settings.LOGGING (and
    # would drop a handler added before it).
    import firezone_site.asgi  # noqa: F401

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(console_formatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)


async def test_a_gateways_error_reason_is_logged_on_one_line_without_raw_escapes(
    token: str, portal_log: io.StringIO
) -> None:
    gateway, init = await open_gateway(token)
    assert init is not None
    await gateway.send({"type": "error", "code": "bad\ncode\x1b[2J", "reason": FORGED})
    await gateway.send({"type": "heartbeat"})
    await gateway.receive_type("heartbeat_reply")  # frames are handled in order
    await gateway.disconnect()
    lines = [line for line in portal_log.getvalue().splitlines() if "reported" in line]
    assert len(lines) == 1, portal_log.getvalue()
    [line] = lines
    assert "\x1b" not in portal_log.getvalue()
    assert "\r" not in portal_log.getvalue() and "\u2028" not in portal_log.getvalue()
    assert "ERROR accounts admin signed in" in line  # kept, but inside the one line
    assert "boom\\n2026" in line and "\\x1b[31mred" in line and "bad\\ncode\\x1b[2J" in line
    assert not any(
        other.startswith("2026-12-04 12:00:00,000 ERROR")
        for other in portal_log.getvalue().splitlines()
    )


def test_every_record_on_the_console_is_one_line_even_from_other_loggers() -> None:
    formatter = console_formatter()
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Not Found: %s", ("/x\ny\x1b[31m",), None
    )
    text = formatter.format(record)
    assert "\n" not in text and "\x1b" not in text
    assert text.endswith("Not Found: /x\\ny\\x1b[31m")
    # Printable non-ASCII (a user's name) is kept readable.
    named = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("Zoë",), None)
    assert formatter.format(named).endswith("hello Zoë")


def test_a_traceback_stays_readable_below_the_escaped_message() -> None:
    formatter = console_formatter()
    try:
        raise ValueError("inner")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed for %s", ("a\nb",), sys.exc_info()
        )
    text = formatter.format(record)
    first, *rest = text.splitlines()
    assert first.endswith("failed for a\\nb")
    assert rest[0] == "Traceback (most recent call last):"
