"""README "Try it on one machine", run as written: the section's shell blocks, in order, with
unique namespace/interface names and address ranges per run. Step 2 (``make run``) is daphne on
the test database bound to the same address; steps 3 and 5 (web UI) are the service calls those
pages make. Ends with curl through wg-quick and the gateway reaching the resource, and the
gateway's ``peer_stats`` report arriving on the device."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .netns import REPO_ROOT, unique_name, wait_for
from .portal_lab import die_with_parent, unavailable

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

_reason = unavailable() or (None if Path("/usr/bin/curl").exists() else "curl is not installed")
if _reason:
    pytestmark.append(pytest.mark.skip(reason=_reason))

README = REPO_ROOT / "README.md"


def readme_blocks() -> dict[str, str]:
    """The section's ``<!-- try-it:NAME -->`` shell blocks."""
    text = README.read_text()
    section = text.split("## Try it on one machine", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"<!-- try-it:(\w+) -->\n```sh\n(.*?)```", section, re.S)
    return dict(found)


def test_the_readme_section_has_the_blocks_the_test_runs() -> None:
    assert list(readme_blocks()) == ["plumbing", "portal", "gateway", "client", "cleanup"]


def _free_octets() -> tuple[int, int]:
    used = subprocess.run(["ip", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    rng = random.Random()
    while True:
        a, b = rng.sample(range(150, 250), 2)
        if f"10.{a}." not in used and f"10.{b}." not in used:
            return a, b


class TryIt:
    """The README's names and addresses, replaced by unique ones for this run."""

    def __init__(self, tmp: Path) -> None:
        a, b = _free_octets()
        self.ifname = unique_name("fzti")  # the wg-quick interface (from the config's file name)
        self.conf = tmp / f"{self.ifname}.conf"
        self.token_file = tmp / "gateway-token"
        self.portal_ip = f"10.{a}.0.1"
        self.endpoint = f"10.{b}.0.1:51820"
        self.replacements = {
            "fz-gw": unique_name("fztg"),
            "fz-client": unique_name("fztc"),
            "fz-portal": unique_name("fztp"),
            "10.99.0.": f"10.{a}.0.",
            "10.98.0.": f"10.{b}.0.",
            "/etc/firezone/gateway-token": str(self.token_file),
            "/tmp/fz-try-gateway": str(tmp / "gateway-state"),
            "./fz-laptop.conf": str(self.conf),
            ".venv/bin/firezone-gateway": str(Path(sys.executable).with_name("firezone-gateway")),
        }

    def script(self, block: str) -> str:
        for old, new in self.replacements.items():
            block = block.replace(old, new)
        return block

    def run(
        self, block: str, *, check: bool = True, strict: bool = True
    ) -> subprocess.CompletedProcess[str]:
        flags = ["-euo", "pipefail"] if strict else []
        return subprocess.run(
            ["bash", *flags, "-c", self.script(block)],
            capture_output=True, text=True, timeout=60, check=check, cwd=str(REPO_ROOT),
        )  # fmt: skip


@pytest.fixture
def try_it(tmp_path: Path) -> Iterator[TryIt]:
    names = TryIt(tmp_path)
    try:
        yield names
    finally:
        names.run(readme_blocks()["cleanup"], check=False, strict=False)
        for ns in (names.replacements["fz-client"], names.replacements["fz-gw"]):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def _portal(try_it: TryIt, portal_block: str, tmp: Path) -> subprocess.Popen[bytes]:
    """Step 2: what ``make run HOST=<addr>`` serves, on the test database."""
    from django.db import connection

    host = re.search(r"HOST=(\S+)", try_it.script(portal_block)).group(1)  # type: ignore[union-attr]
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test")
    env = {
        **os.environ,
        "DATABASE_URL": base.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"],
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        "FZ_TESTING": "1",
        "DJANGO_SETTINGS_MODULE": "firezone_site.settings",
        "PYTHONPATH": str(REPO_ROOT),
    }
    daphne = Path(sys.executable).with_name("daphne")
    log = (tmp / "daphne.log").open("wb")
    return subprocess.Popen(
        [str(daphne), "-b", host, "-p", "8000", "firezone_site.asgi:application"],
        env=env, cwd=str(REPO_ROOT), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        preexec_fn=die_with_parent,
    )  # fmt: skip


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def test_try_it_on_one_machine_as_the_readme_says(
    transactional_db: None, try_it: TryIt, tmp_path: Path, record_property: Any
) -> None:
    from accounts import services as accounts
    from accounts.models import Actor
    from gateways import services as gateways
    from gateways.models import ClientDevice, Gateway, StaticDeviceAssignment
    from policies import services as policies

    blocks = readme_blocks()
    try_it.run(blocks["plumbing"])
    portal = _portal(try_it, blocks["portal"], tmp_path)
    gateway: subprocess.Popen[bytes] | None = None
    try:
        wait_for(
            lambda: (
                subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", f"http://{try_it.portal_ip}:8000/healthz"],
                    check=False,
                ).returncode
                == 0
            ),
            timeout=30,
            interval=0.2,
            what="daphne on the link address",
        )
        # Step 3, as the UI does it.
        account = accounts.create_account(name="Try", slug=f"try-{unique_name('t', 30)}")
        admin = accounts.create_actor(
            account, email="admin@try.test", name="Admin", type=Actor.Type.ADMIN
        )
        site = gateways.create_site(account, name="Home")
        try_it.token_file.write_text(gateways.issue_gateway_token(site).secret + "\n")
        try_it.token_file.chmod(0o600)
        resource = policies.create_resource(
            account, name="portal host", kind="cidr", address=f"{try_it.portal_ip}/32", site=site
        )
        policies.create_policy(account, group=accounts.everyone_group(account), resource=resource)

        # Step 4: the gateway, as written.
        log_path = tmp_path / "gateway.log"
        with log_path.open("wb") as log:
            gateway = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", "exec " + try_it.script(blocks["gateway"])],
                cwd=str(REPO_ROOT), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )  # fmt: skip

        def online() -> Gateway | None:
            if gateway is not None and gateway.poll() is not None:
                raise RuntimeError(f"the gateway exited:\n{log_path.read_text(errors='replace')}")
            return Gateway.objects.for_account(account).filter(site=site, online=True).first()

        wait_for(online, timeout=30, interval=0.2, what="the gateway online")
        row = online()
        assert row is not None
        assert row.endpoint == try_it.endpoint and not row.endpoint_guessed

        # Step 5: the device and its downloaded config, then the client block as written.
        registered = gateways.register_static_device(admin, name="laptop")
        assert registered.private_key is not None
        assert f"Endpoint = {try_it.endpoint}" in registered.config.text
        try_it.conf.write_text(registered.config.text)
        try_it.conf.chmod(0o600)
        # Negative first: without the tunnel the client namespace has no way to the resource.
        client_ns = try_it.replacements["fz-client"]
        no_tunnel = subprocess.run(
            ["ip", "netns", "exec", client_ns, "curl", "-sS", "--max-time", "2",
             f"http://{try_it.portal_ip}:8000/healthz"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert no_tunnel.returncode != 0
        t0 = time.monotonic()
        out = try_it.run(blocks["client"])
        assert '{"status": "ok"}' in out.stdout, (out.stdout, out.stderr)
        record_property("try_it_client_block_s", round(time.monotonic() - t0, 2))

        # The gateway reports the device's activity (peer_stats, with a heartbeat).
        def reported() -> bool:
            a = StaticDeviceAssignment.objects.filter(device=registered.device).first()
            return a is not None and a.last_handshake_at is not None and a.rx_bytes > 0

        wait_for(reported, timeout=40, interval=0.5, what="peer_stats from the gateway")
        device = ClientDevice.objects.get(pk=registered.device.pk)
        assert device.last_seen_at is not None

        # Step 6 as written (after Ctrl-C of the gateway) removes everything it made.
        _stop(gateway)
        try_it.run(blocks["cleanup"])
        namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert client_ns not in namespaces and try_it.replacements["fz-gw"] not in namespaces
        portal_link = ["ip", "link", "show", try_it.replacements["fz-portal"]]
        wait_for(
            lambda: subprocess.run(portal_link, capture_output=True, check=False).returncode != 0,
            timeout=10,
            what="the root end of the link gone",
        )
    finally:
        if gateway is not None:
            _stop(gateway)
        _stop(portal)
