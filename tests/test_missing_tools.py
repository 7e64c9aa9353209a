"""WARREN_TEST_SKIP_MISSING (``tests/missing_tools.py``): a test whose tool is missing fails
loudly by default, as CI wants, and is skipped with a reason naming the tool when the variable
is set. Checked on a real case: the PostgreSQL tests with ``WARREN_PG_BIN`` pointing where no
PostgreSQL is, in a pytest of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.missing_tools import SKIP_MISSING

REPO = Path(__file__).resolve().parents[1]
PG_TEST = "tests/store/test_sql_store.py::test_flush_while_database_is_down_keeps_writes"


def run_pg_test(tmp_path: Path, skip: str | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WARREN_PG_BIN=str(tmp_path / "no-postgresql-here"))
    env.pop(SKIP_MISSING, None)
    if skip is not None:
        env[SKIP_MISSING] = skip
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           "-n", "0", PG_TEST], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_a_missing_tool_fails_by_default(tmp_path):
    run = run_pg_test(tmp_path, None)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 failed" in run.stdout, run.stdout
    assert "PostgreSQL 15 is missing" in run.stdout, run.stdout
    assert f"set {SKIP_MISSING}=1" in run.stdout, run.stdout


@pytest.mark.parametrize("value", ["1", "yes"])
def test_a_missing_tool_is_skipped_with_its_reason_when_asked(tmp_path, value):
    run = run_pg_test(tmp_path, value)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 skipped" in run.stdout, run.stdout
    assert "PostgreSQL 15 is missing" in run.stdout and "WARREN_PG_BIN" in run.stdout, \
        run.stdout


def test_zero_does_not_skip(tmp_path):
    run = run_pg_test(tmp_path, "0")
    assert run.returncode == 1 and "1 failed" in run.stdout, run.stdout
