"""Fixtures of the end-to-end durability suite: one broker per test, on each of three stores.

``store`` runs a test on the journal store, the SQL store on SQLite (the default URL, a file in
the broker's data directory) and the SQL store on a real PostgreSQL (the session cluster of
``tests/store``, with a fresh database per test so tests never see each other's rows).
``make_broker`` builds a :class:`BrokerProcess` on that store and stops it after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from tests.broker_process import BrokerProcess
from tests.store.conftest import pg_url  # noqa: F401  (the session PostgreSQL, reused here)

STORES = ["journal", "sqlite", "postgres"]


def fresh_database(url: str) -> str:
    """Create an empty database on the server behind ``url``; return its URL."""
    name = "durability_" + uuid.uuid4().hex[:12]
    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> dict[str, str]:
    """BrokerProcess arguments selecting one store."""
    if request.param == "journal":
        return {"store": "journal"}
    if request.param == "sqlite":
        return {"store": "sql"}
    return {"store": "sql", "store_url": fresh_database(request.getfixturevalue("pg_url"))}


@pytest.fixture
def make_broker(tmp_path, store) -> Iterator[Callable[..., BrokerProcess]]:
    made: list[BrokerProcess] = []

    def make(**kwargs: Any) -> BrokerProcess:
        args = dict(store)
        args.update(kwargs)
        broker = BrokerProcess(tmp_path / f"data{len(made)}", **args)
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()
        broker.kill()
