"""HA fixtures: pairs of subprocess brokers on one store, and a private PostgreSQL to share.

The PostgreSQL cluster is this package's own (not the session ``pg_url`` of tests/store): the
database-fault tests stop and start it, which must not disturb other packages' tests.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

import pika
import pytest

from tests.broker_process import READY_MARK, BrokerProcess
from tests.store.conftest import reset_postgres, start_test_cluster

#: Short leases so the lease tests run in seconds (the defaults are 10 s / 2 s).
LEASE_ARGS = ["--lease-ttl", "2", "--lease-renew", "0.5"]


@pytest.fixture(scope="package")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    cluster = start_test_cluster(tmp_path_factory.mktemp("ha-postgres"))
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


def db_brokers(tmp_path, url: str, lease_args: list[str]) -> Pair:
    """Brokers warren@a and warren@b on the SQL store at ``url``, with the lease ``lease_args``."""
    return Pair([BrokerProcess(tmp_path / n, store="sql", store_url=url,
                               extra_args=["--ha", "shared-db", "--node-name", f"warren@{n}",
                                           *lease_args])
                 for n in ("a", "b")])


@pytest.fixture
def db_pair(tmp_path, ha_pg_url: str) -> Iterator[Pair]:
    pair = db_brokers(tmp_path, ha_pg_url, LEASE_ARGS)
    yield pair
    pair.stop()


@pytest.fixture
def default_lease_pair(tmp_path, ha_pg_url: str) -> Iterator[Pair]:
    """A PostgreSQL pair with the default lease (10 s / 2 s): the fast path must carry it."""
    pair = db_brokers(tmp_path, ha_pg_url, [])
    yield pair
    pair.stop()


# ---------------------------------------------------------------- client helpers
def connect(b: BrokerProcess) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", b.amqp_port, connection_attempts=1, socket_timeout=5))


def refuses_amqp(b: BrokerProcess) -> bool:
    """True if nothing accepts AMQP connections on b's port (a slave or a fenced master)."""
    import socket
    try:
        with socket.create_connection(("127.0.0.1", b.amqp_port), timeout=2) as s:
            s.sendall(b"AMQP\x00\x00\x09\x01")
            s.settimeout(2)
            return s.recv(1) == b""  # accepted but closed at once: not serving either
    except OSError:
        return True


def publish_confirmed(b: BrokerProcess, queue: str, bodies: list[bytes]) -> None:
    with connect(b) as conn:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        for body in bodies:
            ch.basic_publish("", queue, body, pika.BasicProperties(delivery_mode=2))


def drain(b: BrokerProcess, queue: str) -> list[tuple[bytes, bool]]:
    """Every message of ``queue`` as (body, redelivered), acked."""
    out = []
    with connect(b) as conn:
        ch = conn.channel()
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return out
            out.append((body, method.redelivered))


class FailoverPublisher(threading.Thread):
    """Publishes confirmed persistent messages "0", "1", ... through whichever broker answers.

    The pika way to fail over: a list of ConnectionParameters, tried in turn until one
    connects. A publish whose confirm did not arrive is retried with the same body on the next
    connection, so it may be stored twice; ``retried`` records which bodies that applies to.
    """

    def __init__(self, pair: Pair, queue: str) -> None:
        super().__init__(daemon=True)
        self.pair = pair
        self.queue = queue
        self.confirmed: list[bytes] = []
        self.retried: set[bytes] = set()
        self.reconnects = 0
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as error:  # noqa: BLE001 - the thread boundary: reported by the test
            self.error = error

    def _channel(self):
        deadline = time.monotonic() + 60
        while not self.stopping.is_set():
            for params in self.pair.amqp_urls():
                try:
                    conn = pika.BlockingConnection(params)
                    ch = conn.channel()
                    ch.queue_declare(self.queue, durable=True)
                    ch.confirm_delivery()
                    return conn, ch
                except pika.exceptions.AMQPError:
                    continue
            if time.monotonic() > deadline:
                raise AssertionError("no broker of the pair answered for 60 s")
            time.sleep(0.05)  # a reconnect back-off, as any client has
        return None, None

    def _run(self) -> None:
        n = 0
        conn, ch = self._channel()
        while not self.stopping.is_set():
            body = str(n).encode()
            try:
                ch.basic_publish("", self.queue, body, pika.BasicProperties(delivery_mode=2))
            except (pika.exceptions.AMQPError, OSError):
                self.retried.add(body)
                self.reconnects += 1
                with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                    conn.close()
                conn, ch = self._channel()
                continue
            self.confirmed.append(body)
            n += 1
        if conn is not None and conn.is_open:
            conn.close()

    def wait_confirmed(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.confirmed) < count:
            if self.error is not None:
                raise self.error
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.confirmed)} of {count} confirmed")
            time.sleep(0.01)


def kill_master_cycles(pair: "Pair", publisher: "FailoverPublisher", cycles: int,
                       ready_timeout: float) -> BrokerProcess:
    """Kill the master ``cycles`` times while ``publisher`` publishes through the pair.

    ``pair.brokers`` is (master, slave); each killed master is started again and must come
    back as the slave. Returns the master at the end, once the publisher has stopped.
    """
    master, slave = pair.brokers
    publisher.start()
    try:
        for _cycle in range(cycles):
            publisher.wait_confirmed(len(publisher.confirmed) + 20)
            master.kill()
            slave.wait_ready(ready_timeout)
            master.start(wait=False)                       # comes back as the slave
            master.wait_for_line("waiting for the lock held by")
            master, slave = slave, master
        publisher.wait_confirmed(len(publisher.confirmed) + 20)
    finally:
        publisher.stopping.set()
        publisher.join(30)
    return master


def check_no_loss(publisher: FailoverPublisher, got: list[bytes]) -> None:
    """Every confirmed body is there; a body is there twice only if its publish was retried."""
    from collections import Counter
    counts = Counter(got)
    missing = [b for b in publisher.confirmed if b not in counts]
    assert not missing, f"{len(missing)} confirmed messages lost, e.g. {missing[:5]}"
    dupes = {b for b, c in counts.items() if c > 1}
    assert dupes <= publisher.retried, f"unexpected duplicates {sorted(dupes - publisher.retried)[:5]}"
