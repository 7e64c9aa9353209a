"""Smoke tests of the AMQP front end with pika: declare, publish, get, consume, errors."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.polling import eventually


def test_publish_get_roundtrip_keeps_properties(channel, unique):
    channel.queue_declare(unique)
    props = pika.BasicProperties(content_type="text/plain", headers={"a": 1, "b": {"c": [1, "x"]}},
                                 correlation_id="c1", priority=3)
    channel.basic_publish("", unique, b"hello", props)
    method, got, body = channel.basic_get(unique, auto_ack=True)
    assert body == b"hello"
    assert got.content_type == "text/plain"
    assert got.headers == {"a": 1, "b": {"c": [1, "x"]}}
    assert got.correlation_id == "c1" and got.priority == 3
    assert method.redelivered is False


def test_consume_round_robin(broker, channel, unique):
    channel.queue_declare(unique)
    conn2 = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch2 = conn2.channel()
    got1, got2 = [], []
    channel.basic_consume(unique, lambda c, m, p, b: got1.append(b), auto_ack=True)
    ch2.basic_consume(unique, lambda c, m, p, b: got2.append(b), auto_ack=True)
    for i in range(10):
        channel.basic_publish("", unique, str(i).encode())

    def delivered() -> bool:
        channel.connection.process_data_events(time_limit=0.1)
        conn2.process_data_events(time_limit=0.1)
        return len(got1) + len(got2) >= 10

    eventually(delivered, "10 deliveries", every=0)
    assert len(got1) == 5 and len(got2) == 5
    conn2.close()


def test_passive_declare_of_missing_queue_is_404(channel, unique):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, passive=True)
    assert e.value.reply_code == 404
    assert e.value.reply_text == f"NOT_FOUND - no queue '{unique}' in vhost '/'"
