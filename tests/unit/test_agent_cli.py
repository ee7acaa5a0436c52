"""The agents' CLIs: argument handling and config errors (no devices are created here)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from agents import logging as agent_logging
from agents.client import cli as client_cli
from agents.gateway import cli as gateway_cli
from agents.gateway import portal as gateway_portal
from agents.io.driver import MODES
from agents.io.runtime import DEFAULT_IO_MODE


def test_the_default_io_mode_is_a_known_mode() -> None:
    assert DEFAULT_IO_MODE in MODES
    assert gateway_cli.build_parser().parse_args([]).io_mode == DEFAULT_IO_MODE
    assert client_cli.build_parser().parse_args([]).io_mode == DEFAULT_IO_MODE
    portal_args = gateway_portal.build_parser().parse_args(["--portal-url", "http://p"])
    assert portal_args.io_mode == DEFAULT_IO_MODE


def test_portal_mode_rejects_an_unknown_io_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        gateway_cli.main(["--portal-url", "http://p", "--io-mode", "turbo"])
    assert exc.value.code == 2
    assert "turbo" in capsys.readouterr().err


@pytest.mark.parametrize("main", [gateway_cli.main, client_cli.main])
def test_it_requires_a_config(main: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert callable(main)
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "--static-config" in capsys.readouterr().err


@pytest.mark.parametrize("main", [gateway_cli.main, client_cli.main])
def test_it_rejects_an_unknown_io_mode(main: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert callable(main)
    with pytest.raises(SystemExit) as exc:
        main(["--static-config", "x.toml", "--io-mode", "turbo"])
    assert exc.value.code == 2
    assert "turbo" in capsys.readouterr().err


def test_it_rejects_an_interface_name_the_kernel_would_refuse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        gateway_cli.main(["--static-config", "x.toml", "--ifname", "a-name-that-is-too-long"])
    assert "invalid interface name" in capsys.readouterr().err


def test_a_bad_config_exits_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "gw.toml"
    config.write_text('[interface]\nprivate_key = "not base64!"\nipv4 = "100.64.0.1"\n')
    assert gateway_cli.main(["--static-config", str(config)]) == 2
    assert "interface.private_key" in capsys.readouterr().err
    missing = tmp_path / "missing.toml"
    assert client_cli.main(["--static-config", str(missing)]) == 2
    assert "missing.toml" in capsys.readouterr().err


@pytest.mark.parametrize("main", [gateway_cli.main, client_cli.main])
def test_static_mode_logs_through_the_redacting_formatters(main: object, tmp_path: Path) -> None:
    assert callable(main)
    missing = str(tmp_path / "missing.toml")
    for flags, formatter in (([], agent_logging.KeyValueFormatter),
                             (["--log-json"], agent_logging.JsonFormatter)):  # fmt: skip
        assert main(["--static-config", missing, *flags]) == 2
        handlers = logging.getLogger().handlers
        assert len(handlers) == 1
        assert type(handlers[0].formatter) is formatter
        record = logging.makeLogRecord({"msg": "url ?token=fzg_1_s3cr3t", "token": "s3cr3t"})
        line = handlers[0].format(record)
        assert "s3cr3t" not in line
        assert "***" in line
