"""wg-quick configs for static devices (standard WireGuard apps) and their QR codes.

The portal never stores a device's private key. When the portal generates the key pair at
registration, the config is rendered once with the private key (``RegisteredDevice.config``) and
shown to the admin; every later download carries ``PrivateKey = <your private key>`` for the user
to fill in (or to merge with the config already on the device). A static config can only express
cidr and ip resources (AllowedIPs are networks): dns and internet resources are left out.

``version`` is ``ClientDevice.config_version``: services bump it whenever the rendered text
(without the private key line) changes, so "is my config current?" is one number to compare.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import re
from dataclasses import dataclass
from ipaddress import ip_network

import qrcode
import qrcode.image.svg

from gateways import queries
from gateways.models import ClientDevice, StaticDeviceAssignment

MTU = 1280
PERSISTENT_KEEPALIVE_S = 25
PRIVATE_KEY_PLACEHOLDER = "<your private key>"
_VERSION_LINE = "# config version {version}\n"


@dataclass(frozen=True)
class DeviceConfig:
    text: str
    version: int
    filename: str


def filename_for(device: ClientDevice) -> str:
    """wg-quick names the interface after the file: at most 15 of [a-zA-Z0-9_=+.-]."""
    stem = re.sub(r"[^a-zA-Z0-9_=+.-]+", "-", device.name).strip("-.") or "device"
    return f"fz-{stem}"[:15].rstrip("-.") + ".conf"


def gateway_endpoint(endpoint: str, remote_ip: str | None, port: int) -> str:
    if endpoint:
        return endpoint
    if not remote_ip:
        return ""
    return f"[{remote_ip}]:{port}" if ":" in remote_ip else f"{remote_ip}:{port}"


_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)*"
    r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$"
)


def valid_endpoint(value: str) -> bool:
    """``host:port``, ``ipv4:port`` or ``[ipv6]:port`` (what a wg-quick ``Endpoint`` takes)."""
    if len(value) > 100:
        return False
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        try:
            ok_host = isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
        except ValueError:
            return False
    else:
        host, sep, port = value.rpartition(":")
        try:
            ipaddress.IPv4Address(host)
            ok_host = True
        except ValueError:
            ok_host = bool(_HOSTNAME.match(host))
    return bool(sep) and ok_host and port.isdigit() and 1 <= int(port) <= 65535


def render_body(device: ClientDevice, assignments: list[StaticDeviceAssignment]) -> str:
    """Everything after the version line, with ``{private_key}`` still to be filled in."""
    from django.conf import settings

    lines = [
        "[Interface]",
        "PrivateKey = {private_key}",
        f"Address = {device.ipv4}/32, {device.ipv6}/128",
        f"MTU = {MTU}",
    ]
    dns = (device.account.settings or {}).get("static_dns") if device.account else None
    if isinstance(dns, list) and dns:
        lines.append("DNS = " + ", ".join(str(d) for d in dns))
    if assignments:
        secret = queries.key_secret(device.account_id)
        resources = queries.assignment_resources(device.account_id, assignments)
        for a in assignments:
            gateway = a.gateway
            nets = [str(ip_network(r.address, strict=False)) for r in resources[a.pk]]
            lines.append("")
            if gateway is None:
                lines.append(
                    f"# site {a.site.name}: no gateway yet; once one is deployed, get a new "
                    "key and config on the device page"
                )
                continue
            lines += [
                "[Peer]",
                f"# gateway {gateway.name} (site {a.site.name})",
                f"PublicKey = {gateway.public_key}",
                "PresharedKey = " + queries.derive_preshared_key(secret, device.pk, gateway.pk),
            ]
            endpoint = gateway_endpoint(
                gateway.endpoint, gateway.last_seen_remote_ip, settings.FZ_GATEWAY_PORT
            )
            if endpoint:
                lines.append(f"Endpoint = {endpoint}")
            lines += [
                "AllowedIPs = " + ", ".join(nets) if nets else "AllowedIPs =",
                f"PersistentKeepalive = {PERSISTENT_KEEPALIVE_S}",
            ]
    return "\n".join(lines) + "\n"


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def compose(device: ClientDevice, body: str, version: int, private_key: str | None) -> str:
    header = f"# {device.name} (static WireGuard config issued by the portal)\n"
    return (
        header
        + _VERSION_LINE.format(version=version)
        + body.replace("{private_key}", private_key or PRIVATE_KEY_PLACEHOLDER, 1)
    )


def device_config(device: ClientDevice, *, private_key: str | None = None) -> DeviceConfig:
    """The device's current config (``private_key`` only when the caller holds it)."""
    device = queries.static_devices(device.account_id).select_related("account").get(pk=device.pk)
    body = render_body(device, list(queries.device_assignments(device)))
    return DeviceConfig(
        text=compose(device, body, device.config_version, private_key),
        version=device.config_version,
        filename=filename_for(device),
    )


def qr_svg(text: str) -> str:
    """The config as an SVG QR code (for mobile WireGuard apps)."""
    image = qrcode.make(
        text,
        image_factory=qrcode.image.svg.SvgPathImage,
        error_correction=qrcode.constants.ERROR_CORRECT_M,
    )
    buf = io.BytesIO()
    image.save(buf)
    return buf.getvalue().decode()
