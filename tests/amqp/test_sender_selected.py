"""Sender-selected distribution: the CC and BCC headers of a 0-9-1 publish route the message
to more keys, each queue gets it once, BCC never reaches a consumer, and a CC that is not an
array is refused with RabbitMQ's 406 (rabbitmq.com/docs/sender-selected)."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker


def _queues(channel, unique, exchange, names):
    for name in names:
        queue = f"{unique}.{name}"
        channel.queue_declare(queue, exclusive=True)
        if exchange:
            channel.queue_bind(queue, exchange, routing_key=name)


def _taken(channel, unique, name):
    method, props, body = channel.basic_get(f"{unique}.{name}", auto_ack=True)
    return None if method is None else (method, props, body)


def test_cc_and_bcc_route_on_a_direct_exchange_and_bcc_is_removed(channel, unique):
    exchange = f"{unique}.x"
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    _queues(channel, unique, exchange, ["main", "copy", "blind", "other"])
    channel.confirm_delivery()
    channel.basic_publish(exchange, "main", b"hello", pika.BasicProperties(
        headers={"CC": ["copy", "main", 7], "BCC": ["blind"], "kept": "yes"}))
    for name in ("main", "copy", "blind"):
        taken = _taken(channel, unique, name)
        assert taken is not None, name
        method, props, body = taken
        assert body == b"hello" and method.routing_key == "main"
        # CC stays as sent, BCC is gone, other headers untouched
        assert props.headers == {"CC": ["copy", "main", 7], "kept": "yes"}
        assert _taken(channel, unique, name) is None     # once, though "main" is named twice
    assert _taken(channel, unique, "other") is None


def test_cc_names_queues_on_the_default_exchange_and_topics_on_a_topic_exchange(channel,
                                                                                 unique):
    _queues(channel, unique, "", ["a", "b"])
    channel.basic_publish("", f"{unique}.a", b"d", pika.BasicProperties(
        headers={"CC": [f"{unique}.b"]}))
    exchange = f"{unique}.t"
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    channel.queue_declare(f"{unique}.logs", exclusive=True)
    channel.queue_bind(f"{unique}.logs", exchange, routing_key="log.#")
    channel.basic_publish(exchange, "nothing.bound", b"t", pika.BasicProperties(
        headers={"BCC": ["log.error"]}))
    assert _taken(channel, unique, "a")[2] == b"d"
    assert _taken(channel, unique, "b")[2] == b"d"
    _, props, body = _taken(channel, unique, "logs")
    assert body == b"t" and not (props.headers or {})


def test_a_persistent_cc_publish_survives_in_each_queue(channel, unique):
    channel.confirm_delivery()
    for name in ("p1", "p2"):
        channel.queue_declare(f"{unique}.{name}", durable=True, auto_delete=True)
    channel.basic_publish("", f"{unique}.p1", b"kept", pika.BasicProperties(
        delivery_mode=2, headers={"BCC": [f"{unique}.p2"]}))
    for name in ("p1", "p2"):
        method, props, body = channel.basic_get(f"{unique}.{name}", auto_ack=True)
        assert body == b"kept" and props.delivery_mode == 2 and not (props.headers or {})


@pytest.mark.parametrize("name, value, type_name", [
    ("CC", "not-an-array", "longstr"),
    ("BCC", 5, "signedint"),
    ("CC", {"a": 1}, "table"),
])
def test_a_routing_header_that_is_not_an_array_is_406(connection, unique, name, value,
                                                      type_name):
    channel = connection.channel()
    channel.queue_declare(f"{unique}.q", exclusive=True)
    channel.confirm_delivery()
    with pytest.raises(ChannelClosedByBroker) as closed:
        channel.basic_publish("", f"{unique}.q", b"x",
                              pika.BasicProperties(headers={name: value}))
    assert closed.value.reply_code == 406
    assert closed.value.reply_text == (
        f'PRECONDITION_FAILED - invalid message: {{unacceptable_type_in_header,"{name}",'
        f'{type_name}}}')
    # nothing was routed, and the connection still serves
    check = connection.channel()
    assert check.queue_declare(f"{unique}.q", passive=True).method.message_count == 0
