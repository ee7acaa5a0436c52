"""ETag / If-Match: two scripts that read, change and write the same object cannot overwrite each
other silently. The ETag is a digest of the object's representation; a write with ``If-Match``
that no longer matches is refused with 412 (checked with the row locked, so the check and the write
are one step)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from rest_framework.request import Request

from firezone_site.api.problems import PreconditionFailed


def etag_of(data: Any) -> str:
    raw = json.dumps(data, sort_keys=True, default=str, separators=(",", ":")).encode()
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def check_if_match(request: Request, current: str) -> None:
    header = request.headers.get("If-Match")
    if header is None:
        return
    wanted = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    if "*" in wanted or current in wanted:
        return
    raise PreconditionFailed()
