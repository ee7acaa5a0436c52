"""Replay the committed fuzz corpus through every target (no atheris needed): each input that
ever found a bug, and each real captured message, must be handled as documented and satisfy the
target's property. `make fuzz` does the coverage-guided search; this keeps its findings fixed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fuzz import targets


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
