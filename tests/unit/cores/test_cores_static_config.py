"""The --static-config TOML format."""

from __future__ import annotations

import base64
import contextlib
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.net.filter import Filter, PortRange, ResourceRule
from agents.static_config import (
    DEFAULT_LISTEN_PORT,
    ConfigError,
    load_client_config,
    load_gateway_config,
    parse_client_config,
    parse_gateway_config,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "docs" / "examples"
K1 = base64.b64encode(b"\x01" * 32).decode()
K2 = base64.b64encode(b"\x02" * 32).decode()
K3 = base64.b64encode(b"\x03" * 32).decode()

GATEWAY = f"""
[interface]
private_key = "{K1}"
ipv4 = "100.64.0.1"

[[peers]]
public_key = "{K2}"
ipv4 = "100.64.0.2"
ipv6 = "fd00:2021:1111::2"

[[peers.resources]]
id = "web"
type = "cidr"
address = "10.0.0.0/24"
filters = [{{ protocol = "tcp", ports = ["443", "1000-2000", 22] }}, {{ protocol = "icmp" }}]
"""

CLIENT = f"""
[interface]
private_key = "{K2}"
ipv4 = "100.64.0.2"

[[gateways]]
public_key = "{K1}"
endpoint = "gw.example.com:51820"
resources = ["10.0.0.0/24", "192.168.1.5", "2001:db8::/64"]
"""


def test_the_example_files_parse() -> None:
    gw = load_gateway_config(EXAMPLES / "gateway.toml")
    client = load_client_config(EXAMPLES / "client.toml")
    assert gw.interface.listen_port == 51820
    assert [r.kind for r in gw.peers[0].resources] == ["cidr", "ip", "internet"]
    # The examples pair up: the client's gateway key is the gateway's, and vice versa.
    from agents.wireguard import public_key

    assert client.gateways[0].public_key == public_key(gw.interface.private_key)
    assert gw.peers[0].public_key == public_key(client.interface.private_key)
    assert client.interface.ipv4 == gw.peers[0].ipv4


def test_it_parses_a_gateway_config() -> None:
    cfg = parse_gateway_config(GATEWAY)
    assert cfg.interface.private_key == b"\x01" * 32
    assert cfg.interface.listen_port == DEFAULT_LISTEN_PORT
    assert cfg.interface.ipv4 == IPv4Address("100.64.0.1") and cfg.interface.ipv6 is None
    (peer,) = cfg.peers
    assert peer.public_key == b"\x02" * 32 and peer.preshared_key is None
    assert peer.ipv6 == IPv6Address("fd00:2021:1111::2")
    assert peer.resources == (
        ResourceRule(
            "web",
            "cidr",
            (ip_network("10.0.0.0/24"),),
            (
                Filter("tcp", (PortRange(443, 443), PortRange(1000, 2000), PortRange(22, 22))),
                Filter("icmp"),
            ),
        ),
    )


def test_it_parses_a_client_config() -> None:
    cfg = parse_client_config(CLIENT)
    (gw,) = cfg.gateways
    assert gw.endpoint == ("gw.example.com", 51820)
    assert gw.persistent_keepalive == 25
    assert gw.resources == (
        ip_network("10.0.0.0/24"),
        ip_network("192.168.1.5/32"),
        ip_network("2001:db8::/64"),
    )


def test_internet_in_client_resources_routes_everything() -> None:
    cfg = parse_client_config(CLIENT.replace('"2001:db8::/64"', '"internet"'))
    assert ip_network("0.0.0.0/0") in cfg.gateways[0].resources
    assert ip_network("::/0") in cfg.gateways[0].resources


def test_ipv6_endpoints_need_brackets() -> None:
    cfg = parse_client_config(CLIENT.replace("gw.example.com:51820", "[2001:db8::1]:51820"))
    assert cfg.gateways[0].endpoint == ("2001:db8::1", 51820)
    with pytest.raises(ConfigError, match=r"gateways\[0\]\.endpoint"):
        parse_client_config(CLIENT.replace("gw.example.com:51820", "2001:db8::1:51820"))


def test_secrets_are_not_in_the_repr() -> None:
    cfg = parse_gateway_config(
        GATEWAY.replace("[[peers]]\n", f'[[peers]]\npreshared_key = "{K3}"\n')
    )
    assert cfg.peers[0].preshared_key == b"\x03" * 32
    assert repr(b"\x01" * 32) not in repr(cfg)
    assert repr(b"\x03" * 32) not in repr(cfg)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (f'private_key = "{K1}"', 'private_key = "not base64!"', r"interface\.private_key"),
        (f'private_key = "{K1}"', 'private_key = "AAAA"', r"interface\.private_key.*32 bytes"),
        (f'private_key = "{K1}"', "", r"interface\.private_key: missing"),
        ('ipv4 = "100.64.0.1"', 'ipv4 = "10.0.0.1"', r"interface\.ipv4.*tunnel range"),
        ('ipv4 = "100.64.0.1"', 'ipv4 = "nope"', r"interface\.ipv4"),
        ('ipv4 = "100.64.0.1"', "listen_port = 70000", r"interface\.listen_port"),
        ('ipv4 = "100.64.0.1"', 'ipv4 = "100.64.0.1"\nlisten_port = true', r"listen_port"),
        ('ipv4 = "100.64.0.1"', 'ipv4 = "100.64.0.1"\nmtu = 1400', r"interface\.mtu: unknown key"),
        ('ipv4 = "100.64.0.2"', 'ipv4 = "100.64.0.1"', r"peers\[0\]\.ipv4.*already used"),
        ('ipv6 = "fd00:2021:1111::2"', 'ipv6 = "2001:db8::2"', r"peers\[0\]\.ipv6.*tunnel range"),
        ('ipv6 = "fd00:2021:1111::2"', 'ipv6 = "100.64.0.3"', r"peers\[0\]\.ipv6.*not an IPv6"),
        (f'public_key = "{K2}"', f'public_key = "{K2}"\nkeepalive = 5', r"peers\[0\]\.keepalive"),
        ('type = "cidr"', 'type = "dns"', r"peers\[0\]\.resources\[0\]\.type"),
        ('type = "cidr"', 'type = "vpn"', r"resources\[0\]\.type"),
        ('"10.0.0.0/24"', '"10.0.0.1/24"', r"resources\[0\]\.address.*host bits"),
        ('"10.0.0.0/24"', '"0.0.0.0/0"', r"resources\[0\]\.address.*internet"),
        ('"10.0.0.0/24"', '"127.0.0.0/8"', r"resources\[0\]\.address.*loopback"),
        ('"10.0.0.0/24"', '"100.64.1.0/24"', r"resources\[0\]\.address.*tunnel"),
        ('protocol = "tcp"', 'protocol = "sctp"', r"filters\[0\]\.protocol"),
        ('"1000-2000"', '"2000-1000"', r"filters\[0\]\.ports\[1\]"),
        ('{ protocol = "icmp" }', '{ protocol = "icmp", ports = ["1"] }', r"filters\[1\]\.ports"),
        ('id = "web"', 'id = ""', r"resources\[0\]\.id"),
        ("[[peers]]", "[[peers]]\n[[peers.x]]", r"peers\[0\]\.x: unknown key"),
    ],
)
def test_gateway_errors_name_the_offending_key(old: str, new: str, key: str) -> None:
    assert old in GATEWAY
    with pytest.raises(ConfigError, match=key):
        parse_gateway_config(GATEWAY.replace(old, new, 1), source="gw.toml")


