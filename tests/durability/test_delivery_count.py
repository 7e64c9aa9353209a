"""A persistent message's delivery count survives `kill -9` and a clean restart (each store).

The count is what ``x-delivery-limit`` is measured against, so a poison message must not start
afresh when the broker restarts. A message that was out with a consumer when the broker died
came back, as when a consumer's connection goes: that is one more return (RabbitMQ's quorum
queues count it so too). Counts are written lazily, like the redelivered flag; a confirmed
publish after them is what makes them durable before the kill (one sync covers every write
made before it).
"""

from __future__ import annotations

import pika

from tests.durability.clients import PERSISTENT
from tests.polling import eventually


def _channel(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = conn.channel()
    channel.confirm_delivery()
    return conn, channel


def _sync(channel):
    """A confirmed persistent publish: everything the broker wrote before it is durable."""
    channel.basic_publish("", "dc.sync", b"sync", PERSISTENT)


def _get(channel, queue):
    return eventually(lambda: _some(channel.basic_get(queue)), f"a message on {queue}")


def _some(got):
    return got if got[0] is not None else None


def _count(props):
    return (props.headers or {}).get("x-delivery-count")


def test_delivery_counts_survive_kill_and_restart(make_broker):
    broker = make_broker().start()
    conn, ch = _channel(broker)
    ch.exchange_declare("dc.dlx", "fanout", durable=True)
    ch.queue_declare("dc.dlq", durable=True)
    ch.queue_bind("dc.dlq", "dc.dlx")
    ch.queue_declare("dc.sync", durable=True)
    ch.queue_declare("dc.work", durable=True, arguments={
        "x-delivery-limit": 4, "x-dead-letter-exchange": "dc.dlx"})
    ch.basic_publish("", "dc.work", b"poison", PERSISTENT)
    ch.basic_publish("", "dc.work", b"other", PERSISTENT)
    for expected in (0, 1):
        method, props, body = _get(ch, "dc.work")
        assert body == b"poison" and _count(props) == expected
        ch.basic_nack(method.delivery_tag, requeue=True)
    _sync(ch)
    broker.kill()

    broker.start()
    conn, ch = _channel(broker)
    method, props, body = _get(ch, "dc.work")
    assert body == b"poison" and method.redelivered and _count(props) == 2
    _sync(ch)   # the delivery is on disk: the message is out with this consumer
    broker.kill()

    broker.start()
    conn, ch = _channel(broker)
    method, props, body = _get(ch, "dc.work")
    assert body == b"poison" and _count(props) == 3   # the kill took it back: one more
    _sync(ch)
    broker.kill()   # out again: the count recovered last time was stored, this is one more

    broker.start()
    conn, ch = _channel(broker)
    method, props, body = _get(ch, "dc.work")
    assert body == b"poison" and _count(props) == 4
    ch.basic_nack(method.delivery_tag, requeue=True)   # the 5th return: past the limit
    method, props, body = _get(ch, "dc.dlq")
    assert body == b"poison"
    assert props.headers["x-first-death-reason"] == "delivery_limit"
    ch.basic_ack(method.delivery_tag)
    method, props, body = _get(ch, "dc.work")
    assert body == b"other" and _count(props) == 0
    ch.basic_nack(method.delivery_tag, requeue=True)
    conn.close()
    broker.restart()

    conn, ch = _channel(broker)
    method, props, body = _get(ch, "dc.work")
    assert body == b"other" and method.redelivered and _count(props) == 1
    assert ch.queue_declare("dc.dlq", passive=True).method.message_count == 0
    conn.close()
    assert "Traceback" not in broker.log()


def test_a_message_recovered_past_its_limit_is_dead_lettered(make_broker):
    """Out with a consumer at the kill with its last return spent: the restart counts the
    return that exceeds the limit, so the message is dead-lettered, not delivered again."""
    broker = make_broker().start()
    conn, ch = _channel(broker)
    ch.queue_declare("dc.sync", durable=True)
    ch.queue_declare("dc.dlq", durable=True)
    ch.queue_declare("dc.work", durable=True, arguments={
        "x-delivery-limit": 0, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "dc.dlq"})
    ch.basic_publish("", "dc.work", b"once", PERSISTENT)
    _get(ch, "dc.work")
    _sync(ch)
    broker.kill()

    broker.start()
    conn, ch = _channel(broker)
    method, props, body = _get(ch, "dc.dlq")
    assert body == b"once" and props.headers["x-first-death-reason"] == "delivery_limit"
    assert ch.queue_declare("dc.work", passive=True).method.message_count == 0
    conn.close()
