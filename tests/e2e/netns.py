"""Network-namespace lab for end-to-end tests and benchmarks.

A :class:`Lab` owns everything it creates - namespaces, veth pairs, processes, temp files - and
``close()`` (or leaving its ``with`` block) removes all of it, also after a failure. Names are
unique per run (prefix + PID + counter) because namespaces and the wireguard-go control socket
directory ``/var/run/wireguard`` are shared by the whole machine.

Typical use::

    with Lab("fzt") as lab:
        a, b = lab.namespace("a"), lab.namespace("b")
        lab.link(a, "10.0.0.1/24", b, "10.0.0.2/24")
        wg = lab.wireguard_go(a, address="100.64.0.1/32", peers=[...])
        a.run(["ip", "route"])

Only standard tools are used (``ip``, ``wireguard-go``, ``wg``, ``wg-quick``, ``iperf3``); offloads
are switched off with pyroute2's ethtool from inside the namespace. Commands are argument lists.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

WG_SOCKET_DIR = Path("/var/run/wireguard")
_counter = itertools.count()

# Features switched off on veth ends so the kernel segments and checksums in software, as a real
# NIC-less path would: otherwise GSO super-packets cross the veth for free and flatter UDP GSO.
OFFLOAD_FEATURES = (
    "tx-scatter-gather",
    "tx-checksum-ip-generic",
    "tx-generic-segmentation",
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
    "tx-udp-segmentation",
    "rx-gro",
)


def unique_name(prefix: str, max_len: int = 15) -> str:
    """``prefix + pid + counter`` cut to ``max_len`` (interface names must stay below 16)."""
    name = f"{prefix}{os.getpid() % 100000}x{next(_counter)}"
    if len(name) > max_len:
        raise ValueError(f"name {name!r} longer than {max_len}; use a shorter prefix")
    return name


def missing_requirements(
    tools: Sequence[str] = ("ip", "wireguard-go", "wg", "iperf3"),
) -> str | None:
    """Why e2e tests cannot run here (for ``pytest.skip``), or None."""
    if os.geteuid() != 0:
        return "needs root"
    if not Path("/dev/net/tun").exists():
        return "needs /dev/net/tun"
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"missing tools: {', '.join(missing)}"
    return None


@dataclass(frozen=True)
class KeyPair:
    private: str  # base64, as wg(8) and wg-quick expect
    public: str

    @property
    def private_raw(self) -> bytes:
        return base64.b64decode(self.private)

    @property
    def public_raw(self) -> bytes:
        return base64.b64decode(self.public)


def genkey() -> KeyPair:
    key = X25519PrivateKey.generate()
    raw = key.private_bytes_raw()
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return KeyPair(base64.b64encode(raw).decode(), base64.b64encode(pub).decode())


def genpsk() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.02, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class NetNS:
    """A named network namespace; every command runs through ``ip netns exec``."""

    name: str
    lab: Lab

    def cmd(self, args: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, args: Sequence[str], *, check: bool = True, timeout: float = 30, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.cmd(args), capture_output=True, text=True, timeout=timeout, check=False, **kw
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(
                proc.returncode, proc.args, proc.stdout, proc.stderr
            )
        return proc

    def popen(self, args: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        return self.lab.spawn(self.cmd(args), **kw)

    def python(
        self, code: str, *args: str, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet inside the namespace with the current interpreter."""
        return self.run([sys.executable, "-c", code, *args], timeout=timeout)

    def probe(self, *args: str, timeout: float = 30) -> dict[str, Any]:
        """Run ``tests.e2e.probes`` in the namespace and return its JSON result."""
        proc = self.run([sys.executable, "-m", "tests.e2e.probes", *args], timeout=timeout,
                        env=env_with_pythonpath(REPO_ROOT), cwd=str(REPO_ROOT))  # fmt: skip
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def probe_background(self, *args: str) -> subprocess.Popen[bytes]:
        """Start a long-running probe (a server or listener); returns once it is listening."""
        proc = self.popen([sys.executable, "-m", "tests.e2e.probes", *args],
                          stdout=subprocess.PIPE, env=env_with_pythonpath(REPO_ROOT),
                          cwd=str(REPO_ROOT))  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if b"listening" not in line:
            raise RuntimeError(f"probe {args} did not start: {line!r}")
        return proc

    def ip(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(["ip", "-n", self.name, *args])

    def link_exists(self, ifname: str) -> bool:
        proc = subprocess.run(
            ["ip", "-n", self.name, "link", "show", "dev", ifname],
            capture_output=True,
            check=False,
        )
        return proc.returncode == 0

    def disable_offloads(self, ifname: str) -> None:
        code = (
            "import sys\nfrom pyroute2.ethtool import Ethtool\n"
            "e = Ethtool(); f = e.get_features(sys.argv[1])\n"
            "for n in sys.argv[2:]:\n"
            "    if n in f.features: f.features[n].enable = False\n"
            "e.set_features(sys.argv[1], f)\n"
        )
        self.python(code, ifname, *OFFLOAD_FEATURES)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])