def test_errors_name_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^gw\.toml: interface\.ipv4"):
        parse_gateway_config(GATEWAY.replace("100.64.0.1", "1.2.3.4"), source="gw.toml")
    with pytest.raises(ConfigError, match=r"^gw\.toml: invalid TOML"):
        parse_gateway_config("[interface", source="gw.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_gateway_config("/nonexistent/gateway.toml")


def test_duplicate_peers_and_resources_are_refused() -> None:
    second_peer = (
        GATEWAY.split("[[peers]]")[1]
        .replace("100.64.0.2", "100.64.0.3")
        .replace("fd00:2021:1111::2", "fd00:2021:1111::3")
    )
    with pytest.raises(ConfigError, match=r"peers\[1\]\.public_key: same key as peers\[0\]"):
        parse_gateway_config(GATEWAY + "[[peers]]" + second_peer)
    other_key = second_peer.replace(K2, K3)
    cfg = parse_gateway_config(GATEWAY + "[[peers]]" + other_key)  # same resource, same definition
    assert cfg.peers[0].resources == cfg.peers[1].resources
    conflicting = other_key.replace("10.0.0.0/24", "10.9.0.0/24")
    with pytest.raises(ConfigError, match=r"peers\[1\]\.resources\[0\].*defined differently"):
        parse_gateway_config(GATEWAY + "[[peers]]" + conflicting)
    dup_res = GATEWAY + GATEWAY.split("[interface]")[1].split("[[peers.resources]]")[1].join(
        ["[[peers.resources]]", ""]
    )
    with pytest.raises(ConfigError, match=r"resources\[1\]\.id: duplicate"):
        parse_gateway_config(dup_res)


def test_peers_need_a_tunnel_address() -> None:
    text = GATEWAY.replace('ipv4 = "100.64.0.2"\n', "").replace('ipv6 = "fd00:2021:1111::2"\n', "")
    with pytest.raises(ConfigError, match=r"peers\[0\]: needs a tunnel address"):
        parse_gateway_config(text)


def test_internet_resource_has_no_address() -> None:
    ok = GATEWAY.replace('type = "cidr"\naddress = "10.0.0.0/24"', 'type = "internet"')
    assert parse_gateway_config(ok).peers[0].resources[0].networks == ()
    with pytest.raises(ConfigError, match=r"resources\[0\]\.address"):
        parse_gateway_config(GATEWAY.replace('type = "cidr"', 'type = "internet"'))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            'endpoint = "gw.example.com:51820"',
            'endpoint = "gw.example.com"',
            r"gateways\[0\]\.endpoint",
        ),
        ('endpoint = "gw.example.com:51820"', 'endpoint = "gw:0"', r"gateways\[0\]\.endpoint"),
        # Found by fuzzing: a non-ASCII digit passed isdigit() and crashed int() (ValueError).
        ('endpoint = "gw.example.com:51820"', 'endpoint = "gw:\u00b2"', r"gateways\[0\]\.endpoint"),
        ('endpoint = "gw.example.com:51820"', "", r"gateways\[0\]\.endpoint: missing"),
        ('"192.168.1.5"', '"192.168.1.500"', r"gateways\[0\]\.resources\[1\]"),
        ('"192.168.1.5"', "5", r"gateways\[0\]\.resources\[1\]: must be a string"),
        (
            'resources = ["10.0.0.0/24", "192.168.1.5", "2001:db8::/64"]',
            "resources = []",
            r"resources: must be a non-empty",
        ),
        (
            f'public_key = "{K1}"',
            f'public_key = "{K1}"\npersistent_keepalive = -1',
            "persistent_keepalive",
        ),
        (
            'ipv4 = "100.64.0.2"',
            'ipv4 = "100.64.0.2"\nlisten_port = 1',
            r"interface\.listen_port: unknown",
        ),
    ],
)
def test_client_errors_name_the_offending_key(old: str, new: str, key: str) -> None:
    assert old in CLIENT
    with pytest.raises(ConfigError, match=key):
        parse_client_config(CLIENT.replace(old, new, 1))


def test_client_needs_a_gateway() -> None:
    with pytest.raises(ConfigError, match="gateways: at least one"):
        parse_client_config(CLIENT.split("[[gateways]]")[0])


def test_zero_keepalive_means_off() -> None:
    text = CLIENT.replace(f'public_key = "{K1}"', f'public_key = "{K1}"\npersistent_keepalive = 0')
    assert parse_client_config(text).gateways[0].persistent_keepalive is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_raises_only_config_error(text: str) -> None:
    for parser in (parse_gateway_config, parse_client_config):
        with contextlib.suppress(ConfigError):
            parser(text)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, len(GATEWAY) - 1), st.text(max_size=5))
def test_mutated_configs_raise_only_config_error(pos: int, insert: str) -> None:
    for parser, base in ((parse_gateway_config, GATEWAY), (parse_client_config, CLIENT)):
        text = base[:pos] + insert + base[pos + 1 :]
        with contextlib.suppress(ConfigError):
            parser(text)
