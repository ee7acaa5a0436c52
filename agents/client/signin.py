"""``firezone-client sign-in``: sign a headless client in through a browser.

Like the OAuth device authorization grant (RFC 8628): ask the portal for a device code and a
short user code, print the URL and the code, poll the portal until someone signed in to the
portal confirms the code (or it expires), then store the client session token in a file only the
owner can read (mode 0600). Standard library only: agents never import Django.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "firezone" / "client-token"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firezone-client sign-in", description="Sign this client in through a browser"
    )
    p.add_argument("--portal-url", required=True, help="e.g. https://portal.example.com")
    p.add_argument("--token-file", type=Path, default=None, help="where to store the token")
    p.add_argument("--name", default=socket.gethostname(), help="shown on the confirm page")
    return p


class SignInError(Exception):
    pass


def _post(url: str, data: dict[str, str]) -> tuple[int, dict[str, Any]]:
    body = urllib.parse.urlencode(data).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SignInError(f"cannot reach the portal at {url}: {exc}") from exc


def write_token(path: Path, token: str) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def sign_in(
    portal_url: str,
    token_file: Path,
    *,
    name: str = "",
    out: TextIO = sys.stdout,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    base = portal_url.rstrip("/")
    status, start = _post(base + "/api/client/device-code", {"client_name": name})
    if status != 200 or "device_code" not in start:
        raise SignInError(f"the portal refused to start a sign-in (HTTP {status})")
    print(f"To sign in, open {start['verification_uri_complete']}", file=out)
    print(f"and confirm the code {start['user_code']}", file=out, flush=True)
    interval = float(start.get("interval", 5))
    deadline = clock() + float(start.get("expires_in", 600))
    while clock() < deadline:
        sleep(interval)
        status, answer = _post(
            base + "/api/client/token",
            {"grant_type": DEVICE_GRANT, "device_code": start["device_code"]},
        )
        if status == 200 and answer.get("access_token"):
            write_token(token_file, str(answer["access_token"]))
            print(f"Signed in. Token stored in {token_file}", file=out, flush=True)
            return
        error = answer.get("error", f"HTTP {status}")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += 5
            continue
        if error == "access_denied":
            raise SignInError("the sign-in was denied")
        if error == "expired_token":
            break
        raise SignInError(f"the portal refused the sign-in ({error})")
    raise SignInError("the code expired before anyone confirmed it; run sign-in again")


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        sign_in(args.portal_url, args.token_file or default_token_file(), name=args.name)
    except SignInError as exc:
        print(f"firezone-client sign-in: {exc}", file=sys.stderr)
        return 1
    return 0
