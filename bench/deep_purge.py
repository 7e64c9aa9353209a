"""Purge or delete of a deep queue on each store (issue 22): how long it takes, how long other
clients wait meanwhile, and whether the disk space comes back.

    python -m bench.deep_purge --messages 1000000 [--stores journal,sqlite,postgres,rabbitmq]
        [--pg-url postgresql+psycopg://USER@HOST:PORT/DB] [--op purge|delete] [--cwd CHECKOUT]
        [--rabbitmq-server PATH]

For each store: a broker declares a durable queue and stops; N persistent 100-byte messages
are written with the store's own API (what N confirmed publishes leave, ``deep_restart.fill``);
the broker is started on them under a 4 MiB paging budget. Then, while two other clients time
round trips (an MQTT client in another process, QoS 1 PUBLISH -> PUBACK to a topic nobody
reads: the reactor alone, ``bench.scale.RoundTrips``; and an AMQP publisher in a thread,
persistent messages to another durable queue, each confirmed before the next: the store's
writer too), one AMQP client purges (or deletes) the queue: the time to its purge-ok /
delete-ok (``answer s``), on the SQL store the time until the queue's rows are deleted (the
slices, ``rows s``), then the time until the store's disk usage stops dropping (sampled every
0.5 s; ``disk s``), and the disk usage before and after: the journal directory, the SQLite
file with its WAL, or ``pg_database_size`` (on PostgreSQL followed by the VACUUMs run on the
message tables by then, when the last ended, polled every 0.5 s up to 120 s after the rows,
and their dead rows left: 0 means the space is reusable). ``--pg-url`` names a server and a
database to connect to first; each run creates a database of its own there and drops it
after. ``--cwd`` runs the broker from another checkout, for a before/after in the same run.
``rabbitmq`` is the
reference: a private RabbitMQ node (``bench.brokers.RabbitMQ``) whose durable classic queue
gets the N messages by AMQP publishes (it has no store API to write with), then the same
probes and purge; its disk is its node directory. Nothing is asserted; figures for the report.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

import pika

from bench.deep_restart import fill
from bench.scale import RoundTrips
from warren.embedded.process import BrokerProcess
from warren.store.interface import resource_key
from warren.store.journal.store import JournalStore
from warren.store.sql.store import SqlStore

QUEUE = "bench.deep"
OTHER = "bench.other"
BUDGET = 4 * 1024 * 1024
#: How long the disk usage must stay put to count as settled.
SETTLED_S = 5.0


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (their blocks on disk: sparse or punched files count
    what they hold)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def pg_database(url: str) -> str:
    """A fresh database on the server of ``url``; its URL."""
    import psycopg
    name = "bench_purge_" + uuid.uuid4().hex[:10]
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def pg_drop(url: str) -> None:
    import psycopg
    admin, name = _plain(url).rsplit("/", 1)
    with psycopg.connect(admin + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_bytes(url: str) -> int:
    import psycopg
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else 0


def pg_vacuumed(url: str) -> tuple[int, int, int] | None:
    """PostgreSQL: once no VACUUM runs in the database, the message tables' (VACUUMs run,
    autovacuums run, dead rows left); None while one runs."""
    import psycopg
    with psycopg.connect(_plain(url), autocommit=True) as conn:
        running = conn.execute("SELECT count(*) FROM pg_stat_progress_vacuum "
                               "WHERE datname = current_database()").fetchone()
        if running and running[0]:
            return None
        row = conn.execute(
            "SELECT sum(vacuum_count), sum(autovacuum_count), sum(n_dead_tup) "
            "FROM pg_stat_user_tables "
            "WHERE relname IN ('warren_messages', 'warren_queue_messages')").fetchone()
    return (int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)) if row else None


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


class ConfirmProbe(threading.Thread):
    """Persistent publishes to another durable queue, one confirmed before the next: how long
    a client whose messages go to the store waits meanwhile."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.trips: list[tuple[float, float]] = []   # (when it began, round trip)
        self.halt = threading.Event()
        self.ready = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = conn.channel()
        channel.queue_declare(OTHER, durable=True)
        channel.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2)
        self.ready.set()
        while not self.halt.is_set():
            began = time.monotonic()
            channel.basic_publish("", OTHER, b"x" * 100, props)
            self.trips.append((began, time.monotonic() - began))
            time.sleep(0.01)
        channel.queue_purge(OTHER)
        conn.close()

    def summary(self, since: float = 0.0, until: float = float("inf")) -> str:
        """The confirms of the publishes that began in [since, until] (by default all)."""
        s = sorted(trip for began, trip in self.trips if since <= began <= until)
        if not s:
            return "no confirm"
        p99 = s[min(len(s) - 1, int(len(s) * 0.99))]
        return (f"confirmed publishes: n={len(s)} median {statistics.median(s) * 1e3:.1f} ms "
                f"p99 {p99 * 1e3:.1f} ms max {s[-1] * 1e3:.1f} ms")