def _run(args: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc


@dataclass
class WgPeer:
    public_key: str
    allowed_ips: Sequence[str]
    endpoint: str | None = None
    preshared_key: str | None = None
    persistent_keepalive: int | None = None


@dataclass
class WireguardGo:
    """A wireguard-go interface in a namespace, configured with ``wg set``."""

    ns: NetNS
    ifname: str
    keys: KeyPair
    listen_port: int | None
    process: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def show(self, what: str = "dump") -> str:
        return self.ns.run(["wg", "show", self.ifname, what]).stdout

    def latest_handshakes(self) -> dict[str, int]:
        out = self.show("latest-handshakes")
        result = {}
        for line in out.splitlines():
            pub, ts = line.split()
            result[pub] = int(ts)
        return result

    def transfer(self) -> dict[str, tuple[int, int]]:
        """public key -> (rx bytes, tx bytes)."""
        result = {}
        for line in self.show("transfer").splitlines():
            pub, rx, tx = line.split()
            result[pub] = (int(rx), int(tx))
        return result


@dataclass
class Lab:
    """Owner of every namespace, process and file a test or benchmark creates."""

    prefix: str = "fzt"
    namespaces: list[NetNS] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    wg_quick_confs: list[tuple[NetNS, Path]] = field(default_factory=list)
    tmpdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="fzlab")))

    # -- namespaces and links ---------------------------------------------------------------
    def namespace(self, role: str = "") -> NetNS:
        ns = NetNS(unique_name(f"{self.prefix}{role[:3]}"), self)
        _run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def link(
        self,
        a: NetNS,
        a_addr: str,
        b: NetNS,
        b_addr: str,
        *,
        mtu: int = 1500,
        offloads: bool = False,
    ) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b`` with the given interface addresses (CIDR)."""
        a_if, b_if = unique_name(f"{self.prefix}v"), unique_name(f"{self.prefix}v")
        _run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if,
              "netns", b.name])  # fmt: skip
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            ipaddress.ip_interface(addr)  # validate before handing it to ip(8)
            ns.ip("link", "set", ifname, "mtu", str(mtu))
            ns.ip("addr", "add", addr, "dev", ifname)
            if not offloads:
                ns.disable_offloads(ifname)
            ns.ip("link", "set", ifname, "up")
        return a_if, b_if

    # -- processes ----------------------------------------------------------------------------
    def spawn(self, args: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(list(args), **kw)
        self.processes.append(proc)
        return proc

    def tmpfile(self, name: str, content: str, mode: int = 0o600) -> Path:
        path = self.tmpdir / name
        path.write_text(content)
        path.chmod(mode)
        return path

    # -- wireguard-go ----------------------------------------------------------------------------
    def wireguard_go(
        self,
        ns: NetNS,
        *,
        address: str | Sequence[str],
        peers: Sequence[WgPeer] = (),
        keys: KeyPair | None = None,
        listen_port: int | None = None,
        mtu: int = 1280,
        ifname: str | None = None,
        routes: Sequence[str] = (),
    ) -> WireguardGo:
        """Start wireguard-go in ``ns`` and configure it (addresses, MTU, peers, routes)."""
        ifname = ifname or unique_name("fzwg")
        keys = keys or genkey()
        sock = WG_SOCKET_DIR / f"{ifname}.sock"
        proc = ns.popen(["wireguard-go", "-f", ifname], env={**os.environ, "LOG_LEVEL": "error"})
        wait_for(lambda: sock.exists() and ns.link_exists(ifname), what=f"{ifname} socket")
        keyfile = self.tmpfile(f"{ifname}.key", keys.private + "\n")
        args = ["wg", "set", ifname, "private-key", str(keyfile)]
        if listen_port is not None:
            args += ["listen-port", str(listen_port)]
        for p in peers:
            args += ["peer", p.public_key, "allowed-ips", ",".join(p.allowed_ips)]
            if p.endpoint:
                args += ["endpoint", p.endpoint]
            if p.preshared_key:
                pskfile = self.tmpfile(f"{ifname}.{next(_counter)}.psk", p.preshared_key + "\n")
                args += ["preshared-key", str(pskfile)]
            if p.persistent_keepalive:
                args += ["persistent-keepalive", str(p.persistent_keepalive)]
        ns.run(args)
        for addr in [address] if isinstance(address, str) else address:
            ipaddress.ip_interface(addr)
            ns.ip("addr", "add", addr, "dev", ifname)
        ns.ip("link", "set", ifname, "mtu", str(mtu), "up")
        for route in routes:
            ns.ip("route", "add", str(ipaddress.ip_network(route, strict=False)), "dev", ifname)
        return WireguardGo(ns, ifname, keys, listen_port, proc)

    def wg_quick_up(self, ns: NetNS, config: str, ifname: str | None = None) -> WireguardGo:
        """``wg-quick up`` a standard config file in ``ns`` (falls back to wireguard-go)."""
        ifname = ifname or unique_name("fzwq")
        path = self.tmpfile(f"{ifname}.conf", config)
        env = {**os.environ, "WG_QUICK_USERSPACE_IMPLEMENTATION": "wireguard-go"}
        ns.run(["wg-quick", "up", str(path)], env=env)
        self.wg_quick_confs.append((ns, path))
        keys = KeyPair("", "")
        return WireguardGo(ns, ifname, keys, None, None)

    # -- measurements ----------------------------------------------------------------------------
    def iperf3(
        self,
        client: NetNS,
        server: NetNS,
        server_ip: str,
        *,
        seconds: float = 3.0,
        reverse: bool = False,
        port: int = 5201,
        cpu_pids: Sequence[int] = (),
    ) -> IperfResult:
        """One iperf3 TCP run; CPU seconds of ``cpu_pids`` are sampled around the client run."""
        srv = server.popen(["iperf3", "-s", "-1", "-p", str(port), "-B", server_ip])
        wait_for(lambda: _port_listening(server, port), timeout=5, what="iperf3 server")
        before = [proc_cpu_seconds(p) for p in cpu_pids]
        # iperf3 parses -t as an integer and treats 0 as "forever"
        secs = max(1, round(seconds))
        args = ["iperf3", "-c", server_ip, "-p", str(port), "-t", str(secs), "-J"]
        if reverse:
            args.append("-R")
        out = client.run(args, timeout=secs + 30)
        after = [proc_cpu_seconds(p) for p in cpu_pids]
        with contextlib.suppress(subprocess.TimeoutExpired):
            srv.wait(timeout=5)
        data = json.loads(out.stdout)
        end = data["end"]
        bps = end["sum_received"]["bits_per_second"]
        nbytes = end["sum_received"]["bytes"]
        cpu = [b - a for a, b in zip(before, after, strict=True)]
        return IperfResult(mbps=bps / 1e6, bytes=nbytes, cpu_s=cpu, seconds=secs)

    # -- teardown ----------------------------------------------------------------------------------
    def close(self) -> None:
        for ns, path in reversed(self.wg_quick_confs):
            with contextlib.suppress(Exception):
                ns.run(["wg-quick", "down", str(path)], check=False, timeout=10)
        for proc in reversed(self.processes):
            _stop(proc)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False)
        self.namespaces.clear()
        self.processes.clear()
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _stop(proc: subprocess.Popen[bytes], timeout: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=timeout)


def _port_listening(ns: NetNS, port: int) -> bool:
    out = ns.run(["ss", "-Htln", f"sport = :{port}"], check=False).stdout
    return bool(out.strip())


@dataclass(frozen=True)
class IperfResult:
    mbps: float
    bytes: int
    cpu_s: list[float]
    seconds: float

    @property
    def gbits(self) -> float:
        return self.bytes * 8 / 1e9

    def cpu_per_gbit(self) -> list[float]:
        return [c / self.gbits if self.gbits else float("inf") for c in self.cpu_s]


@contextlib.contextmanager
def lab(prefix: str = "fzt") -> Iterator[Lab]:
    with Lab(prefix) as the_lab:
        yield the_lab


def env_with_pythonpath(root: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for running our agents from a source checkout inside a namespace."""
    env = {**os.environ, **(extra or {})}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH", "")]))
    return env


