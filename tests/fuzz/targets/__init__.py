"""Fuzz targets: one module per target, each with the same small interface.

A target module defines

* ``one_input(data: bytes) -> None``: feed one input; returns normally when the input was handled
  as documented (accepted, or refused with the target's documented "invalid input" exception,
  which ``one_input`` catches itself), raises anything else: an unexpected exception, or an
  ``AssertionError`` when the target's property does not hold;
* ``INVALID``: the exception types that mean "invalid input" for the code under test;
* ``seeds() -> Iterator[tuple[str, bytes]]``: real inputs (captured messages, docs examples, inputs
  that once found a bug) for ``python -m tests.fuzz.seed_corpus`` to write into
  ``tests/fuzz/corpus/<target>/``.

``one_input`` never touches the network or the database, so the corpus replays in ``make test``
without atheris and the coverage-guided runs (``make fuzz``) do not depend on services.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import cast

NAMES = (
    "wireguard_device",
    "packet_filter",
    "protocol_decoder",
    "gateway_consumer",
    "static_config",
)

CORPUS_ROOT = Path(__file__).resolve().parent.parent / "corpus"


def load(name: str) -> ModuleType:
    if name not in NAMES:
        raise KeyError(f"unknown fuzz target {name!r} (known: {', '.join(NAMES)})")
    return importlib.import_module(f"tests.fuzz.targets.{name}")


def one_input(module: ModuleType) -> Callable[[bytes], None]:
    return cast(Callable[[bytes], None], module.one_input)


def seeds(module: ModuleType) -> Iterator[tuple[str, bytes]]:
    return cast(Iterator[tuple[str, bytes]], module.seeds())
