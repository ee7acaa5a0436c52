"""Replay the committed fuzz corpus through every target (no atheris needed): each input that
ever found a bug, and each real captured message, must be handled as documented and satisfy the
target's property. `make fuzz` does the coverage-guided search; this keeps its findings fixed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuzz import targets

ROOT = Path(__file__).resolve().parents[2]


def _corpus(name: str) -> list[Path]:
    return sorted(p for p in (targets.CORPUS_ROOT / name).iterdir() if p.is_file())


@pytest.mark.parametrize("name", targets.NAMES)
def test_every_corpus_input_is_handled_as_documented(name: str) -> None:
    module = targets.load(name)
    module.reset()
    one_input = targets.one_input(module)
    files = _corpus(name)
    assert files, f"no corpus for {name}"
    started = time.monotonic()
    for path in files:
        try:
            one_input(path.read_bytes())
        except Exception as exc:
            raise AssertionError(f"{name}: {path.name} failed: {exc!r}") from exc
    # The replay is part of `make test`: it must stay quick (the whole corpus in well under 60 s).
    assert time.monotonic() - started < 30


def test_the_corpus_is_large_enough_and_holds_the_inputs_that_found_bugs() -> None:
    files = {name: {p.name for p in _corpus(name)} for name in targets.NAMES}
    assert sum(len(f) for f in files.values()) >= 50
    assert {
        "bug19-v4-icmpv6-fragment-out",
        "bug19-v6-icmp-fragment-out",
        "bug19-v4-icmpv6-fragment-in",
        "bug19-v6-icmp-fragment-in",
    } <= files["packet_filter"]
    # Real captured datagrams of our own WireGuard code: the handshake and transport messages.
    assert {"handshake-0-a-initiation", "handshake-1-b-response", "data-a-to-b-0"} <= files[
        "wireguard_device"
    ]


def test_the_captured_datagrams_still_decrypt() -> None:
    # The WireGuard corpus is only worth replaying while its transport messages authenticate
    # against the target's session (fixed keys, rng seeds and clock): each is delivered once.
    module = targets.load("wireguard_device")
    module.reset()
    for path in _corpus("wireguard_device"):
        module.one_input(path.read_bytes())
    delivered = module.state_delivered()
    assert {who for who, _, _ in delivered} == {"a", "b"}  # both directions
    assert len(delivered) >= 5
    module.reset()


def test_make_fuzz_runs_the_targets_and_reports_json() -> None:
    pytest.importorskip("atheris")  # the optional `fuzz` extra
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--seconds", "1", "--targets", "protocol_decoder"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    figures = report["targets"]["protocol_decoder"]
    assert figures["inputs"] > 0 and figures["rate_per_s"] > 0
    assert figures["exceptions"] == 0 and report["total_exceptions"] == 0