@dataclass(frozen=True)
class ThreeHop:
    """client <-veth-> gateway <-veth-> resource, the standard access topology.

    Underlay: 10.201.0.0/24 between client (.2) and gateway (.1); 10.202.0.0/24 between gateway
    (.1) and resource (.2). The resource has no route back to the tunnel: the gateway masquerades.
    """

    client: NetNS
    gateway: NetNS
    resource: NetNS
    client_if: str
    gateway_client_if: str
    gateway_resource_if: str
    resource_if: str
    client_ip: str = "10.201.0.2"
    gateway_ip: str = "10.201.0.1"
    gateway_lan_ip: str = "10.202.0.1"
    resource_ip: str = "10.202.0.2"
    resource_net: str = "10.202.0.0/24"


def three_hop(lab: Lab, *, mtu: int = 1500, offloads: bool = False) -> ThreeHop:
    client, gateway, resource = lab.namespace("cli"), lab.namespace("gw"), lab.namespace("res")
    c_if, gc_if = lab.link(client, "10.201.0.2/24", gateway, "10.201.0.1/24", mtu=mtu,
                           offloads=offloads)  # fmt: skip
    gr_if, r_if = lab.link(gateway, "10.202.0.1/24", resource, "10.202.0.2/24", mtu=mtu,
                           offloads=offloads)  # fmt: skip
    return ThreeHop(client, gateway, resource, c_if, gc_if, gr_if, r_if)


