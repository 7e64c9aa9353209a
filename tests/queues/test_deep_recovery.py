"""A deep queue's messages as they were after a restart and a kill -9, and across its drain
(issue 22's recovery in bulk: ``broker/compact.py``'s runs, ``Broker._recover_queue``).

The queue holds 100,200 persistent messages on the journal (past the journal index's
``ARRAYS_FROM``, where the recovered ids and sizes are arrays the queue's rows take in bulk)
and 4,200 on SQLite and on PostgreSQL (the drain's read-ahead batches go through the SQL
store's reader). In the middle, 200 published one by one with properties of their own: a
priority, a header, and an expiration, long for most and 1 ms for every tenth. The first
2,000 go out to a consumer that does not ack them before a graceful restart (so they are
the delivered ones recovery handles one by one, most of them past the window of entries it
makes objects of); a kill -9 follows the restart. Then everything is drained: every message
once, in order, body intact, the first 2,000 and only they flagged redelivered, the
properties as published, the 1 ms ones expired, no traceback in the log.
"""

from __future__ import annotations

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.durability.clients import ConfirmedPublisher
from tests.durability.conftest import fresh_database
from tests.store.conftest import pg_url  # noqa: F401  (the session PostgreSQL, reused here)

QUEUE = "deep.recovered"
UNACKED = 2000
SPECIAL = 200


def body(i: int) -> bytes:
    return f"deep-{i:08d}-".encode().ljust(100, b"x")


def special_props(i: int) -> pika.BasicProperties:
    return pika.BasicProperties(delivery_mode=2, priority=7, headers={"n": i},
                                expiration="1" if i % 10 == 0 else "3600000")


def publish(url: str, first: int, count: int) -> None:
    publisher = ConfirmedPublisher(url, QUEUE, (body(i) for i in range(first, first + count)),
                                   window=1000)
    publisher.run(timeout=120)
    assert len(publisher.acked) == count, publisher.error


def consume(url: str, count: int, ack: bool = True) -> list:
    """(index, redelivered, properties) of ``count`` messages, taken with automatic acks;
    with ``ack`` False they are left unacked with the connection, which the caller's
    restart ends."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=UNACKED)
    out = []
    for method, props, payload in channel.consume(QUEUE, auto_ack=ack, inactivity_timeout=30):
        assert method is not None, f"stalled after {len(out)} messages"
        i = int(payload[5:13])
        assert payload == body(i)
        out.append((i, method.redelivered, props))
        if len(out) == count:
            break
    if ack:
        channel.cancel()
        conn.close()
    return out


@pytest.mark.parametrize("store,plain", [("journal", 100_000), ("sqlite", 4_000),
                                         ("postgres", 4_000)])
def test_deep_queue_recovers_order_flags_and_properties(tmp_path, request, store, plain):
    if store == "journal":
        broker = BrokerProcess(tmp_path / "data")
    else:
        url = (fresh_database(request.getfixturevalue("pg_url")) if store == "postgres"
               else "")
        broker = BrokerProcess(tmp_path / "data", store="sql", store_url=url)
    try:
        broker.start()
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        channel.queue_declare(QUEUE, durable=True, arguments={"x-message-ttl": 3_600_000})
        half = plain // 2
        publish(broker.amqp_url, 0, half)
        channel.confirm_delivery()
        for i in range(half, half + SPECIAL):
            channel.basic_publish("", QUEUE, body(i), special_props(i))
        conn.close()
        publish(broker.amqp_url, half + SPECIAL, plain - half)
        total = plain + SPECIAL

        held = consume(broker.amqp_url, UNACKED, ack=False)
        assert [i for i, _, _ in held] == list(range(UNACKED))
        broker.restart(timeout=120)   # the consumer's connection ends with the broker
        broker.kill()
        broker.start(timeout=120)

        expired = {i for i in range(half, half + SPECIAL) if i % 10 == 0}
        got = consume(broker.amqp_url, total - len(expired))
        assert [i for i, _, _ in got] == [i for i in range(total) if i not in expired]
        assert all(redelivered for _, redelivered, _ in got)   # after kill -9: each may have been
        for i, _, props in got:
            # (x-delivery-count: 1 for those delivered before, and for those that may
            # have been: RabbitMQ 4's classic queues count them once after a crash)
            headers = {"x-delivery-count": 1}
            if half <= i < half + SPECIAL:
                assert (props.priority, props.headers, props.expiration) == (
                    7, {"n": i, **headers}, "3600000")
            else:
                assert (props.priority, props.headers or {}, props.expiration) == (
                    None, headers, None)
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        assert conn.channel().queue_declare(QUEUE, passive=True).method.message_count == 0
        conn.close()
        assert "Traceback" not in broker.log()
    finally:
        broker.stop()
        broker.kill()