def settle(measure: Callable[[], int], timeout: float = 1800) -> tuple[int, float]:
    """Sample ``measure`` every 0.5 s until it has not dropped for ``SETTLED_S``: (the last
    value, seconds until its last drop)."""
    began = time.monotonic()
    last = measure()
    last_drop = began
    while time.monotonic() - last_drop < SETTLED_S and time.monotonic() - began < timeout:
        time.sleep(0.5)
        now = measure()
        if now < last:
            last_drop = time.monotonic()
        last = now
    return last, last_drop - began


def rows_left(data: Path, url: str | None) -> int:
    """The purged queue's references still in the SQL store's database (its slices to go)."""
    query = "SELECT count(*) FROM warren_queue_messages WHERE queue_key = "
    key = resource_key("/", QUEUE).encode()
    if url:
        import psycopg
        with psycopg.connect(_plain(url), autocommit=True) as conn:
            row = conn.execute(query + "%s", (key,)).fetchone()
        return int(row[0]) if row else 0
    import sqlite3
    with sqlite3.connect(f"file:{data / 'warren.db'}?mode=ro", uri=True) as conn:
        return int(conn.execute(query + "?", (key,)).fetchone()[0])


def disk_usage(store: str, data: Path, url: str | None) -> Callable[[], int]:
    """How the store's disk usage is measured: its journal directory, its database."""
    if store == "journal":
        return lambda: tree_bytes(data / "journal")
    if url:
        return lambda: pg_bytes(url)
    return lambda: sum(p.stat().st_blocks * 512 for p in data.glob("warren.db*"))


def fill_by_publishing(amqp_url: str, count: int) -> None:
    """``count`` persistent 100-byte messages published to ``QUEUE`` (declared durable), a
    confirm awaited every 10,000; returns once the queue holds them all."""
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = conn.channel()
    channel.queue_declare(QUEUE, durable=True)
    channel.confirm_delivery()
    props = pika.BasicProperties(delivery_mode=2)
    body = b"r" * 100
    unconfirmed = conn.channel()   # publishes between the confirmed ones
    for n in range(1, count + 1):
        if n % 10_000 == 0:
            channel.basic_publish("", QUEUE, body, props)
        else:
            unconfirmed.basic_publish("", QUEUE, body, props)
    while channel.queue_declare(QUEUE, passive=True).method.message_count < count:
        time.sleep(0.5)
    conn.close()


def run_rabbitmq(count: int, op: str, program: str | None) -> str:
    """The same purge on RabbitMQ's durable classic queue."""
    from bench.brokers import RabbitMQ
    with tempfile.TemporaryDirectory(prefix="bench-deep-purge-rabbitmq-") as tmp:
        broker = RabbitMQ(Path(tmp), program=program)
        broker.start()
        try:
            amqp_url = f"amqp://guest:guest@127.0.0.1:{broker.ports['amqp']}/%2F"
            fill_by_publishing(amqp_url, count)

            def measure() -> int:
                return tree_bytes(Path(tmp) / "mnesia")
            return _purge_under_probes("rabbitmq", count, op, amqp_url, broker.ports["mqtt"],
                                       measure, None)
        finally:
            broker.stop()


