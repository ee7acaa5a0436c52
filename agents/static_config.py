"""The `--static-config FILE` format (TOML) for the gateway and the client.

Gateway (see docs/examples/gateway.toml)::

    [interface]
    private_key = "<base64>"
    listen_port = 51820                # optional, default 51820
    ipv4 = "100.64.0.1"                # tunnel addresses (at least one)
    ipv6 = "fd00:2021:1111::1"

    [[peers]]
    public_key = "<base64>"
    preshared_key = "<base64>"         # optional
    ipv4 = "100.64.0.2"                # the peer's tunnel addresses (at least one)
    ipv6 = "fd00:2021:1111::2"

    [[peers.resources]]
    id = "intranet"
    type = "cidr"                      # cidr | ip | internet
    address = "10.0.0.0/24"            # not for internet
    filters = [{ protocol = "tcp", ports = ["443", "8000-8080"] }, { protocol = "icmp" }]

Client (see docs/examples/client.toml)::

    [interface]
    private_key = "<base64>"
    ipv4 = "100.64.0.2"
    ipv6 = "fd00:2021:1111::2"

    [[gateways]]
    public_key = "<base64>"
    endpoint = "gateway.example.com:51820"   # host:port, [v6]:port; names are resolved by the CLI
    preshared_key = "<base64>"               # optional
    persistent_keepalive = 25                # optional, seconds, 0 = off (default 25)
    resources = ["10.0.0.0/24", "192.168.1.10", "internet"]

Parsing produces frozen dataclasses. Every problem raises `ConfigError` whose message names the
file and the offending key, e.g. ``gateway.toml: peers[0].resources[1].address: ...``. Unknown keys
are errors too (a typo must not silently drop a filter). Tunnel addresses must lie in the tunnel
ranges 100.64.0.0/11 and fd00:2021:1111::/107; resources may not be 0/0, loopback or inside the
tunnel ranges (like the portal's validation). One resource id used by several peers must be
defined identically (the gateway's firewall shares resources by id).
"""

from __future__ import annotations

import base64
import binascii
import tomllib
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import Any, NoReturn

from agents.net.filter import TUNNEL_IPV4, TUNNEL_IPV6, Filter, PortRange, ResourceRule

DEFAULT_LISTEN_PORT = 51820
DEFAULT_PERSISTENT_KEEPALIVE = 25


class ConfigError(ValueError):
    """The static config is invalid; the message names the file and the offending key."""


@dataclass(frozen=True, slots=True)
class GatewayInterface:
    private_key: bytes = field(repr=False)
    listen_port: int
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None


@dataclass(frozen=True, slots=True)
class StaticPeer:
    public_key: bytes
    preshared_key: bytes | None = field(repr=False)
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None
    resources: tuple[ResourceRule, ...]


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    interface: GatewayInterface
    peers: tuple[StaticPeer, ...]


@dataclass(frozen=True, slots=True)
class ClientInterface:
    private_key: bytes = field(repr=False)
    ipv4: IPv4Address | None
    ipv6: IPv6Address | None


@dataclass(frozen=True, slots=True)
class ClientGateway:
    public_key: bytes
    endpoint: tuple[str, int]  # host may be a DNS name; the IO layer resolves it
    preshared_key: bytes | None = field(repr=False)
    persistent_keepalive: int | None
    resources: tuple[IPv4Network | IPv6Network, ...]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    interface: ClientInterface
    gateways: tuple[ClientGateway, ...]


# --- entry points ---------------------------------------------------------------------------------


def load_gateway_config(path: str | Path) -> GatewayConfig:
    return parse_gateway_config(_read(path), source=str(path))


def load_client_config(path: str | Path) -> ClientConfig:
    return parse_client_config(_read(path), source=str(path))


