"""Store fixtures shared by every store test (and reusable by tests/ha): a real PostgreSQL.

``pg_url`` starts one private PostgreSQL 15 cluster per test session (see ``tests/store/pg.py``)
and yields a ``postgresql+psycopg://`` URL of its ``warren`` database. Tests that need an empty
schema call :func:`reset_postgres` first (or use ``fresh_pg_url``). Every test cluster is
started by :func:`start_test_cluster`: without PostgreSQL's binaries a test fails, or is
skipped with WARREN_TEST_SKIP_MISSING (``tests/missing_tools.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.missing_tools import tool_missing
from tests.store.pg import PostgresCluster, PostgresUnavailable, start_cluster


def start_test_cluster(tmpdir: str | os.PathLike[str]) -> PostgresCluster:
    """A running private cluster (``pg.start_cluster``), or the test failed or skipped when
    PostgreSQL cannot be had."""
    try:
        return start_cluster(tmpdir)
    except PostgresUnavailable as error:
        reason = str(error)
    tool_missing("PostgreSQL 15", reason)    # outside the except: no chained traceback


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cluster = start_test_cluster(tmp_path_factory.mktemp("postgres"))
    try:
        yield cluster.url
    finally:
        cluster.destroy()


def reset_postgres(url: str) -> None:
    """Drop every table of the database behind ``url`` (a clean slate for one test)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture
def fresh_pg_url(pg_url: str) -> str:
    """``pg_url`` with its schema emptied, for tests that must start from nothing."""
    reset_postgres(pg_url)
    return pg_url
