"""Draining a deep, paged queue: its rate, the broker's CPU per message, and how long another
client waits meanwhile (issue 22: paging's read-ahead must not hold the reactor).

    python -m bench.deep_drain --messages 100000 [--store sql|journal] [--cwd OTHER_CHECKOUT]

A broker on the SQL store (its default SQLite file) or the journal declares a durable queue
and stops; N persistent 100-byte messages are written to its store with the store's own API
(what N confirmed publishes leave); the broker is started under a 4 MiB paging budget, so all
but the first window stay in the store. One AMQP consumer (prefetch 500, an ack per 100)
drains the queue while a second client, an MQTT one in its own process
(``bench.scale.RoundTrips``), times QoS 1 PUBLISH -> PUBACK round trips: its longest round
trip is the longest stall of the reactor the drain caused. The broker's CPU time over the
drain (user + system, every thread, from /proc) per message moves far less with other load
on the machine than the rate does. ``--cwd`` runs the broker from another checkout (its
``warren/`` package), for a before/after in the same run. Nothing is asserted; figures for
the report.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pika

from bench.deep_restart import fill, write_messages as write_journal
from bench.proc_cpu import process_cpu_seconds
from bench.scale import RoundTrips
from warren.embedded.process import BrokerProcess
from warren.store.sql.store import SqlStore

QUEUE = "bench.deep"
BUDGET = 4 * 1024 * 1024


def write_messages(url: str, count: int) -> None:
    """Store ``count`` messages for the queue in the database of a stopped broker."""
    fill(SqlStore(url), count, flush_every=50_000, queue=QUEUE)


def drain(url: str, count: int, queue: str = QUEUE) -> float:
    """Consume ``count`` messages of ``queue``, acked 100 at a time; returns the seconds."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=500)
    got = 0
    began = time.monotonic()
    for method, _props, _body in channel.consume(queue, inactivity_timeout=120):
        if method is None:
            raise RuntimeError(f"stalled after {got} of {count} messages")
        got += 1
        if got % 100 == 0 or got == count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if got == count:
            break
    seconds = time.monotonic() - began
    channel.cancel()
    conn.close()
    return seconds


def measure(count: int, cwd: str | None,
            store: str = "sql") -> tuple[float, float, float, str]:
    """(seconds, broker CPU seconds, the consumer's CPU seconds, the round trips' summary)
    of one drain."""
    with tempfile.TemporaryDirectory(prefix="bench-deep-drain-") as tmp:
        data = Path(tmp) / "data"
        broker = BrokerProcess(data, store=store, cwd=cwd,
                               extra_args=["--paging-budget", str(BUDGET)])
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        conn.channel().queue_declare(QUEUE, durable=True)
        conn.close()
        broker.stop()
        if store == "sql":
            write_messages(f"sqlite:///{data.resolve()}/warren.db", count)
        else:
            write_journal(data / "journal", count)
        broker.start(timeout=600)
        assert broker.proc is not None
        probe = RoundTrips(broker.mqtt_port)
        probe.start()
        try:
            began, client_began = process_cpu_seconds(broker.proc.pid), time.process_time()
            seconds = drain(broker.amqp_url, count)
            cpu = process_cpu_seconds(broker.proc.pid) - began
            client = time.process_time() - client_began
        finally:
            trips = probe.finish()
            broker.stop()
            broker.kill()
        return seconds, cpu, client, trips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.deep_drain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, nargs="+", default=[100_000])
    p.add_argument("--cwd", help="run the broker from this checkout (default: this one)")
    p.add_argument("--store", choices=("sql", "journal"), default="sql",
                   help="the broker's store (sql: its SQLite file)")
    a = p.parse_args(argv)
    where = "SQLite" if a.store == "sql" else "the journal"
    for count in a.messages:
        seconds, cpu, client, trips = measure(count, a.cwd, a.store)
        print(f"{count:,} paged messages on {where} drained in {seconds:.1f} s "
              f"({count / seconds:,.0f} msg/s, broker CPU {cpu / count * 1e6:.1f} us/msg, "
              f"consumer CPU {client / count * 1e6:.1f} us/msg, "
              f"load average {os.getloadavg()[0]:.1f}); {trips}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
