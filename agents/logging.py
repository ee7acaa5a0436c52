"""Structured logs for the agents: ``key=value`` lines by default, one JSON object per line with
``json=True``. Fields come from ``extra={...}``.

Secrets never reach the output: fields named like a secret (token, private_key, preshared_key,
password, secret, authorization) are replaced by ``***``, and anything that looks like a portal
token (``fzg_<id>_<secret>``) or a ``Bearer`` credential is masked inside messages and values, so a
careless ``log.info("%s", url_with_token)`` still prints nothing usable. Per-packet information is
only ever logged at debug level by the data plane; the default level is info.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from typing import Any, TextIO

SECRET_FIELDS = frozenset(
    {"token", "private_key", "preshared_key", "password", "secret", "authorization", "psk"}
)
MASK = "***"
_TOKEN_RE = re.compile(r"\b(fz[a-z]{0,3})_[0-9A-Za-z]+_[0-9A-Za-z_\-]+")
_BEARER_RE = re.compile(r"(?i)\b(bearer)\s+\S+")
_STD_ATTRS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def redact_text(text: str) -> str:
    """Mask tokens and bearer credentials inside free text."""
    if "_" in text:
        text = _TOKEN_RE.sub(lambda m: f"{m.group(1)}_{MASK}", text)
    if "earer" in text:
        text = _BEARER_RE.sub(lambda m: f"{m.group(1)} {MASK}", text)
    return text


def _value(key: str, value: Any) -> Any:
    if key.lower() in SECRET_FIELDS:
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record, redacted."""
    return {
        k: _value(k, v)
        for k, v in vars(record).items()
        if k not in _STD_ATTRS and not k.startswith("_")
    }


def _kv(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


class KeyValueFormatter(logging.Formatter):
    """``2025-06-01T12:00:00.123Z info agents.gateway.portal: connected gateway_id=...``"""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        ms = int(record.msecs)
        line = (
            f"{ts}.{ms:03d}Z {record.levelname.lower()} {record.name}: "
            f"{redact_text(record.getMessage())}"
        )
        extras = fields(record)
        if extras:
            line += " " + " ".join(f"{k}={_kv(v)}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (unix seconds), level, logger, msg, then the fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        for k, v in fields(record).items():
            doc.setdefault(k, v)
        if record.exc_info:
            doc["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(doc, default=str)


def configure(
    *, json_logs: bool = False, level: str = "info", stream: TextIO | None = None
) -> logging.Handler:
    """Replace the root handlers with one structured handler; returns it."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries that log frames or netlink messages stay quiet unless asked for.
    for noisy in ("pyroute2", "websockets"):
        with contextlib.suppress(Exception):
            logging.getLogger(noisy).setLevel(
                logging.DEBUG if level.lower() == "debug" else logging.WARNING
            )
    return handler
