"""TUN device: created and configured with pyroute2, attached through /dev/net/tun.

pyroute2 creates the device, sets the MTU, addresses and routes in the *current* network namespace,
but it cannot hand back a file descriptor, so the process attaches to the device by name with
``TUNSETIFF``. Right after attaching we clear the persist flag: the kernel then removes the device
when the last descriptor closes, so a crashed (SIGKILLed) agent leaves no stale interface behind.
``close()`` still deletes it explicitly.

Offload mode (``vnet_hdr=True``) asks for a virtio-net header on every read/write and enables
TSO/checksum offload, so reads may return TCP super-packets of up to ~64 KB (``agents.io.vnet``).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyroute2 import IPRoute

log = logging.getLogger(__name__)

# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04

VNET_HDR_LEN = 10  # struct virtio_net_hdr (no num_buffers: we never ask for the mergeable layout)
DEFAULT_MTU = 1280
IFNAMSIZ = 16

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def generate_name(prefix: str = "fz") -> str:
    """A name unique enough for a machine-wide namespace such as /var/run/wireguard."""
    return f"{prefix}{secrets.token_hex(4)}"[: IFNAMSIZ - 1]


def validate_name(name: str) -> str:
    if not name or len(name) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"invalid interface name {name!r}")
    return name


@dataclass
class TunDevice:
    """An attached TUN device; ``fd`` is blocking unless ``set_blocking(False)`` is called."""

    name: str
    fd: int
    index: int
    mtu: int
    vnet_hdr: bool
    addresses: tuple[Interface, ...] = ()
    routes: tuple[Network, ...] = field(default_factory=tuple)
    _closed: bool = False

    def set_blocking(self, blocking: bool) -> None:
        os.set_blocking(self.fd, blocking)

    def unlink(self) -> None:
        """Delete the network device but keep the fd open (wakes readers blocked on it)."""
        with IPRoute() as ipr, contextlib.suppress(Exception):
            ipr.link("del", index=self.index)

    def close(self) -> None:
        """Delete the device (idempotent). Safe to call from a signal handler's aftermath."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):
            os.close(self.fd)
        # The device normally vanishes with its last fd (persist cleared); delete it anyway in case
        # another process still holds a descriptor.
        with IPRoute() as ipr, contextlib.suppress(Exception):
            idx = ipr.link_lookup(ifname=self.name)
            if idx:
                ipr.link("del", index=idx[0])
        log.info("tun device removed", extra={"ifname": self.name})

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add_route(ipr: IPRoute, index: int, net: Network) -> None:
    family = 10 if net.version == 6 else 2
    try:
        ipr.route("add", dst=str(net), oif=index, family=family)
    except Exception as exc:  # pyroute2 raises NetlinkError(17) for "File exists"
        if getattr(exc, "code", None) != 17:
            raise


def _attach(name: str, vnet_hdr: bool) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        flags = IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if vnet_hdr else 0)
        ifr = struct.pack("16sH22x", name.encode(), flags)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETPERSIST, 0)
        if vnet_hdr:
            fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_tun(
    name: str | None = None,
    *,
    addresses: Sequence[Interface | str] = (),
    routes: Sequence[Network | str] = (),
    mtu: int = DEFAULT_MTU,
    vnet_hdr: bool = False,
) -> TunDevice:
    """Create, configure, attach and bring up a TUN device in the current network namespace.

    ``addresses`` are interfaces such as ``100.64.0.1/32``; their own prefix becomes a connected
    route. ``routes`` are extra destination networks routed into the device.
    """
    ifname = validate_name(name) if name else generate_name()
    addrs = tuple(ipaddress.ip_interface(a) for a in addresses)
    nets = tuple(ipaddress.ip_network(r, strict=False) for r in routes)
    with IPRoute() as ipr:
        ipr.link("add", ifname=ifname, kind="tuntap", mode="tun")
        fd = -1
        try:
            index = ipr.link_lookup(ifname=ifname)[0]
            fd = _attach(ifname, vnet_hdr)
            ipr.link("set", index=index, mtu=mtu)
            for addr in addrs:
                ipr.addr(
                    "add",
                    index=index,
                    address=str(addr.ip),
                    prefixlen=addr.network.prefixlen,
                    family=10 if addr.version == 6 else 2,
                )
            ipr.link("set", index=index, state="up")
            for net in nets:
                _add_route(ipr, index, net)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(Exception):
                ipr.link("del", ifname=ifname)
            raise
    log.info(
        "tun device up",
        extra={"ifname": ifname, "mtu": mtu, "vnet_hdr": vnet_hdr, "routes": len(nets)},
    )
    return TunDevice(
        name=ifname, fd=fd, index=index, mtu=mtu, vnet_hdr=vnet_hdr, addresses=addrs, routes=nets
    )


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))
