"""``firezone-gateway``: run the gateway data plane.

Two modes, one parser (so ``--help`` shows every flag): portal mode (``--portal-url URL
--token-file FILE``, ``agents.gateway.portal``) and static mode (``--static-config FILE``, peers
and their resources from a TOML file, see ``agents.static_config``). Both build the same core and
hand it to the same ``serve``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv6Interface

from agents.gateway.core import GatewayCore, apply_static_config
from agents.gateway.portal import add_portal_arguments, run_from_args
from agents.io.runtime import DataPlaneSpec, add_runtime_arguments, serve, wall_offset
from agents.io.tun import Interface, Network, validate_name
from agents.logging import configure as configure_logging
from agents.net.filter import TUNNEL_IPV4, TUNNEL_IPV6
from agents.static_config import ConfigError, GatewayConfig, load_gateway_config
from agents.wireguard.device import Device

log = logging.getLogger("agents.gateway")


DESCRIPTION = """Firezone gateway agent. Run it in one of two modes:
  portal mode:  firezone-gateway --portal-url URL --token-file FILE [options]
  static mode:  firezone-gateway --static-config FILE [options]"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="firezone-gateway",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="The token may also come from the environment variable FIREZONE_TOKEN. "
        "Docs: docs/gateway-agent.md (portal mode), docs/examples/gateway.toml (static mode).",
    )
    add_portal_arguments(p.add_argument_group("portal mode (controlled by the portal)"))
    static = p.add_argument_group("static mode (no portal)")
    static.add_argument(
        "--static-config", metavar="FILE", help="TOML file with peers and resources"
    )
    add_runtime_arguments(
        p.add_argument_group("data plane and logging (both modes)"),
        log_level_default=os.environ.get("FIREZONE_LOG_LEVEL", "info"),
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.portal_url and args.static_config:
        parser.error("--portal-url and --static-config are two modes: give one of them")
    if args.portal_url:
        return run_from_args(args)
    configure_logging(json_logs=args.log_json, level=args.log_level)
    if args.ifname:
        try:
            validate_name(args.ifname)
        except ValueError as exc:
            parser.error(str(exc))
    if args.static_config:
        return run_static(args)
    parser.error("give --portal-url URL (portal mode) or --static-config FILE (static mode)")
    return 2  # unreachable: parser.error exits


def gateway_spec(config: GatewayConfig, args: argparse.Namespace) -> DataPlaneSpec:
    iface = config.interface
    addresses: list[Interface] = []
    if iface.ipv4 is not None:
        addresses.append(IPv4Interface(f"{iface.ipv4}/32"))
    if iface.ipv6 is not None:
        addresses.append(IPv6Interface(f"{iface.ipv6}/128"))
    # The whole tunnel range goes into the device: peers added later need no route changes.
    routes: list[Network] = [TUNNEL_IPV4] if iface.ipv4 is not None else []
    if iface.ipv6 is not None:
        routes.append(TUNNEL_IPV6)
    return DataPlaneSpec(
        addresses=addresses,
        routes=routes,
        listen_port=iface.listen_port,
        ifname=args.ifname,
        io_mode=args.io_mode,
        masquerade=True,
        extra_log={"peers": len(config.peers)},
    )


def run_static(args: argparse.Namespace) -> int:
    try:
        config = load_gateway_config(args.static_config)
    except ConfigError as exc:
        log.error("invalid static config", extra={"error": str(exc)})
        print(f"firezone-gateway: {exc}", file=sys.stderr)
        return 2
    device = Device(config.interface.private_key, wall_offset=wall_offset())
    core = GatewayCore(device)
    apply_static_config(core, config)
    try:
        return serve(core, gateway_spec(config, args))
    finally:
        log.info("gateway counters", extra={"counters": dict(core.counters)})


if __name__ == "__main__":
    sys.exit(main())
