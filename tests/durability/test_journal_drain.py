"""A consumer draining a deep journal queue (issue 22): acks written lazily (group commit over
turns, not an fsync each), segments emptied by the drain deleted rather than compacted, batch
reads of adjacent records, while kill -9 can land at any instant.

Small counts, 64 KiB segments and a 64 KiB paging budget, so the drain crosses many segments
and reads most messages back from the journal. After the restart: every confirmed message not
acked is there, once, in publish order; of the acked ones only the last acks (not yet on
disk at the kill) may come back; no traceback in the log.
"""

from __future__ import annotations

import threading

import pika

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher
from tests.durability.test_deep_faults import body, declare, drain, index_of
from tests.polling import eventually

SEGMENT = {"WARREN_JOURNAL_SEGMENT_SIZE": str(64 * 1024)}
PAGED = ["--paging-budget", "65536"]


def publish(broker: BrokerProcess, count: int, keep_every: int = 0) -> None:
    """``count`` confirmed persistent messages to ``deep`` (every ``keep_every``-th to
    ``keep`` instead, interleaved in the same segments)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    declare(conn.channel(), "deep", "keep")
    conn.close()

    def queue_of(i: int) -> str:
        return "keep" if keep_every and i % keep_every == 0 else "deep"

    publisher = ConfirmedPublisher(broker.amqp_url, lambda b: b.split(b"-")[0].decode(),
                                   (body(queue_of(i), i) for i in range(count)), window=1000)
    publisher.run(timeout=120)
    assert len(publisher.acked) == count, publisher.error


class Drainer(threading.Thread):
    """Consumes ``deep`` acking each message, recording the acked indexes in order; sets
    ``when`` after the ``at``-th ack, then waits for ``go`` if given (the consumer stays,
    its prefetched messages unacked); stops when ``stop`` is set or the broker goes."""

    def __init__(self, url: str, at: int, when: threading.Event,
                 go: threading.Event | None = None) -> None:
        super().__init__()
        self.url, self.at, self.when, self.go = url, at, when, go
        self.acked: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = conn.channel()
        channel.basic_qos(prefetch_count=200)
        try:
            for method, _props, payload in channel.consume("deep", inactivity_timeout=1):
                if self.stop.is_set():
                    break
                if method is None:
                    continue
                channel.basic_ack(method.delivery_tag)
                self.acked.append(index_of(payload))
                if len(self.acked) == self.at:
                    self.when.set()
                    if self.go is not None:
                        self.go.wait(120)
        except pika.exceptions.AMQPError:
            pass   # the broker was killed under it
        finally:
            try:
                conn.close()
            except pika.exceptions.AMQPError:
                pass


def test_kill_during_a_drain_loses_no_confirmed_message_and_keeps_order(tmp_path):
    broker = BrokerProcess(tmp_path / "data", extra_args=PAGED, env=SEGMENT).start()
    try:
        publish(broker, 6000)
        broker.stop()
        broker.start(timeout=120)   # a recovered deep queue: all but a window paged out
        midway = threading.Event()
        drainer = Drainer(broker.amqp_url, 3000, midway)
        drainer.start()
        try:
            assert midway.wait(120), f"the drain stalled after {len(drainer.acked)} acks"
            broker.kill()
        finally:
            drainer.stop.set()
            drainer.join(60)
        broker.start(timeout=120)
        rest = [index_of(b) for b in drain(broker.amqp_url, "deep")]
        acked = drainer.acked
        assert acked == sorted(acked) and len(acked) >= 3000, "delivered in publish order"
        assert rest == sorted(set(rest)), "in publish order, once each"
        assert set(range(6000)) - set(acked) <= set(rest), "every unacked message is there"
        back = set(rest) & set(acked)
        assert back == set(acked[len(acked) - len(back):]), \
            "of the acked messages, only the last acks (unwritten at the kill) come back"
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()


def test_compaction_during_a_drain_keeps_every_live_message(tmp_path):
    """One message of eight goes to ``keep``: the segments the drain of ``deep`` leaves
    behind are an eighth live. Halfway the consumer holds (its prefetch unacked) until
    compaction rewrites them, then drains on while the compaction's slices and the deletions
    go on, and kill -9 lands: ``keep`` whole and in order, ``deep`` as the kill left it."""
    broker = BrokerProcess(tmp_path / "data", extra_args=PAGED, env=SEGMENT).start()
    try:
        publish(broker, 16000, keep_every=8)
        keep = list(range(0, 16000, 8))
        deep = [i for i in range(16000) if i % 8]
        broker.stop()
        broker.start(timeout=120)
        halfway, go = threading.Event(), threading.Event()
        drainer = Drainer(broker.amqp_url, len(deep) // 2, halfway, go)
        drainer.start()
        try:
            assert halfway.wait(120), f"the drain stalled after {len(drainer.acked)} acks"
            eventually(lambda: "compacting segment" in broker.log(), "a compaction",
                       timeout=120)
            go.set()
            eventually(lambda: len(drainer.acked) >= len(deep) * 3 // 4, "the drain goes on",
                       timeout=120)
            broker.kill()
        finally:
            drainer.stop.set()
            drainer.join(60)
        broker.start(timeout=120)
        assert [index_of(b) for b in drain(broker.amqp_url, "keep")] == keep
        rest = [index_of(b) for b in drain(broker.amqp_url, "deep")]
        assert rest == sorted(set(rest)), "in publish order, once each"
        assert set(deep) - set(drainer.acked) <= set(rest), "every unacked message is there"
        assert set(rest) <= set(deep)
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()
