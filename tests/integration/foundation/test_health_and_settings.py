from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

REPO = Path(__file__).resolve().parents[3]


def test_healthz_answers_without_touching_anything() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_reports_database_channel_layer_and_broker() -> None:
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body == {
        "status": "ok",
        "checks": {"database": "ok", "channel_layer": "ok", "broker": "ok"},
    }


@pytest.mark.django_db
def test_readyz_is_503_and_names_the_broken_part() -> None:
    with override_settings(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
            }
        }
    ):
        from channels.layers import channel_layers

        channel_layers.backends.clear()
        try:
            response = Client().get("/readyz")
        finally:
            channel_layers.backends.clear()
    body = response.json()
    assert response.status_code == 503
    # Names and ok/fail only: no exception text for an anonymous caller.
    assert body == {
        "status": "unavailable",
        "checks": {"database": "ok", "channel_layer": "fail", "broker": "ok"},
    }


def _start_django(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "FZ_TESTING", "DEBUG"}
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=REPO,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"DATABASE_URL": "postgres://u@h:5432/db"}, "SECRET_KEY"),
        ({"DATABASE_URL": "mysql://u@h/db", "SECRET_KEY": "x" * 40}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://u@h:5432/", "SECRET_KEY": "x" * 40}, "DATABASE_URL"),
        ({"REDIS_URL": "http://nope", "SECRET_KEY": "x" * 40}, "REDIS_URL"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"FZ_MAX_GATEWAYS_PER_SITE": "0"}, "FZ_MAX_GATEWAYS_PER_SITE"),
        ({"FZ_GATEWAY_RETENTION_DAYS": "a month"}, "FZ_GATEWAY_RETENTION_DAYS"),
    ],
)
def test_misconfiguration_fails_at_start_naming_what_to_set(
    env: dict[str, str], names: str, tmp_path: Path
) -> None:
    result = _start_django({**env, "FZ_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert names in result.stderr.splitlines()[-1]


def test_embedded_default_needs_nothing_set(tmp_path: Path) -> None:
    result = _start_django({"FZ_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "secret_key").exists()
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    # The generated key is kept: a second start reads the same one.
    first = (tmp_path / "secret_key").read_text()
    _start_django({"FZ_VAR_DIR": str(tmp_path)})
    assert (tmp_path / "secret_key").read_text() == first
