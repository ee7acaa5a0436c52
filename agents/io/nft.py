"""Masquerade of forwarded tunnel traffic with nftables, plus IP forwarding.

Every gateway instance owns one ``inet`` table named after it, so several gateways (or tests) in
the same namespace never touch each other's rules and stopping is a single ``delete table``. The
ruleset is sent as JSON on stdin to ``nft -j -f -`` with an argument list: no shell, no string
interpolation into a rule language.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

NFT = "nft"
_TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")


class NftError(RuntimeError):
    pass


def run_nft(commands: list[dict[str, Any]], *, nft: str = NFT) -> None:
    payload = json.dumps({"nftables": commands})
    proc = subprocess.run(
        [nft, "-j", "-f", "-"], input=payload, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise NftError(f"nft failed ({proc.returncode}): {proc.stderr.strip()}")


def masquerade_ruleset(table: str, tun_name: str) -> list[dict[str, Any]]:
    """Masquerade what arrives from the tunnel and leaves through any other interface."""
    if not _TABLE_RE.match(table):
        raise ValueError(f"invalid nftables table name {table!r}")
    base = {"family": "inet", "table": table}
    return [
        {"add": {"table": {"family": "inet", "name": table}}},
        # Flush makes start idempotent after a crash that left the table behind.
        {"flush": {"table": {"family": "inet", "name": table}}},
        {
            "add": {
                "chain": {
                    **base,
                    "name": "postrouting",
                    "type": "nat",
                    "hook": "postrouting",
                    "prio": 100,
                    "policy": "accept",
                }
            }
        },
        {
            "add": {
                "rule": {
                    **base,
                    "chain": "postrouting",
                    "expr": [
                        {
                            "match": {
                                "op": "==",
                                "left": {"meta": {"key": "iifname"}},
                                "right": tun_name,
                            }
                        },
                        {
                            "match": {
                                "op": "!=",
                                "left": {"meta": {"key": "oifname"}},
                                "right": tun_name,
                            }
                        },
                        {"masquerade": None},
                    ],
                }
            }
        },
    ]


class Masquerade:
    """Context-managed masquerade table; ``stop()`` is idempotent."""

    def __init__(self, table: str, tun_name: str, *, nft: str = NFT) -> None:
        self.table = table
        self.tun_name = tun_name
        self.nft = nft
        self.active = False

    def start(self) -> None:
        run_nft(masquerade_ruleset(self.table, self.tun_name), nft=self.nft)
        self.active = True
        log.info("nftables masquerade installed", extra={"table": self.table})

    def stop(self) -> None:
        if not self.active:
            return
        self.active = False
        try:
            run_nft([{"delete": {"table": {"family": "inet", "name": self.table}}}], nft=self.nft)
        except NftError as exc:
            log.warning(
                "nftables table removal failed", extra={"table": self.table, "err": str(exc)}
            )
        else:
            log.info("nftables masquerade removed", extra={"table": self.table})

    def __enter__(self) -> Masquerade:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_PROC_SYS = Path("/proc/sys/net")


def enable_forwarding(ipv6: bool = True) -> None:
    """Turn on routing between interfaces in the current network namespace (sysctls are per-ns)."""
    (_PROC_SYS / "ipv4" / "ip_forward").write_text("1\n")
    if ipv6:
        try:
            (_PROC_SYS / "ipv6" / "conf" / "all" / "forwarding").write_text("1\n")
        except OSError as exc:  # IPv6 disabled in this namespace
            log.warning("ipv6 forwarding not enabled", extra={"err": str(exc)})
