"""``firezone-client``: run the headless client data plane.

Modes: ``--portal-url URL --token-file FILE`` (the portal decides, see ``agents.client.portal``)
or ``--static-config FILE`` (gateways and the resources behind each, see
``agents.static_config``).
``firezone-client sign-in --portal-url URL`` signs the client in (``agents.client.signin``).

Routes: every resource network of every gateway is routed into the TUN device. When a resource
covers a gateway's own endpoint (the "internet" resource, or a wide CIDR), the endpoint gets a
host route through the path it used before, or the encrypted packets would loop into the tunnel;
0.0.0.0/0 and ::/0 are installed as two halves so the original default route stays intact.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import socket
import sys
from collections.abc import Iterator, Sequence
from ipaddress import IPv4Interface, IPv6Interface, ip_address

from pyroute2 import IPRoute

from agents.client.core import ClientCore, GatewayInfo
from agents.io.runtime import DataPlaneSpec, add_runtime_arguments, serve, wall_offset
from agents.io.tun import Interface, Network, validate_name
from agents.logging import configure as configure_logging
from agents.static_config import ClientConfig, ConfigError, load_client_config
from agents.wireguard.device import Device

log = logging.getLogger("agents.client")

Endpoint = tuple[str, int]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="firezone-client", description="Firezone headless client")
    p.add_argument("--static-config", metavar="FILE", help="TOML file with gateways and resources")
    from agents.client.portal import add_portal_arguments

    add_portal_arguments(p)
    add_runtime_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sign-in"]:
        from agents.client import signin

        return signin.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(json_logs=args.log_json, level=args.log_level)
    if args.ifname:
        try:
            validate_name(args.ifname)
        except ValueError as exc:
            parser.error(str(exc))
    if args.static_config and args.portal_url:
        parser.error("--static-config and --portal-url exclude each other")
    if args.static_config:
        return run_static(args)
    if args.portal_url:
        from agents.client.portal import run_from_args

        return run_from_args(args)
    parser.error("--portal-url URL (with --token-file FILE) or --static-config FILE is required")
    return 2  # unreachable: parser.error exits


def resolve(endpoint: Endpoint) -> Endpoint:
    """An IP endpoint for a configured host:port (names resolved once, IPv4 preferred)."""
    host, port = endpoint
    with contextlib.suppress(ValueError):
        return str(ip_address(host)), port
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    return str(infos[0][4][0]), port


def split_default(net: Network) -> list[Network]:
    """0/0 as two halves: more specific than, and so not replacing, the existing default."""
    if net.prefixlen == 0:
        return list(net.subnets(prefixlen_diff=1))
    return [net]


def tunnel_routes(config: ClientConfig) -> list[Network]:
    routes: dict[Network, None] = {}
    for gw in config.gateways:
        for net in gw.resources:
            if net.version == 4 and config.interface.ipv4 is None:
                continue
            if net.version == 6 and config.interface.ipv6 is None:
                continue
            for part in split_default(net):
                routes[part] = None
    return list(routes)


@contextlib.contextmanager
def pinned_endpoints(endpoints: Sequence[Endpoint], routes: Sequence[Network]) -> Iterator[None]:
    """Host routes that keep gateway endpoints out of the tunnel; removed on exit."""
    added: list[tuple[str, int]] = []
    with IPRoute() as ipr:
        for host, _port in endpoints:
            addr = ip_address(host)
            if not any(addr in net for net in routes if net.version == addr.version):
                continue
            family = int(socket.AF_INET6 if addr.version == 6 else socket.AF_INET)
            try:
                current = ipr.route("get", dst=host, family=family)[0]
            except Exception:
                log.warning("no route to gateway endpoint", extra={"endpoint": host})
                continue
            attrs = dict(current["attrs"])
            kwargs = {"dst": f"{host}/{addr.max_prefixlen}", "oif": attrs["RTA_OIF"]}
            if "RTA_GATEWAY" in attrs:
                kwargs["gateway"] = attrs["RTA_GATEWAY"]
            ipr.route("replace", family=family, **kwargs)
            added.append((kwargs["dst"], family))
    try:
        yield
    finally:
        with IPRoute() as ipr:
            for dst, family in added:
                with contextlib.suppress(Exception):
                    ipr.route("del", dst=dst, family=family)


def run_static(args: argparse.Namespace) -> int:
    try:
        config = load_client_config(args.static_config)
    except ConfigError as exc:
        log.error("invalid static config", extra={"error": str(exc)})
        print(f"firezone-client: {exc}", file=sys.stderr)
        return 2
    iface = config.interface
    device = Device(iface.private_key, wall_offset=wall_offset())
    core = ClientCore(device, iface.ipv4, iface.ipv6)
    endpoints: list[Endpoint] = []
    for gw in config.gateways:
        try:
            endpoint = resolve(gw.endpoint)
        except OSError as exc:
            print(f"firezone-client: cannot resolve {gw.endpoint[0]}: {exc}", file=sys.stderr)
            return 2
        endpoints.append(endpoint)
        core.add_gateway(GatewayInfo.from_config(gw, endpoint))
    addresses: list[Interface] = []
    if iface.ipv4 is not None:
        addresses.append(IPv4Interface(f"{iface.ipv4}/32"))
    if iface.ipv6 is not None:
        addresses.append(IPv6Interface(f"{iface.ipv6}/128"))
    routes = tunnel_routes(config)
    spec = DataPlaneSpec(
        addresses=addresses,
        routes=routes,
        ifname=args.ifname,
        io_mode=args.io_mode,
        extra_log={"gateways": len(config.gateways), "routes": len(routes)},
    )
    try:
        with pinned_endpoints(endpoints, routes):
            return serve(core, spec)
    finally:
        log.info("client counters", extra={"counters": dict(core.counters)})


if __name__ == "__main__":
    sys.exit(main())
