"""The README's first command works in a fresh virtual environment (no TensorFlow in it)."""

from __future__ import annotations

import json
import re
import subprocess
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def readme_command() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"```bash\n(pip install \. && tfless predict [^\n]+)\n```", text)
    assert match, "README lost its install-and-run command"
    return match.group(1)


def test_install_and_run_example_in_fresh_venv(tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    command = readme_command().replace("pip install .", f"{bin_dir / 'pip'} install -q .")
    command = command.replace("tfless predict", f"{bin_dir / 'tfless'} predict")
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    predicted = [int(m) for m in re.findall(r"sample \d+: class (\d+)", proc.stdout)]
    truth = json.loads((ROOT / "examples" / "digits_samples_labels.json").read_text())
    assert predicted == truth, proc.stdout
    check = subprocess.run([str(bin_dir / "python"), "-c", "import tensorflow"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode != 0, "the fresh venv should not contain TensorFlow"

