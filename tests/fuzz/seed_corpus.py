"""Write the committed corpus from each target's `seeds()` (real captured messages, docs examples,
inputs that once found a bug), and optionally add inputs a fuzz run saved.

    python -m tests.fuzz.seed_corpus              # (re)write tests/fuzz/corpus/<target>/<seed>
    python -m tests.fuzz.seed_corpus --crashes    # also add var/fuzz/crashes/<target>/* (found-bug
                                                  # inputs: commit them with the fix)

Seeds are deterministic (fixed keys, rng seeds and clock), so rewriting yields the same files.
"""

from __future__ import annotations

import argparse
import re
import shutil

from tests.fuzz import targets
from tests.fuzz.run import WORK


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crashes", action="store_true")
    args = parser.parse_args()
    for name in targets.NAMES:
        out = targets.CORPUS_ROOT / name
        out.mkdir(parents=True, exist_ok=True)
        count = 0
        for seed, data in targets.seeds(targets.load(name)):
            (out / re.sub(r"[^A-Za-z0-9_.-]", "_", seed)).write_bytes(data)
            count += 1
        if args.crashes and (WORK / "crashes" / name).is_dir():
            for path in sorted((WORK / "crashes" / name).iterdir()):
                shutil.copy(path, out / f"found-{path.name[:16]}")
                count += 1
        print(f"{name}: {count} inputs in {out}")


if __name__ == "__main__":
    main()
