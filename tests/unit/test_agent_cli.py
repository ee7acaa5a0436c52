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


def _documented_flags(markdown: str) -> dict[str, str]:
    """The flags table of docs/gateway-agent.md: flag -> its documented default column."""
    flags: dict[str, str] = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`--"):
            flags[cells[0].strip("`").split()[0].rstrip("`")] = cells[1].strip("`")
    return flags


def test_gateway_help_shows_every_mode_and_flag_and_the_docs_match_it() -> None:
    parser = gateway_cli.build_parser()
    help_text = parser.format_help()
    assert "--portal-url URL --token-file FILE" in help_text  # both modes are named up front
    assert "--static-config FILE" in help_text
    parsed = {f for a in parser._actions for f in a.option_strings if f.startswith("--")}
    parsed -= {"--help"}
    for flag in parsed:
        assert flag in help_text
    docs = (Path(__file__).parents[2] / "docs" / "gateway-agent.md").read_text()
    documented = _documented_flags(docs)
    assert set(documented) == parsed
    defaults = {a.option_strings[-1]: a.default for a in parser._actions if a.option_strings}
    assert documented["--io-mode"] == DEFAULT_IO_MODE == defaults["--io-mode"]
    assert documented["--listen-port"] == str(defaults["--listen-port"])
    assert documented["--state-dir"] == str(defaults["--state-dir"])


def test_gateway_refuses_two_modes_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        gateway_cli.main(["--portal-url", "http://p", "--static-config", "x.toml"])
    assert exc.value.code == 2
    assert "two modes" in capsys.readouterr().err


def test_portal_mode_warns_when_the_endpoint_is_guessed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = ["--portal-url", "http://x", "--state-dir", str(tmp_path), "--token", "t"]
    parser = gateway_portal.build_parser()
    with caplog.at_level(logging.WARNING, logger="agents"):
        gateway_portal.options_from_args(parser.parse_args(base), {})
    assert any("no --endpoint" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agents"):
        gateway_portal.options_from_args(parser.parse_args([*base, "--endpoint", "a:1"]), {})
    assert not any("no --endpoint" in r.getMessage() for r in caplog.records)
