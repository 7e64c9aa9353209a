"""HA fixtures: pairs of subprocess brokers on one store, and a private PostgreSQL to share.

The PostgreSQL cluster is this package's own (not the session ``pg_url`` of tests/store): the
database-fault tests stop and start it, which must not disturb other packages' tests.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pika
import pytest

from tests.broker_process import READY_MARK, BrokerProcess
from tests.store.conftest import reset_postgres
from tests.store.pg import PostgresUnavailable, start_cluster

#: Short leases so the lease tests run in seconds (the defaults are 10 s / 2 s).
LEASE_ARGS = ["--lease-ttl", "2", "--lease-renew", "0.5"]


@pytest.fixture(scope="package")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("ha-postgres"))
    except PostgresUnavailable as error:
        pytest.fail(f"cannot start the test PostgreSQL: {error}", pytrace=False)
    yield cluster
    cluster.destroy()


@pytest.fixture
def ha_pg_url(pg_cluster: object) -> str:
    """The package cluster's URL, running and with an empty schema."""
    if not pg_cluster._running:  # a test stopped it and failed before starting it again
        pg_cluster.start()
    reset_postgres(pg_cluster.url)
    return pg_cluster.url


class Pair:
    """Two brokers of one master/slave pair; ``brokers`` in start order."""

    def __init__(self, brokers: list[BrokerProcess]) -> None:
        self.brokers = brokers

    def start(self) -> None:
        for b in self.brokers:
            b.start(wait=False)

    def masters(self) -> list[BrokerProcess]:
        """Brokers that are alive and have logged (since their start) that they are master."""
        return [b for b in self.brokers if alive(b) and
                sum(READY_MARK in line for line in b.lines) > fenced_count(b)]

    def wait_master(self, timeout: float = 30.0, exclude: BrokerProcess | None = None
                    ) -> BrokerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [b for b in self.masters() if b is not exclude]
            if found:
                return found[0]
            time.sleep(0.02)
        raise AssertionError("no master:\n" + "\n----\n".join(b.log() for b in self.brokers))

    def amqp_urls(self) -> list[pika.ConnectionParameters]:
        return [pika.ConnectionParameters("127.0.0.1", b.amqp_port,
                                          connection_attempts=1, socket_timeout=2,
                                          blocked_connection_timeout=10)
                for b in self.brokers]

    def stop(self) -> None:
        for b in self.brokers:
            if b.proc is not None and b.proc.poll() is None:
                try:
                    os.killpg(b.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            b.stop(timeout=10)
            b.kill()


def alive(b: BrokerProcess) -> bool:
    return b.proc is not None and b.proc.poll() is None


def fenced_count(b: BrokerProcess) -> int:
    return sum("role: master -> waiting" in line for line in b.lines)


@pytest.fixture
def file_pair(tmp_path) -> Iterator[Pair]:
    shared = tmp_path / "shared"
    pair = Pair([BrokerProcess(shared, extra_args=["--ha", "shared-file", "--node-name", n])
                 for n in ("warren@a", "warren@b")])
    yield pair
    pair.stop()


@pytest.fixture
def db_pair(tmp_path, ha_pg_url: str) -> Iterator[Pair]:
    pair = Pair([BrokerProcess(tmp_path / n, store="sql", store_url=ha_pg_url,
                               extra_args=["--ha", "shared-db", "--node-name", f"warren@{n}",
                                           *LEASE_ARGS])
                 for n in ("a", "b")])
    yield pair
    pair.stop()