def _purge_under_probes(store: str, count: int, op: str, amqp_url: str, mqtt_port: int,
                        measure: Callable[[], int], rows: Callable[[], int] | None,
                        pg_url: str | None = None) -> str:
    """The purge (or delete) of ``QUEUE`` while the two probes run; the table row."""
    before = measure()
    probe = RoundTrips(mqtt_port)
    probe.start()
    confirms = ConfirmProbe(amqp_url)
    confirms.start()
    confirms.ready.wait(60)
    time.sleep(1.0)   # a baseline of round trips before the purge
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = conn.channel()
    began = time.monotonic()
    if op == "purge":
        purged = channel.queue_purge(QUEUE).method.message_count
    else:
        purged = channel.queue_delete(QUEUE).method.message_count
    answered = time.monotonic() - began
    conn.close()
    rows_s = 0.0
    if rows is not None:   # the SQL store's slices: until the references are gone
        while rows():
            time.sleep(0.5)
        rows_s = time.monotonic() - began
    vacuum = ""
    if pg_url:
        while time.monotonic() - began < rows_s + 120:
            seen = pg_vacuumed(pg_url)
            if seen is not None and seen[0] + seen[1]:
                vacuum = (f"; VACUUM {seen[0]}, autovacuum {seen[1]}, ended at "
                          f"{time.monotonic() - began:.1f} s, dead rows left {seen[2]:,}")
                break
            time.sleep(0.5)
        else:
            vacuum = "; no VACUUM in 120 s"
    after, freed_s = settle(measure)
    confirms.halt.set()
    confirms.join(60)
    trips = probe.finish()
    return (f"| {store} | {count:,} | {op} | {purged:,} | {answered:.2f} | "
            f"{rows_s:.1f} | {max(rows_s, answered) + freed_s:.1f} | "
            f"{before / 1e6:.0f} MB | {after / 1e6:.0f} MB |"
            f"\n    {trips}; {confirms.summary()}; while the rows went: "
            f"{confirms.summary(began, began + max(rows_s, answered))}{vacuum}")


def run(store: str, count: int, op: str, pg_url: str | None, cwd: str | None) -> str:
    with tempfile.TemporaryDirectory(prefix="bench-deep-purge-") as tmp:
        data = Path(tmp) / "data"
        url = pg_database(pg_url) if store == "postgres" and pg_url else None
        args: dict = ({"store": "journal"} if store == "journal" else
                      {"store": "sql", "store_url": url} if url else {"store": "sql"})
        broker = BrokerProcess(data, cwd=cwd, extra_args=["--paging-budget", str(BUDGET)],
                               **args)
        try:
            broker.start()
            conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
            conn.channel().queue_declare(QUEUE, durable=True)
            conn.close()
            broker.stop()
            measure = disk_usage(store, data, url)
            if store == "journal":
                fill(JournalStore(data / "journal"), count, flush_every=100_000, queue=QUEUE)
            else:
                fill(SqlStore(url or f"sqlite:///{data.resolve()}/warren.db"), count,
                     flush_every=50_000, queue=QUEUE)
            broker.start(timeout=1800)
            rows = None if store == "journal" else (lambda: rows_left(data, url))
            return _purge_under_probes(store, count, op, broker.amqp_url, broker.mqtt_port,
                                       measure, rows, url)
        finally:
            broker.stop()
            broker.kill()
            if url:
                pg_drop(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.deep_purge",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--stores", default="journal,sqlite")
    parser.add_argument("--pg-url", help="a PostgreSQL server (and a database to connect to)")
    parser.add_argument("--op", choices=["purge", "delete"], default="purge")
    parser.add_argument("--cwd", help="run the broker from this checkout")
    parser.add_argument("--rabbitmq-server", help="rabbitmq-server to run (store rabbitmq)")
    a = parser.parse_args(argv)
    stores = [s for s in a.stores.split(",") if s]
    if "postgres" in stores and not a.pg_url:
        parser.error("--stores postgres needs --pg-url")
    print("| store | messages | op | messages gone | answer s | rows s | disk s | "
          "disk before | disk after |")
    print("|---|---|---|---|---|---|---|---|---|")
    for count in a.messages:
        for store in stores:
            row = (run_rabbitmq(count, a.op, a.rabbitmq_server) if store == "rabbitmq" else
                   run(store, count, a.op, a.pg_url, a.cwd))
            print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
