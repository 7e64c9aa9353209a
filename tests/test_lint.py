"""ruff (configured in pyproject.toml) finds nothing in warren/: lint runs with the suite, so
CI's one command checks it too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean_on_warren():
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "warren"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
