"""One-time secrets across a post-redirect-get.

A form that creates a secret (a gateway token, a device's private key, an API token) redirects
after the write, so a reload cannot submit it again. The secret rides from the POST to the page it
redirects to in the signed-in user's session: :func:`stash` puts it there, :func:`pop` takes it out
and the session is saved without it, so the redirected page shows it once and a reload finds
nothing. The session row holds it only between the two requests.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

SESSION_KEY = "fz_once"


def _key(kind: str, ref: object) -> str:
    return f"{kind}:{ref}"


def stash(request: HttpRequest, kind: str, ref: object, payload: dict[str, Any]) -> None:
    """Keep ``payload`` (JSON-serializable) for the next page that pops ``kind``/``ref``."""
    pending = dict(request.session.get(SESSION_KEY, {}))
    pending[_key(kind, ref)] = payload
    request.session[SESSION_KEY] = pending


def pop(request: HttpRequest, kind: str, ref: object) -> dict[str, Any] | None:
    """The payload stashed for ``kind``/``ref``, once; None when it was shown already."""
    pending = dict(request.session.get(SESSION_KEY, {}))
    payload = pending.pop(_key(kind, ref), None)
    if payload is None:
        return None
    if pending:
        request.session[SESSION_KEY] = pending
    else:
        del request.session[SESSION_KEY]
    return dict(payload)
