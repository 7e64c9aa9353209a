"""Store fixtures shared by every store test (and reusable by tests/ha): a real PostgreSQL.

``pg_url`` starts one private PostgreSQL 15 cluster per test session (see ``tests/store/pg.py``)
and yields a ``postgresql+psycopg://`` URL of its ``warren`` database. Tests that need an empty
schema call :func:`reset_postgres` first (or use ``fresh_pg_url``).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.pg import PostgresUnavailable, start_postgres


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        url, stop = start_postgres(tmp_path_factory.mktemp("postgres"))
    except PostgresUnavailable as error:
        pytest.fail(f"cannot start the test PostgreSQL: {error}", pytrace=False)
    try:
        yield url
    finally:
        stop()


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
