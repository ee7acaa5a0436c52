"""One-time secrets across a post-redirect-get.

A form that creates a secret (a gateway token, a device's private key, an API token) redirects
after the write, so a reload cannot submit it again. The secret rides from the POST to the page it
redirects to in the signed-in user's session: :func:`stash` puts it there, :func:`pop` takes it out
and the session is saved without it, so the redirected page shows it once and a reload finds
nothing. The session row holds it only between the two requests; one never fetched (the tab was
closed) is not shown after ``MAX_AGE`` and is dropped at the session's next stash or pop.
"""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest

SESSION_KEY = "fz_once"
MAX_AGE = 600.0  # seconds: a redirect is followed at once, this is only the upper bound


def _key(kind: str, ref: object) -> str:
    return f"{kind}:{ref}"


def _fresh(request: HttpRequest, now: float) -> dict[str, Any]:
    pending = request.session.get(SESSION_KEY, {})
    return {k: v for k, v in pending.items() if now - float(v.get("at", 0)) <= MAX_AGE}


def _save(request: HttpRequest, pending: dict[str, Any]) -> None:
    if pending:
        request.session[SESSION_KEY] = pending
    elif SESSION_KEY in request.session:
        del request.session[SESSION_KEY]


def stash(
    request: HttpRequest,
    kind: str,
    ref: object,
    payload: dict[str, Any],
    *,
    now: float | None = None,
) -> None:
    """Keep ``payload`` (JSON-serializable) for the next page that pops ``kind``/``ref``."""
    at = time.time() if now is None else now
    pending = _fresh(request, at)
    pending[_key(kind, ref)] = {"at": at, "payload": payload}
    _save(request, pending)


def pop(
    request: HttpRequest, kind: str, ref: object, *, now: float | None = None
) -> dict[str, Any] | None:
    """The payload stashed for ``kind``/``ref``, once; None when it was shown already (or was
    never fetched within ``MAX_AGE``)."""
    at = time.time() if now is None else now
    stale = SESSION_KEY in request.session
    pending = _fresh(request, at)
    entry = pending.pop(_key(kind, ref), None)
    if entry is not None or stale:
        _save(request, pending)
    return None if entry is None else dict(entry["payload"])
