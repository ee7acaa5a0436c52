"""`make fuzz`: coverage-guided runs of every target with atheris (libFuzzer), figures as JSON.

    python -m tests.fuzz.run [--seconds 30] [--targets a,b]

Each target runs in its own process for ``--seconds`` (``FUZZ_SECONDS`` in the Makefile), starting
from its committed corpus ``tests/fuzz/corpus/<target>/``; inputs that reach new coverage are
written to ``var/fuzz/corpus/<target>/`` (not committed; ``python -m tests.fuzz.run --merge``
adds those that reach coverage the committed corpus lacks, libFuzzer's ``-merge=1``). An input
that makes the target raise is counted, saved to ``var/fuzz/crashes/<target>/`` and the run goes
on, so one run reports every kind of failure.

Prints one JSON object: per target the inputs executed, the rate (execs/s), the exceptions (count
and the distinct kinds), and libFuzzer's coverage figures; exits 1 if any target raised.
Needs the optional ``fuzz`` extra (``pip install -e '.[fuzz]'``); the corpus replay in ``make test``
does not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "var" / "fuzz"


def _merge_launcher(name: str) -> Path:
    """libFuzzer's -merge re-runs its own argv[0] for the inner passes: a script that starts this
    child again with the libFuzzer arguments it is given."""
    path = WORK / f"merge-{name}.sh"
    path.write_text(
        f'#!/bin/sh\ncd "{ROOT}" && exec "{sys.executable}" -m tests.fuzz.run'
        f' --child {name} --libfuzzer "$@"\n'
    )
    path.chmod(0o755)
    return path


def _child(
    name: str,
    seconds: int,
    stats_path: Path,
    merge: bool = False,
    libfuzzer_args: list[str] | None = None,
) -> None:
    import atheris

    from tests.fuzz import targets

    # tomllib is pure Python: instrumenting it lets the fuzzer learn TOML syntax.
    with atheris.instrument_imports(include=["agents", "gateways", "tomllib"]):
        module = targets.load(name)
        one_input = targets.one_input(module)
        one_input(b"")  # imports done lazily by the target are instrumented too
    crashes = WORK / "crashes" / name
    stats: dict[str, Any] = {"inputs": 0, "exceptions": 0, "kinds": {}}
    started = time.monotonic()
    last_write = [0.0]

    def write_stats() -> None:
        stats["seconds"] = round(time.monotonic() - started, 3)
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stats))
        tmp.replace(stats_path)

    def test_one_input(data: bytes) -> None:
        stats["inputs"] += 1
        try:
            one_input(data)
        except Exception as exc:  # every failure is counted and saved, the run goes on
            stats["exceptions"] += 1
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            kind = f"{type(exc).__name__} at {Path(frame.filename).name}:{frame.lineno}"
            stats["kinds"][kind] = stats["kinds"].get(kind, 0) + 1
            crashes.mkdir(parents=True, exist_ok=True)
            (crashes / hashlib.sha1(data).hexdigest()).write_bytes(data)
        if stats["inputs"] % 256 == 0:
            now = time.monotonic()
            if now - last_write[0] >= 1.0:
                last_write[0] = now
                write_stats()

    corpus = targets.CORPUS_ROOT / name
    work = WORK / "corpus" / name
    work.mkdir(parents=True, exist_ok=True)
    write_stats()
    if libfuzzer_args is not None:  # an inner pass of a merge (see _merge_launcher)
        argv = [str(_merge_launcher(name)), *libfuzzer_args]
    elif merge:
        # Add to the committed corpus only the saved inputs that reach coverage it lacks.
        argv = [str(_merge_launcher(name)), "-merge=1", "-timeout=30", str(corpus), str(work)]
    else:
        argv = [
            sys.argv[0],
            f"-max_total_time={seconds}",
            "-timeout=30",
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
            str(work),
            str(corpus),
        ]
    atheris.Setup(argv, test_one_input)
    try:
        atheris.Fuzz()
    finally:
        write_stats()


_DONE = re.compile(r"Done (\d+) runs in (\d+) second")
_COV = re.compile(r"cov: (\d+) ft: (\d+) corp: (\d+)/")


def _run_target(name: str, seconds: int) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    stats_path = WORK / f"{name}.stats.json"
    stats_path.unlink(missing_ok=True)
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--seconds", str(seconds)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    wall = time.monotonic() - started
    (WORK / f"{name}.log").write_text(proc.stderr)
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        stats = {"inputs": 0, "exceptions": 0, "kinds": {}, "seconds": wall}
    done = _DONE.findall(proc.stderr)
    inputs = int(done[-1][0]) if done else int(stats["inputs"])
    fuzz_seconds = max(float(stats.get("seconds") or wall), 1e-9)
    cov = _COV.findall(proc.stderr)
    return {
        "inputs": inputs,
        "seconds": round(fuzz_seconds, 1),
        "rate_per_s": round(inputs / fuzz_seconds, 1),
        "exceptions": int(stats["exceptions"]),
        "exception_kinds": stats["kinds"],
        "coverage": int(cov[-1][0]) if cov else None,
        "features": int(cov[-1][1]) if cov else None,
        "corpus_size": int(cov[-1][2]) if cov else None,
        "exit_code": proc.returncode,
        "log": str((WORK / f"{name}.log").relative_to(ROOT)),
    }


def main() -> int:
    from tests.fuzz import targets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("FUZZ_SECONDS", 30)))
    parser.add_argument("--targets", default=",".join(targets.NAMES))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add the inputs earlier runs saved in var/fuzz/corpus that reach new coverage to "
        "the committed corpus (libFuzzer -merge=1), instead of fuzzing",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--libfuzzer", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        stats = WORK / f"{args.child}.stats.json"
        _child(args.child, args.seconds, stats, args.merge, args.libfuzzer)
        return 0
    names = [n for n in args.targets.split(",") if n]
    for name in names:
        targets.load(name)  # fail fast on a typo
    if args.merge:
        for name in names:
            before = len(list((targets.CORPUS_ROOT / name).iterdir()))
            subprocess.run(
                [sys.executable, "-m", "tests.fuzz.run", "--child", name, "--merge"],
                cwd=ROOT,
                capture_output=True,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                check=True,
            )
            after = len(list((targets.CORPUS_ROOT / name).iterdir()))
            print(f"{name}: {after - before} inputs added ({after} in all)")
        return 0
    results = {name: _run_target(name, args.seconds) for name in names}
    total_inputs = sum(r["inputs"] for r in results.values())
    total_exceptions = sum(r["exceptions"] for r in results.values())
    crashed = [n for n, r in results.items() if r["exit_code"] not in (0,) or r["inputs"] == 0]
    summary = {
        "fuzz_seconds_per_target": args.seconds,
        "targets": results,
        "total_inputs": total_inputs,
        "total_exceptions": total_exceptions,
        "runs_that_did_not_finish_cleanly": crashed,
    }
    print(json.dumps(summary, indent=2))
    return 1 if total_exceptions or crashed else 0


if __name__ == "__main__":
    sys.exit(main())
