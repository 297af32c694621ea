"""A longer fuzz campaign than the test suite's: many mutated files of every format, with
the machinery of tests/formats/test_fuzz.py (seed files built once by Keras, each case run
in a tfless-only worker with a timeout, outcomes must be 'loaded and predicted' or a
TflessError). Prints per format the outcome counts, error classes, the worker's peak RSS,
cases per second, and the first failures in full.

    .venv/bin/python bench/fuzz.py                      # 2,000 cases per format
    .venv/bin/python bench/fuzz.py --cases 10000 --only keras,h5 --start 5000
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.formats import test_fuzz as fuzz  # noqa: E402


def seeds(cache: Path) -> Path:
    key = hashlib.sha256((fuzz.inspect_source(fuzz._build_seeds) + fuzz.SEED_VERSION)
                         .encode()).hexdigest()[:16]
    path = cache / key
    if not (path / "done").exists():
        path.mkdir(parents=True, exist_ok=True)
        fuzz._build_seeds(path)
        (path / "done").write_text("ok")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases per format")
    parser.add_argument("--start", type=int, default=0,
                        help="first case index (cases are numbered; the suite runs 0..199)")
    parser.add_argument("--only", default=",".join(fuzz.FORMATS))
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "tfless-fuzz")
    args = parser.parse_args()
    seed_dir = seeds(args.cache)
    failed = 0
    print("| format | cases | loaded | TflessError | failures | peak RSS MB | cases/s |")
    print("|---|---|---|---|---|---|---|")
    details = []
    for fmt in args.only.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = fuzz.run_campaign(fmt, seed_dir, Path(tmp), args.cases, first=args.start)
            seconds = time.perf_counter() - start
        failed += len(result["failures"])
        print(f"| {fmt} | {args.cases} | {result['ok']} | {result['error']} "
              f"{dict(sorted(result['kinds'].items()))} | {len(result['failures'])} | "
              f"{result['rss_mb']:.0f} | {args.cases / seconds:.0f} |", flush=True)
        details += result["failures"][:3]
    for text in details:
        print("\n" + text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
