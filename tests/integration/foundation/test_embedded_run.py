"""The embedded default, as `make run` starts it: daphne + Celery worker + beat, SQLite, the
filesystem broker and the SQLite channel layer, no PostgreSQL or Redis."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _embedded_env(var: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FZ_TESTING", "DJANGO_SETTINGS_MODULE"}
    }
    env["FZ_VAR_DIR"] = str(var)
    return env


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def embedded_portal(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    env = _embedded_env(tmp_path_factory.mktemp("embedded"))
    py = sys.executable
    subprocess.run([py, "manage.py", "migrate", "-v0"], cwd=REPO, env=env, check=True)
    boot = subprocess.run(
        [py, "manage.py", "bootstrap"],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    port = _free_port()
    proc = subprocess.Popen(
        [py, "manage.py", "serve", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _get(base + "/healthz")[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise AssertionError(
                "portal did not start:\n" + (proc.stdout.read() if proc.stdout else "")
            )
        time.sleep(0.3)
    try:
        yield base, env, proc, boot.stdout
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_make_run_serves_admin_and_is_ready_on_the_embedded_default(embedded_portal) -> None:  # type: ignore[no-untyped-def]
    base, _env, _proc, boot_output = embedded_portal
    assert "password:" in boot_output
    status, body = _get(base + "/readyz")
    assert status == 200, body
    checks = json.loads(body)["checks"]
    assert checks == {"database": "ok", "channel_layer": "ok", "broker": "ok"}
    status, body = _get(base + "/django-admin/login/")
    assert status == 200 and "csrfmiddlewaretoken" in body


def test_a_task_reaches_the_worker_and_its_push_crosses_processes(embedded_portal) -> None:  # type: ignore[no-untyped-def]
    _base, env, _proc, _ = embedded_portal
    script = (
        "import asyncio, django, json, sys\n"
        "django.setup()\n"
        "from channels.layers import get_channel_layer\n"
        "from firezone_site.tasks import echo\n"
        "async def main():\n"
        "    layer = get_channel_layer()\n"
        "    ch = await layer.new_channel()\n"
        "    await asyncio.to_thread(echo.delay, ch, {'nonce': sys.argv[1]})\n"
        "    msg = await asyncio.wait_for(layer.receive(ch), 30)\n"
        "    print(json.dumps(msg))\n"
        "asyncio.run(main())\n"
    )
    nonce = uuid.uuid4().hex
    env = {**env, "DJANGO_SETTINGS_MODULE": "firezone_site.settings"}
    result = subprocess.run(
        [sys.executable, "-c", script, nonce],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"type": "echo", "nonce": nonce}


def test_ctrl_c_stops_every_process_last(embedded_portal) -> None:  # type: ignore[no-untyped-def]
    _base, _env, proc, _ = embedded_portal
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert len(children) == 3  # daphne, worker, beat
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    time.sleep(0.5)
    for pid in children:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
        )


def test_the_embedded_channel_layer_delivers_between_processes(tmp_path: Path) -> None:
    env = {**_embedded_env(tmp_path), "DJANGO_SETTINGS_MODULE": "firezone_site.settings"}
    receiver = (
        "import asyncio, django, json, sys, time\n"
        "django.setup()\n"
        "from channels.layers import get_channel_layer\n"
        "async def main():\n"
        "    layer = get_channel_layer()\n"
        "    ch = await layer.new_channel()\n"
        "    await layer.group_add('gw', ch)\n"
        "    print('ready', flush=True)\n"
        "    msg = await asyncio.wait_for(layer.receive(ch), 20)\n"
        "    print(json.dumps(msg), flush=True)\n"
        "asyncio.run(main())\n"
    )
    sender = (
        "import asyncio, django\n"
        "django.setup()\n"
        "from channels.layers import get_channel_layer\n"
        "asyncio.run(get_channel_layer().group_send('gw', {'type': 'reject_access', 'id': 7}))\n"
    )
    recv = subprocess.Popen(
        [sys.executable, "-c", receiver], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    assert recv.stdout is not None
    assert recv.stdout.readline().strip() == "ready"
    subprocess.run([sys.executable, "-c", sender], cwd=REPO, env=env, check=True, timeout=30)
    out, _ = recv.communicate(timeout=30)
    assert json.loads(out.strip()) == {"type": "reject_access", "id": 7}
