"""A dynamic client's real context: where it connects from and in which country that is.

Pure functions (no database): the consumer passes the ASGI scope's peer address and headers, the
services turn the result into a :class:`policies.evaluation.ClientContext`.

Remote IP: the websocket peer. When the peer is one of ``settings.FZ_TRUSTED_PROXIES`` (CIDRs of
the reverse proxies in front of the portal), ``X-Forwarded-For`` is read from the right and the
first hop that is not a trusted proxy is the client (a client can prepend anything it likes to
the header; only what the trusted proxies appended is believed). With ``serve --proxy-headers``
daphne has already put the header's address in the scope; then no proxy is configured here and
the scope's address is taken as it is (docs/deploy.md).

Country: ISO 3166-1 alpha-2 from the ``iptocc`` package, whose database ships inside the wheel
(no download at run time); private, shared and reserved addresses have none.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

import iptocc

IPAddress = IPv4Address | IPv6Address


def _parse_ip(value: str) -> IPAddress | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "198.51.100.1:443"
        value = value.split(":", 1)[0]
    try:
        parsed = ip_address(value)
    except ValueError:
        return None
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


@functools.lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(p, strict=False) for p in proxies)


def _trusted(ip: IPAddress, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


def remote_ip(
    peer: str | None, headers: Iterable[tuple[bytes, bytes]], trusted_proxies: Sequence[str]
) -> IPAddress | None:
    """The client's address: the peer, or behind trusted proxies the first untrusted hop of
    ``X-Forwarded-For`` counted from the right."""
    client = _parse_ip(peer) if peer else None
    if client is None or not trusted_proxies:
        return client
    networks = _networks(tuple(trusted_proxies))
    if not _trusted(client, networks):
        return client
    hops: list[str] = []
    for key, value in headers:
        if key.lower() == b"x-forwarded-for":
            hops += value.decode("latin-1").split(",")
    for hop in reversed(hops):
        parsed = _parse_ip(hop)
        if parsed is None:
            break  # garbage from the client side of the chain: believe nothing beyond it
        if not _trusted(parsed, networks):
            return parsed
        client = parsed
    return client


def country(ip: IPAddress | None) -> str | None:
    """ISO 3166-1 alpha-2 country of a public address (upper case), or None."""
    if ip is None or not ip.is_global:
        return None
    code = iptocc.country_code(str(ip))
    return code.upper() if isinstance(code, str) and len(code) == 2 else None
