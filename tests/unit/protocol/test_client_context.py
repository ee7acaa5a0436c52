"""The client context's pure parts: remote IP behind trusted proxies, the offline country
lookup, and the gateway choice (gateways.context, gateways.clients.pick_gateway)."""

from __future__ import annotations

import random
import uuid
from ipaddress import ip_address

import pytest

from gateways.clients import pick_gateway
from gateways.models import Gateway

XFF = b"x-forwarded-for"


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    from gateways.context import remote_ip

    assert remote_ip("203.0.113.5", [(XFF, b"198.51.100.1")], []) == ip_address("203.0.113.5")
    assert remote_ip(None, [], []) is None
    assert remote_ip("::ffff:10.0.0.1", [], []) == ip_address("10.0.0.1")


def test_behind_trusted_proxies_the_first_untrusted_hop_from_the_right_counts() -> None:
    from gateways.context import remote_ip

    trusted = ["127.0.0.0/8", "10.0.0.0/8"]
    # client-supplied "198.51.100.1", appended by the edge proxy "203.0.113.9", then an inner one
    headers = [(XFF, b"198.51.100.1, 203.0.113.9, 10.1.2.3")]
    assert remote_ip("127.0.0.1", headers, trusted) == ip_address("203.0.113.9")
    # A peer that is not a trusted proxy: the header is ignored.
    assert remote_ip("192.0.2.7", headers, trusted) == ip_address("192.0.2.7")
    # Garbage stops the walk; the last trusted hop is what is known.
    assert remote_ip("127.0.0.1", [(XFF, b"evil, 10.1.2.3")], trusted) == ip_address("10.1.2.3")
    # Only trusted hops: the leftmost of them.
    assert remote_ip("127.0.0.1", [(XFF, b"10.9.9.9")], trusted) == ip_address("10.9.9.9")
    assert remote_ip("127.0.0.1", [], trusted) == ip_address("127.0.0.1")
    assert remote_ip("127.0.0.1", [(XFF, b"[2001:db8::1]:443")], trusted) == ip_address(
        "2001:db8::1"
    )


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("81.2.69.160", "GB"),
        ("85.214.132.117", "DE"),
        ("8.8.8.8", "US"),
        ("10.0.0.1", None),
        ("100.64.0.1", None),
        ("203.0.113.5", None),
    ],
)
def test_country_comes_from_the_shipped_database(ip: str, country: str | None) -> None:
    from gateways.context import country as lookup

    assert lookup(ip_address(ip)) == country
    assert lookup(None) is None


def _gateways(loads: list[int], version: str = "0.1.3") -> list[Gateway]:
    out = []
    for i, load in enumerate(loads):
        gw = Gateway(id=uuid.uuid4(), name=f"gw{i}", last_seen_version=version)
        gw.load = load  # type: ignore[attr-defined]  # what the load query annotates
        out.append(gw)
    return out


def test_gateway_choice() -> None:
    assert pick_gateway([], client_version="0.1.0") == "offline"
    assert pick_gateway(_gateways([0], "0.2.0"), client_version="0.1.0") == "version_mismatch"
    gws = _gateways([3, 1, 1, 5])
    rng = random.Random(7)
    picks = set()
    for _ in range(50):
        chosen = pick_gateway(gws, client_version="0.1.0", rng=rng)
        assert isinstance(chosen, Gateway)
        picks.add(chosen.pk)
    assert picks == {gws[1].pk, gws[2].pk}  # the least loaded, random between the two
    # A connected gateway wins even when more loaded; a failed one is avoided ...
    assert pick_gateway(gws, client_version="0.1.0", connected=[gws[3].pk]) is gws[3]
    failed = [gws[3].pk, gws[1].pk]
    assert pick_gateway(gws, client_version="0.1.0", connected=[gws[3].pk], failed=failed) is gws[2]
    # ... unless it is the only one left.
    assert pick_gateway(gws[:1], client_version="0.1.0", failed=[gws[0].pk]) is gws[0]
