"""A consumer draining a deep queue while the pager reads the next batch ahead of it (double
buffering, ``Pager.read_ahead``) and a publisher appends to the same queue (issue 22), on the
journal and on the SQL store (SQLite, PostgreSQL: the ``store`` fixture).

Small counts, a 64 KiB paging budget (and 64 KiB journal segments), so nearly every message
the consumer takes was read back from the store, a batch or two of bodies being in memory
ahead of it at any time. The consumer must see one sequence, in publish order: the recovered
messages, then the publisher's. kill -9 lands midway, reads in flight: after the restart
every confirmed message not acked is there, once, in publish order; of the acked ones only
the last acks (not yet on disk at the kill) come back; nothing else; no traceback in the log.
"""

from __future__ import annotations

import threading

import pika

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher
from tests.durability.test_deep_faults import body, declare, drain, index_of
from tests.durability.test_journal_drain import Drainer

PAGED = ["--paging-budget", "65536"]
SEGMENT = {"WARREN_JOURNAL_SEGMENT_SIZE": str(64 * 1024)}
FILLED = 3000     # recovered, paged, before the drain starts
MORE = 1000       # published while it drains


def fill(broker: BrokerProcess) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    declare(conn.channel(), "deep")
    conn.close()
    publisher = ConfirmedPublisher(broker.amqp_url, "deep",
                                   (body("deep", i) for i in range(FILLED)), window=1000)
    publisher.run(timeout=120)
    assert len(publisher.acked) == FILLED, publisher.error


def test_kill_during_a_pipelined_drain_with_a_publisher_keeps_order_and_loses_nothing(
        tmp_path, store):
    broker = BrokerProcess(tmp_path / "data", extra_args=PAGED, env=SEGMENT, **store).start()
    try:
        fill(broker)
        broker.stop()
        broker.start(timeout=120)   # a recovered deep queue: all but a window paged out
        midway = threading.Event()
        drainer = Drainer(broker.amqp_url, FILLED * 2 // 3, midway)
        publisher = ConfirmedPublisher(broker.amqp_url, "deep",
                                       (body("deep", i) for i in range(FILLED, FILLED + MORE)),
                                       window=20)
        publishing = threading.Thread(target=publisher.run, kwargs={"timeout": 120})
        drainer.start()
        publishing.start()
        try:
            assert midway.wait(120), f"the drain stalled after {len(drainer.acked)} acks"
            broker.kill()
        finally:
            drainer.stop.set()
            drainer.join(60)
            publishing.join(60)
        confirmed = {index_of(b) for b in publisher.acked}
        assert confirmed, "the publisher published while the queue drained"
        broker.start(timeout=120)
        rest = [index_of(b) for b in drain(broker.amqp_url, "deep")]
        acked = drainer.acked
        assert acked == sorted(acked) and len(acked) >= FILLED * 2 // 3, \
            "delivered in publish order"
        assert rest == sorted(set(rest)), "in publish order, once each"
        published = {index_of(b) for b in publisher.published}
        assert set(rest) <= set(range(FILLED)) | published, "nothing but what was published"
        assert (set(range(FILLED)) | confirmed) - set(acked) <= set(rest), \
            "every confirmed message not acked is there"
        back = set(rest) & set(acked)
        assert back == set(acked[len(acked) - len(back):]), \
            "of the acked messages, only the last acks (unwritten at the kill) come back"
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()


class Counting(threading.Thread):
    """Takes ``count`` messages of ``queue`` (prefetch 300, an ack per message), recording
    their indexes in the order they came."""

    def __init__(self, url: str, queue: str, count: int) -> None:
        super().__init__()
        self.url, self.queue, self.count = url, queue, count
        self.got: list[int] = []

    def run(self) -> None:
        conn = pika.BlockingConnection(pika.URLParameters(self.url))
        channel = conn.channel()
        channel.basic_qos(prefetch_count=300)
        for method, _props, payload in channel.consume(self.queue, inactivity_timeout=30):
            if method is None:
                break   # nothing for 30 s: the test reports how far it got
            channel.basic_ack(method.delivery_tag)
            self.got.append(index_of(payload))
            if len(self.got) == self.count:
                break
        conn.close()


def test_publishers_interleaved_with_a_drain_keep_the_order_of_each_queue(tmp_path, store):
    """While the paged queue drains (its bodies read ahead in batches), a publisher sends to
    it and to a second queue in turn: each queue hands out its messages exactly in publish
    order, the drained queue's new ones after all it held."""
    broker = BrokerProcess(tmp_path / "data", extra_args=PAGED, env=SEGMENT, **store).start()
    try:
        fill(broker)
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        declare(conn.channel(), "other")
        conn.close()
        broker.stop()
        broker.start(timeout=120)
        drainer = Counting(broker.amqp_url, "deep", FILLED + MORE)
        drainer.start()
        publisher = ConfirmedPublisher(
            broker.amqp_url, lambda b: b.split(b"-")[0].decode(),
            (body("deep" if i % 2 else "other", FILLED + i) for i in range(2 * MORE)),
            window=50)
        publisher.run(timeout=120)
        assert len(publisher.acked) == 2 * MORE, publisher.error
        drainer.join(120)
        assert drainer.got == list(range(FILLED)) + list(range(FILLED + 1, FILLED + 2 * MORE, 2))
        other = [index_of(b) for b in drain(broker.amqp_url, "other")]
        assert other == list(range(FILLED, FILLED + 2 * MORE, 2))
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()