# -- our agents ------------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Agent:
    """One of our agents (firezone-gateway / firezone-client) running in a namespace."""

    ns: NetNS
    process: subprocess.Popen[bytes]
    log_path: Path
    ifname: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 5.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_agent(
    lab: Lab,
    ns: NetNS,
    kind: str,
    config_toml: str,
    *,
    io_mode: str | None = None,
    ifname: str | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 10.0,
) -> Agent:
    """Run ``python -m agents.<kind>.cli --static-config`` in ``ns``; wait for "data plane up"."""
    if kind not in ("gateway", "client"):
        raise ValueError(kind)
    ifname = ifname or unique_name(f"fz{kind[0]}")
    name = f"{ifname}.{kind}"
    config = lab.tmpfile(f"{name}.toml", config_toml)
    log_path = lab.tmpdir / f"{name}.log"
    args = [sys.executable, "-m", f"agents.{kind}.cli", "--static-config", str(config),
            "--log-json", "--ifname", ifname, *extra_args]  # fmt: skip
    if io_mode:
        args += ["--io-mode", io_mode]
    with log_path.open("wb") as log_file:
        proc = ns.popen(args, stderr=log_file, stdout=log_file, env=env_with_pythonpath(REPO_ROOT),
                        cwd=str(REPO_ROOT))  # fmt: skip
    agent = Agent(ns, proc, log_path, ifname)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode}:\n{agent.log()}")
        return '"data plane up"' in agent.log()

    wait_for(ready, timeout=ready_timeout, what=f"{kind} data plane")
    return agent


def gateway_toml(
    private_key: str,
    ipv4: str,
    peers: Sequence[Mapping[str, Any]],
    *,
    listen_port: int = 51820,
) -> str:
    """A gateway static config. ``peers``: dicts with public_key, ipv4, optional preshared_key,
    and resources: dicts with id, type, address, filters (list of {protocol, ports})."""
    lines = ["[interface]", f'private_key = "{private_key}"', f"listen_port = {int(listen_port)}",
             f'ipv4 = "{ipaddress.IPv4Address(ipv4)}"']  # fmt: skip
    for peer in peers:
        lines += ["", "[[peers]]", f'public_key = "{peer["public_key"]}"',
                  f'ipv4 = "{ipaddress.IPv4Address(peer["ipv4"])}"']  # fmt: skip
        if peer.get("preshared_key"):
            lines.append(f'preshared_key = "{peer["preshared_key"]}"')
        for res in peer.get("resources", ()):
            lines += ["", "[[peers.resources]]", f"id = {json.dumps(res['id'])}",
                      f"type = {json.dumps(res['type'])}"]  # fmt: skip
            if "address" in res:
                lines.append(f"address = {json.dumps(res['address'])}")
            if res.get("filters"):
                lines.append(f"filters = {_toml_filters(res['filters'])}")
    return "\n".join(lines) + "\n"


def _toml_filters(filters: Sequence[Mapping[str, Any]]) -> str:
    items = []
    for f in filters:
        ports = ", ".join(json.dumps(str(p)) for p in f.get("ports", ()))
        items.append(f"{{ protocol = {json.dumps(f['protocol'])}, ports = [{ports}] }}")
    return "[" + ", ".join(items) + "]"


def client_toml(
    private_key: str,
    ipv4: str,
    gateways: Sequence[Mapping[str, Any]],
) -> str:
    """A client static config. ``gateways``: dicts with public_key, endpoint, resources (list of
    CIDR/IP strings), optional preshared_key and persistent_keepalive."""
    lines = ["[interface]", f'private_key = "{private_key}"',
             f'ipv4 = "{ipaddress.IPv4Address(ipv4)}"']  # fmt: skip
    for gw in gateways:
        lines += ["", "[[gateways]]", f'public_key = "{gw["public_key"]}"',
                  f"endpoint = {json.dumps(gw['endpoint'])}",
                  f"resources = {json.dumps(list(gw['resources']))}"]  # fmt: skip
        if gw.get("preshared_key"):
            lines.append(f'preshared_key = "{gw["preshared_key"]}"')
        if gw.get("persistent_keepalive") is not None:
            lines.append(f"persistent_keepalive = {int(gw['persistent_keepalive'])}")
    return "\n".join(lines) + "\n"
