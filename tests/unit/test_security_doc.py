"""docs/security.md points at the tests that hold each promise: those pointers must stay true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")


def test_every_test_file_the_threat_model_names_exists() -> None:
    paths = set(re.findall(r"`(tests/[\w/.-]+)`", DOC))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p).exists())
    assert not missing, missing


def test_every_test_the_threat_model_names_exists() -> None:
    names = set(re.findall(r"`(test_\w+)`", DOC))
    assert len(names) > 20
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py"))
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", sources, re.M))
    assert not sorted(names - defined), sorted(names - defined)
