"""bench/standalone.py: the quick C/NumPy run end to end, and the table's verdicts and
failure cells. No timing is asserted."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "standalone.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_standalone", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_run_without_executables_prints_the_c_table(tmp_path: Path) -> None:
    out = tmp_path / "table.md"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-executables",
                           "--output", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "### C binary vs the NumPy runtime (batch 1)" in done.stdout
    assert "### Standalone executables" not in done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("| digits_cnn |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "5,194" and cells[2].endswith("KB")
    assert re.fullmatch(r"[\d.]+ ms", cells[4]) and re.fullmatch(r"[\d.]+ ms", cells[5])
    assert re.fullmatch(r"[\d.]+x", cells[6])
    assert float(cells[7].split()[-1]) <= 1e-5  # the C binary agrees with the runtime
    assert "NumPy " in done.stdout and "PyInstaller " in done.stdout
    assert out.read_text().strip() == done.stdout.strip()


def test_table_verdicts_and_unbuilt_tf_route() -> None:
    bench = load_script()
    row = bench.Row("cnn", params=10,
                    sizes={"onefile": 45_000_000, "onedir": 60_000_000, "c_binary": 40_000,
                           "c_source": 90_000},
                    cold={"onefile": 0.8, "onedir": 0.35,
                          "tf_onefile": "could not be built: PyInstaller did not finish within 20 min",
                          "tf_onedir": 6.0},
                    c_per_sample_ms=0.01, numpy_batch1_ms=0.2, c_matches_runtime="max abs diff 0")
    row.sizes["tf_onedir"] = 600_000_000
    args = argparse.Namespace(runs=5, no_executables=False)
    text = bench.table([row], args)
    onefile = next(line for line in text.splitlines() if "| tfless onefile |" in line)
    assert "size ≤ 40 MB: NOT met" in onefile and "start ≤ 1 s: met" in onefile
    onedir = next(line for line in text.splitlines() if "| tfless onedir |" in line)
    assert "start ≤ 0.3 s: NOT met" in onedir
    assert "could not be built: PyInstaller did not finish within 20 min" in text
    assert "onedir: the TF route is 10.0x the size" in text
    assert "takes 17.1x as long" in text
    assert "| cnn | 10 | 40 KB | 90 KB | 0.010 ms | 0.200 ms | 20.0x | max abs diff 0 |" in text
