"""The `--static-config` TOML parser (`agents.static_config`), gateway and client formats.

Documented invalid input: `ConfigError`, whose message starts with the source name (the file) so
the operator learns which file and key are wrong; nothing else may escape.
Properties of an accepted config: tunnel addresses lie in the tunnel ranges, keys are 32 bytes,
peers (gateways) are unique, resources stay out of the tunnel ranges, endpoints have a port in
1-65535, and a gateway config installs into the packet filter as the gateway does at start.
Parsing is deterministic (the same text parses to an equal config).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from agents.net.filter import TUNNEL_IPV4, TUNNEL_IPV6, Firewall
from agents.static_config import (
    ClientConfig,
    ConfigError,
    GatewayConfig,
    parse_client_config,
    parse_gateway_config,
)

INVALID: tuple[type[BaseException], ...] = (ConfigError,)
SOURCE = "fuzz.toml"


def reset() -> None:
    """Stateless."""


def _check_gateway(config: GatewayConfig) -> None:
    iface = config.interface
    assert len(iface.private_key) == 32 and 1 <= iface.listen_port <= 65535
    assert iface.ipv4 is not None or iface.ipv6 is not None
    assert iface.ipv4 is None or iface.ipv4 in TUNNEL_IPV4
    assert iface.ipv6 is None or iface.ipv6 in TUNNEL_IPV6
    assert len({p.public_key for p in config.peers}) == len(config.peers)
    fw = Firewall()
    for peer in config.peers:
        assert len(peer.public_key) == 32
        assert peer.preshared_key is None or len(peer.preshared_key) == 32
        assert peer.ipv4 is None or peer.ipv4 in TUNNEL_IPV4
        assert peer.ipv6 is None or peer.ipv6 in TUNNEL_IPV6
        fw.set_peer(peer.public_key, peer.ipv4, peer.ipv6)
        for i, rule in enumerate(peer.resources):
            for net in rule.networks:
                assert not net.overlaps(TUNNEL_IPV4 if net.version == 4 else TUNNEL_IPV6)
            assert (rule.kind == "internet") == (not rule.networks)
            fw.allow(peer.public_key, f"static-{i}", rule, None)


def _check_client(config: ClientConfig) -> None:
    iface = config.interface
    assert len(iface.private_key) == 32
    assert iface.ipv4 is not None or iface.ipv6 is not None
    assert config.gateways
    assert len({g.public_key for g in config.gateways}) == len(config.gateways)
    for gateway in config.gateways:
        assert len(gateway.public_key) == 32
        host, port = gateway.endpoint
        assert host and 1 <= port <= 65535
        assert gateway.resources
        assert gateway.persistent_keepalive is None or 1 <= gateway.persistent_keepalive <= 65535


def one_input(data: bytes) -> None:
    try:
        text = data.decode("utf-8")  # the loader reads files as UTF-8 (a ConfigError otherwise)
    except UnicodeDecodeError:
        return
    try:
        gateway = parse_gateway_config(text, source=SOURCE)
    except ConfigError as exc:
        assert str(exc).startswith(f"{SOURCE}: "), str(exc)
    else:
        _check_gateway(gateway)
        assert parse_gateway_config(text, source=SOURCE) == gateway
    try:
        client = parse_client_config(text, source=SOURCE)
    except ConfigError as exc:
        assert str(exc).startswith(f"{SOURCE}: "), str(exc)
    else:
        _check_client(client)
        assert parse_client_config(text, source=SOURCE) == client


def seeds() -> Iterator[tuple[str, bytes]]:
    examples = Path(__file__).resolve().parents[3] / "docs" / "examples"
    for path in sorted(examples.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        yield f"docs-{path.stem}", text.encode()
        body = "\n".join(line.split("#")[0].rstrip() for line in text.splitlines())
        yield f"docs-{path.stem}-no-comments", body.encode()
    yield (
        "gateway-v6-only",
        (
            b'[interface]\nprivate_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="\n'
            b'ipv6 = "fd00:2021:1111::1"\n\n[[peers]]\n'
            b'public_key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="\n'
            b'ipv6 = "fd00:2021:1111::2"\n'
            b'[[peers.resources]]\nid = "v6"\ntype = "cidr"\naddress = "2001:db8::/64"\n'
            b'filters = [{ protocol = "udp", ports = [53, "1000-2000"] }]\n'
        ),
    )
    yield (
        "client-bracketed-v6-endpoint",
        (
            b'[interface]\nprivate_key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="\n'
            b'ipv4 = "100.64.0.2"\n\n[[gateways]]\n'
            b'public_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="\n'
            b'endpoint = "[2001:db8::1]:51820"\npersistent_keepalive = 0\n'
            b'resources = ["internet"]\n'
        ),
    )
    # Found while writing this target: "²" passes str.isdigit() but int() refuses it, so the port
    # escaped as a bare ValueError instead of a ConfigError naming the key.
    yield (
        "found-endpoint-superscript-port",
        (
            b'[interface]\nprivate_key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="\n'
            b'ipv4 = "100.64.0.2"\n\n[[gateways]]\n'
            b'public_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="\n'
            b'endpoint = "gw.example.com:\xc2\xb2"\nresources = ["10.0.0.0/24"]\n'
        ),
    )
    yield "not-toml", b"[interface\nprivate_key = "
    yield (
        "tunnel-resource",
        (
            b'[interface]\nprivate_key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="\n'
            b'ipv4 = "100.64.0.1"\n[[peers]]\n'
            b'public_key = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="\nipv4 = "100.64.0.2"\n'
            b'[[peers.resources]]\nid = "t"\ntype = "cidr"\naddress = "100.64.0.0/16"\n'
        ),
    )