def parse_gateway_config(text: str, *, source: str = "<config>") -> GatewayConfig:
    doc = _Doc(source)
    root = doc.toml(text)
    doc.only(root, "", {"interface", "peers"})
    iface = doc.table(root, "interface", "interface")
    doc.only(iface, "interface", {"private_key", "listen_port", "ipv4", "ipv6"})
    interface = GatewayInterface(
        private_key=doc.required_key(iface, "private_key", "interface.private_key"),
        listen_port=doc.integer(iface, "listen_port", "interface", 1, 65535, DEFAULT_LISTEN_PORT),
        ipv4=doc.tunnel_v4(iface, "interface"),
        ipv6=doc.tunnel_v6(iface, "interface"),
    )
    doc.need_an_address(interface.ipv4, interface.ipv6, "interface")
    peers: list[StaticPeer] = []
    seen_keys: dict[bytes, str] = {}
    seen_addrs: dict[IPv4Address | IPv6Address, str] = {}
    for a in (interface.ipv4, interface.ipv6):
        if a is not None:
            seen_addrs[a] = "interface"
    resources: dict[str, tuple[ResourceRule, str]] = {}
    for i, raw in enumerate(doc.array_of_tables(root, "peers", "peers")):
        where = f"peers[{i}]"
        doc.only(raw, where, {"public_key", "preshared_key", "ipv4", "ipv6", "resources"})
        public_key = doc.required_key(raw, "public_key", f"{where}.public_key")
        if public_key in seen_keys:
            doc.fail(f"{where}.public_key", f"same key as {seen_keys[public_key]}")
        seen_keys[public_key] = where
        ipv4, ipv6 = doc.tunnel_v4(raw, where), doc.tunnel_v6(raw, where)
        doc.need_an_address(ipv4, ipv6, where)
        for name, addr in (("ipv4", ipv4), ("ipv6", ipv6)):
            if addr is None:
                continue
            if addr in seen_addrs:
                doc.fail(f"{where}.{name}", f"{addr} is already used by {seen_addrs[addr]}")
            seen_addrs[addr] = where
        rules: list[ResourceRule] = []
        ids: set[str] = set()
        for j, rraw in enumerate(doc.array_of_tables(raw, "resources", f"{where}.resources")):
            rwhere = f"{where}.resources[{j}]"
            rule = doc.resource(rraw, rwhere)
            if rule.resource_id in ids:
                doc.fail(f"{rwhere}.id", f"duplicate resource id {rule.resource_id!r}")
            ids.add(rule.resource_id)
            known = resources.get(rule.resource_id)
            if known is not None and known[0] != rule:
                doc.fail(
                    rwhere,
                    f"resource {rule.resource_id!r} is defined differently in {known[1]}; "
                    "a resource id must mean the same resource for every peer",
                )
            resources[rule.resource_id] = (rule, rwhere)
            rules.append(rule)
        peers.append(
            StaticPeer(
                public_key=public_key,
                preshared_key=doc.key(raw, "preshared_key", f"{where}.preshared_key"),
                ipv4=ipv4,
                ipv6=ipv6,
                resources=tuple(rules),
            )
        )
    return GatewayConfig(interface=interface, peers=tuple(peers))


def parse_client_config(text: str, *, source: str = "<config>") -> ClientConfig:
    doc = _Doc(source)
    root = doc.toml(text)
    doc.only(root, "", {"interface", "gateways"})
    iface = doc.table(root, "interface", "interface")
    doc.only(iface, "interface", {"private_key", "ipv4", "ipv6"})
    interface = ClientInterface(
        private_key=doc.required_key(iface, "private_key", "interface.private_key"),
        ipv4=doc.tunnel_v4(iface, "interface"),
        ipv6=doc.tunnel_v6(iface, "interface"),
    )
    doc.need_an_address(interface.ipv4, interface.ipv6, "interface")
    gateways: list[ClientGateway] = []
    seen: dict[bytes, str] = {}
    raw_gateways = doc.array_of_tables(root, "gateways", "gateways")
    if not raw_gateways:
        doc.fail("gateways", "at least one [[gateways]] entry is required")
    for i, raw in enumerate(raw_gateways):
        where = f"gateways[{i}]"
        doc.only(
            raw,
            where,
            {"public_key", "endpoint", "preshared_key", "persistent_keepalive", "resources"},
        )
        public_key = doc.required_key(raw, "public_key", f"{where}.public_key")
        if public_key in seen:
            doc.fail(f"{where}.public_key", f"same key as {seen[public_key]}")
        seen[public_key] = where
        keepalive = doc.integer(
            raw, "persistent_keepalive", where, 0, 65535, DEFAULT_PERSISTENT_KEEPALIVE
        )
        gateways.append(
            ClientGateway(
                public_key=public_key,
                endpoint=doc.endpoint(raw, f"{where}.endpoint"),
                preshared_key=doc.key(raw, "preshared_key", f"{where}.preshared_key"),
                persistent_keepalive=keepalive or None,
                resources=doc.client_resources(raw, f"{where}.resources"),
            )
        )
    return ClientConfig(interface=interface, gateways=tuple(gateways))


