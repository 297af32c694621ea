"""Run the tfless benchmark on the standard model set and print the tables.

    .venv/bin/python bench/run.py            # all models (~15 min on 2 cores)
    .venv/bin/python bench/run.py --quick    # digits CNN + MLP, few iterations
    .venv/bin/python bench/run.py --models mlp resnet50 --threads 2

Models are built with Keras in a separate process (bench/models.py) and cached in the
cache directory; all measurements are made by `tfless.bench` in fresh subprocesses.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tfless.bench import Settings
from tfless.bench_report import run_bench

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import models as catalog  # noqa: E402  (bench/models.py; imports Keras only inside build())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits CNN and MLP, few iterations")
    parser.add_argument("--models", nargs="+", choices=catalog.ORDER, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calls", type=int, default=None, help="batch-1 latency calls")
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)

    settings = Settings.quick() if args.quick else Settings()
    if args.cache_dir:
        settings.cache_dir = args.cache_dir
    settings.threads = args.threads
    if args.calls:
        settings.latency_calls = args.calls
    names = args.models or (catalog.QUICK if args.quick else catalog.ORDER)
    print(f"[bench] building/caching models in {settings.cache_dir}", file=sys.stderr, flush=True)
    built = subprocess.run([sys.executable, str(HERE / "models.py"), str(settings.cache_dir), *names],
                           check=True, capture_output=True, text=True)
    paths = json.loads(built.stdout.strip().splitlines()[-1])
    table = run_bench([(n, Path(paths[n]), catalog.TOKENS.get(n)) for n in names], settings)
    print(table)
    if args.output:
        args.output.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
