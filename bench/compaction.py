"""A journal compaction while clients are served: how long another client waits meanwhile.

    python -m bench.compaction --messages 600000 [--cwd OTHER_CHECKOUT]

A broker on the journal (32 MB segments) declares two durable queues and stops; N persistent
100-byte messages are appended to its journal with the store's own API, one in eight for
``keep`` and the rest for ``churn``. Started again, one AMQP consumer drains ``churn`` (an
ack per 100): each full segment is left one eighth live, under the compaction threshold, so
the journal compacts them one after another while an MQTT client in its own process
(``bench.scale.RoundTrips``) times QoS 1 PUBLISH -> PUBACK round trips. Printed: the
compactions logged, the drain's seconds and the round trips (the longest is the longest
stall). ``--cwd`` runs the broker from another checkout, for a before/after in the same run.
Nothing is asserted; figures for the report.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pika

from bench.deep_drain import drain
from bench.scale import RoundTrips
from warren.amqp.properties import CODEC
from warren.embedded.process import BrokerProcess
from warren.model.message import Properties, record_head
from warren.store.interface import resource_key
from warren.store.journal.store import JournalStore


def write_messages(journal: Path, count: int) -> int:
    """Append ``count`` messages, one in eight for ``keep``; returns how many are churn."""
    store = JournalStore(journal)
    store.open()
    first = store.recover().max_msg_id + 1
    properties = CODEC.encode(Properties(delivery_mode=2))
    records = {q: record_head("", q, properties) + b"r" * 100 for q in ("keep", "churn")}
    keys = {q: [resource_key("/", q)] for q in records}
    churn = 0
    for msg_id in range(first, first + count):
        queue = "keep" if msg_id % 8 == 0 else "churn"
        churn += queue == "churn"
        store.publish(msg_id, records[queue], keys[queue])
        if msg_id % 100_000 == 0:
            store.flush()
    store.close()
    return churn


def measure(count: int, cwd: str | None) -> tuple[int, float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        data = Path(tmp) / "data"
        broker = BrokerProcess(data, cwd=cwd)
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        for queue in ("keep", "churn"):
            conn.channel().queue_declare(queue, durable=True)
        conn.close()
        broker.stop()
        churn = write_messages(data / "journal", count)
        broker.start(timeout=600)
        probe = RoundTrips(broker.mqtt_port)
        probe.start()
        try:
            seconds = drain(broker.amqp_url, churn, "churn")
            # the last acks' flush starts the last compactions: the probe runs a little longer
            broker.wait_for_line("compacting segment", timeout=120)
        finally:
            trips = probe.finish()
            broker.stop()
            broker.kill()
        compactions = sum("compacting segment" in line for line in broker.lines)
        return compactions, seconds, trips


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.compaction", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, nargs="+", default=[600_000])
    p.add_argument("--cwd", help="run the broker from this checkout (default: this one)")
    a = p.parse_args(argv)
    for count in a.messages:
        compactions, seconds, trips = measure(count, a.cwd)
        print(f"{count:,} messages, 7/8 drained in {seconds:.1f} s, {compactions} compactions "
              f"of 32 MB segments; {trips}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