# --- helpers --------------------------------------------------------------------------------------


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the static config: {exc}") from exc


def _decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also accepts e.g. superscripts, which int() refuses."""
    return text.isascii() and text.isdigit()


_FORBIDDEN_RESOURCE_NETS = (TUNNEL_IPV4, TUNNEL_IPV6)


class _Doc:
    """Typed accessors over the parsed TOML that fail with the file and key in the message."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> NoReturn:
        prefix = f"{self.source}: {where}: " if where else f"{self.source}: "
        raise ConfigError(prefix + message)

    def toml(self, text: str) -> dict[str, Any]:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            self.fail("", f"invalid TOML: {exc}")

    def only(self, table: dict[str, Any], where: str, allowed: set[str]) -> None:
        for name in table:
            if name not in allowed:
                key = f"{where}.{name}" if where else name
                self.fail(key, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def table(self, parent: dict[str, Any], name: str, where: str) -> dict[str, Any]:
        value = parent.get(name)
        if value is None:
            self.fail(where, f"missing [{where}] table")
        if not isinstance(value, dict):
            self.fail(where, "must be a table")
        return value

    def array_of_tables(
        self, parent: dict[str, Any], name: str, where: str
    ) -> list[dict[str, Any]]:
        value = parent.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.fail(where, "must be an array of tables ([[...]] entries)")
        return value

    def string(self, parent: dict[str, Any], name: str, where: str, required: bool = True) -> str:
        value = parent.get(name)
        if value is None:
            if required:
                self.fail(where, "missing")
            return ""
        if not isinstance(value, str):
            self.fail(where, f"must be a string, not {type(value).__name__}")
        return value

    def integer(
        self, parent: dict[str, Any], name: str, where: str, lo: int, hi: int, default: int
    ) -> int:
        value = parent.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(f"{where}.{name}", f"must be an integer from {lo} to {hi}, got {value!r}")
        return value

    def required_key(self, parent: dict[str, Any], name: str, where: str) -> bytes:
        key = self.key(parent, name, where, required=True)
        assert key is not None  # `key` failed otherwise
        return key

    def key(
        self, parent: dict[str, Any], name: str, where: str, required: bool = False
    ) -> bytes | None:
        text = self.string(parent, name, where, required)
        if not text:
            if required:
                self.fail(where, "must not be empty")
            return None
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            self.fail(where, "must be base64 (as printed by `wg genkey` / `wg pubkey`)")
        if len(raw) != 32:
            self.fail(where, f"must decode to 32 bytes, got {len(raw)}")
        return raw

    def tunnel_v4(self, parent: dict[str, Any], where: str) -> IPv4Address | None:
        text = self.string(parent, "ipv4", f"{where}.ipv4", required=False)
        if not text:
            return None
        try:
            addr = IPv4Address(text)
        except ValueError:
            self.fail(f"{where}.ipv4", f"{text!r} is not an IPv4 address")
        if addr not in TUNNEL_IPV4:
            self.fail(f"{where}.ipv4", f"{addr} is outside the tunnel range {TUNNEL_IPV4}")
        return addr

    def tunnel_v6(self, parent: dict[str, Any], where: str) -> IPv6Address | None:
        text = self.string(parent, "ipv6", f"{where}.ipv6", required=False)
        if not text:
            return None
        try:
            addr = IPv6Address(text)
        except ValueError:
            self.fail(f"{where}.ipv6", f"{text!r} is not an IPv6 address")
        if addr not in TUNNEL_IPV6:
            self.fail(f"{where}.ipv6", f"{addr} is outside the tunnel range {TUNNEL_IPV6}")
        return addr

    def need_an_address(self, ipv4: object, ipv6: object, where: str) -> None:
        if ipv4 is None and ipv6 is None:
            self.fail(where, "needs a tunnel address: ipv4, ipv6 or both")

    def network(self, text: str, kind: str, where: str) -> IPv4Network | IPv6Network:
        try:
            net = ip_network(ip_address(text)) if kind == "ip" else ip_network(text, strict=True)
        except ValueError as exc:
            what = "an IP address" if kind == "ip" else "a CIDR with no host bits set"
            self.fail(where, f"{text!r} is not {what} ({exc})")
        if net.prefixlen == 0:
            self.fail(where, f'{net} would be everything: use type = "internet"')
        if net.is_loopback:
            self.fail(where, f"{net} is a loopback network")
        for reserved in _FORBIDDEN_RESOURCE_NETS:
            if net.version == reserved.version and net.subnet_of(reserved):  # type: ignore[arg-type]
                self.fail(where, f"{net} is inside the reserved tunnel range {reserved}")
        return net

    def resource(self, raw: dict[str, Any], where: str) -> ResourceRule:
        self.only(raw, where, {"id", "type", "address", "filters"})
        rid = self.string(raw, "id", f"{where}.id")
        if not rid.strip():
            self.fail(f"{where}.id", "must not be empty")
        kind = self.string(raw, "type", f"{where}.type")
        if kind == "dns":
            self.fail(f"{where}.type", "dns resources need the portal; use cidr or ip here")
        if kind not in ("cidr", "ip", "internet"):
            self.fail(f"{where}.type", f"must be cidr, ip or internet, not {kind!r}")
        networks: tuple[IPv4Network | IPv6Network, ...] = ()
        if kind == "internet":
            if "address" in raw:
                self.fail(f"{where}.address", "an internet resource has no address")
        else:
            address = self.string(raw, "address", f"{where}.address")
            networks = (self.network(address.strip(), kind, f"{where}.address"),)
        return ResourceRule(rid, kind, networks, self.filters(raw, f"{where}.filters"))  # type: ignore[arg-type]

    def filters(self, raw: dict[str, Any], where: str) -> tuple[Filter, ...]:
        value = raw.get("filters", [])
        if not isinstance(value, list):
            self.fail(where, "must be an array of {protocol, ports} tables")
        result: list[Filter] = []
        for k, item in enumerate(value):
            fwhere = f"{where}[{k}]"
            if not isinstance(item, dict):
                self.fail(fwhere, 'must be a table like { protocol = "tcp", ports = ["443"] }')
            self.only(item, fwhere, {"protocol", "ports"})
            proto = self.string(item, "protocol", f"{fwhere}.protocol")
            if proto not in ("tcp", "udp", "icmp"):
                self.fail(f"{fwhere}.protocol", f"must be tcp, udp or icmp, not {proto!r}")
            ports_raw = item.get("ports", [])
            if not isinstance(ports_raw, list):
                self.fail(f"{fwhere}.ports", 'must be an array like ["443", "1000-2000"]')
            if proto == "icmp" and ports_raw:
                self.fail(f"{fwhere}.ports", "icmp has no ports")
            ports: list[PortRange] = []
            for m, p in enumerate(ports_raw):
                pwhere = f"{fwhere}.ports[{m}]"
                if isinstance(p, bool) or not isinstance(p, (str, int)):
                    self.fail(pwhere, 'must be a string like "443" or "1000-2000"')
                try:
                    ports.append(PortRange.parse(str(p)))
                except ValueError as exc:
                    self.fail(pwhere, str(exc))
            result.append(Filter(proto, tuple(ports)))  # type: ignore[arg-type]
        return tuple(result)

    def endpoint(self, raw: dict[str, Any], where: str) -> tuple[str, int]:
        text = self.string(raw, "endpoint", where).strip()
        if text.startswith("["):
            host, sep, port = text[1:].partition("]:")
            try:
                IPv6Address(host)
            except ValueError:
                sep = ""
        else:
            host, sep, port = text.rpartition(":")
            if ":" in host:
                sep = ""  # a bare IPv6 address needs brackets
        if not sep or not host or not _decimal(port) or not 1 <= int(port) <= 65535:
            self.fail(where, f"{text!r} must be host:port or [ipv6]:port")
        return host, int(port)

    def client_resources(
        self, raw: dict[str, Any], where: str
    ) -> tuple[IPv4Network | IPv6Network, ...]:
        value = raw.get("resources")
        if not isinstance(value, list) or not value:
            self.fail(where, 'must be a non-empty array of CIDRs, IPs or "internet"')
        nets: list[IPv4Network | IPv6Network] = []
        for k, item in enumerate(value):
            iwhere = f"{where}[{k}]"
            if not isinstance(item, str):
                self.fail(iwhere, "must be a string")
            text = item.strip()
            if text == "internet":
                nets += [IPv4Network("0.0.0.0/0"), IPv6Network("::/0")]
                continue
            nets.append(self.network(text, "cidr" if "/" in text else "ip", iwhere))
        return tuple(dict.fromkeys(nets))
