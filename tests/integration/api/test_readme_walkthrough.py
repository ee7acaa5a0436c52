"""The README's curl walkthrough, run as written (bash, curl, jq) against the served portal."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from accounts import services as account_services
from accounts.models import Account, Actor
from gateways.models import ClientDevice
from policies.models import Policy, Resource
from tests.integration.served.conftest import REPO_ROOT, serve_portal

from .conftest import api_token

pytestmark = pytest.mark.django_db(transaction=True)


def _walkthrough() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("## REST API") :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None
    return match.group(1)


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl, jq")
def test_the_readme_api_walkthrough_works_as_written(acme: Account, tmp_path: Path) -> None:
    account_services.create_actor(
        acme,
        email="admin@example.com",
        name="Admin",
        type=Actor.Type.ADMIN,  # as bootstrap
    )
    secret = api_token(acme, Actor.Type.API_CLIENT, "Walkthrough")
    script = _walkthrough()
    with serve_portal(tmp_path) as portal:
        script = script.replace("export FZ=http://127.0.0.1:8000 TOKEN=fza_...", "")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
            text=True, timeout=120, env={**os.environ, "FZ": portal.http_url, "TOKEN": secret},
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("fzg_") == 1  # the gateway token's secret
    config = (tmp_path / "router.conf").read_text()
    assert "[Interface]" in config and "PrivateKey = <" not in config
    assert "PrivateKey = <your private key>" in result.stdout  # the later download
    assert '"name":"Head office"' in result.stdout
    policy = Policy.objects.for_account(acme).get(resource__name="Wiki")
    assert policy.group.name == "Engineering" and policy.conditions
    assert Resource.objects.for_account(acme).get(name="Wiki").site.name == "Head office"
    assert ClientDevice.objects.for_account(acme).filter(name="router").exists()
