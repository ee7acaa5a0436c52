"""`--endpoint` validation of the gateway agent."""

from __future__ import annotations

import pytest

from agents.gateway.portal import ConfigurationError, parse_endpoint


def test_it_accepts_host_port_and_bracketed_ipv6() -> None:
    assert parse_endpoint("gw.example.com:51820") == "gw.example.com:51820"
    assert parse_endpoint("[2001:db8::1]:51820") == "[2001:db8::1]:51820"


@pytest.mark.parametrize("bad", ["gw", "gw:0", "gw:65536", "gw:\u00b2", "gw:\u0661\u0662"])
def test_it_refuses_bad_ports_with_a_clear_error(bad: str) -> None:
    # "\u00b2" passes str.isdigit() but int() refuses it: it once escaped as a bare ValueError.
    with pytest.raises(ConfigurationError, match="expected host:port"):
        parse_endpoint(bad)
