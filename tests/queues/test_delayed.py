"""``x-delayed-message`` exchanges (RabbitMQ's delayed-message plugin), incl. restart."""

from __future__ import annotations

import time

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.broker_process import BrokerProcess

from .conftest import drain, message_count, wait_until


def _declare(channel, unique, inner="direct", durable=False):
    ex = f"{unique}.delayed"
    channel.exchange_declare(ex, "x-delayed-message", durable=durable,
                             arguments={"x-delayed-type": inner})
    channel.queue_declare(f"{unique}.q", durable=durable)
    channel.queue_bind(f"{unique}.q", ex, routing_key="k")
    return ex, f"{unique}.q"


def test_message_with_x_delay_arrives_after_the_delay(channel, unique):
    ex, q = _declare(channel, unique)
    started = time.monotonic()
    channel.basic_publish(ex, "k", b"later", pika.BasicProperties(headers={"x-delay": 150}))
    channel.basic_publish(ex, "k", b"now")
    assert [b for _, _, b in drain(channel, q)] == [b"now"]
    [(m, props, body)] = wait_until(channel.connection, lambda: drain(channel, q))
    assert body == b"later" and time.monotonic() - started >= 0.15
    assert m.exchange == ex and m.routing_key == "k"
    assert props.headers["x-delay"] == -150   # as the plugin: negated on release


def test_delays_release_in_due_order(channel, unique):
    ex, q = _declare(channel, unique, inner="fanout")
    for delay in (200, 50, 120):
        channel.basic_publish(ex, "", str(delay).encode(),
                              pika.BasicProperties(headers={"x-delay": delay}))
    wait_until(channel.connection, lambda: message_count(channel, q) == 3)
    assert [b for _, _, b in drain(channel, q)] == [b"50", b"120", b"200"]


@pytest.mark.parametrize("delay", [0, -100, "500"])
def test_non_positive_or_non_integer_delay_routes_at_once(channel, unique, delay):
    ex, q = _declare(channel, unique)
    channel.basic_publish(ex, "k", b"x", pika.BasicProperties(headers={"x-delay": delay}))
    assert message_count(channel, q) == 1


def test_underlying_type_routes(channel, unique):
    ex = f"{unique}.dt"
    channel.exchange_declare(ex, "x-delayed-message", arguments={"x-delayed-type": "topic"})
    channel.queue_declare(f"{unique}.q")
    channel.queue_bind(f"{unique}.q", ex, routing_key="a.*")
    channel.basic_publish(ex, "a.b", b"1", pika.BasicProperties(headers={"x-delay": 30}))
    channel.basic_publish(ex, "c.d", b"2", pika.BasicProperties(headers={"x-delay": 30}))
    wait_until(channel.connection, lambda: message_count(channel, f"{unique}.q") == 1)


@pytest.mark.parametrize("args,text", [
    ({}, "Invalid argument, 'x-delayed-type' must be an existing exchange type"),
    ({"x-delayed-type": "nope"},
     "Invalid argument, 'x-delayed-type' must be an existing exchange type"),
    ({"x-delayed-type": "x-delayed-message"},
     "Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'"),
])
def test_bad_delayed_type_is_406(channel, unique, args, text):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.exchange_declare(unique, "x-delayed-message", arguments=args)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - " + text


def test_persistent_delayed_message_survives_restart(tmp_path, unique):
    proc = BrokerProcess(tmp_path / "b")
    with proc:
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        ch = conn.channel()
        ex, q = _declare(ch, unique, durable=True)
        ch.confirm_delivery()
        published = time.monotonic()
        ch.basic_publish(ex, "k", b"durable", pika.BasicProperties(
            delivery_mode=2, headers={"x-delay": 4000}))
        ch.basic_publish(ex, "k", b"transient", pika.BasicProperties(headers={"x-delay": 4000}))
        assert message_count(ch, q) == 0
        conn.close()
        proc.restart()
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        ch = conn.channel()
        if time.monotonic() - published < 3.5:
            # still held across the restart (not released into the durable queue before it)
            assert message_count(ch, q) == 0
        [(_, props, body)] = wait_until(conn, lambda: drain(ch, q), timeout=10)
        assert body == b"durable" and props.delivery_mode == 2
        assert props.headers["x-delay"] == -4000
        assert time.monotonic() - published >= 4.0
        conn.close()
        # released messages are not held again after a second restart
        proc.restart()
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        ch = conn.channel()
        ch.queue_declare(f"{unique}.clock", arguments={"x-message-ttl": 100})
        ch.basic_publish("", f"{unique}.clock", b"tick")
        wait_until(conn, lambda: message_count(ch, f"{unique}.clock") == 0)
        assert message_count(ch, q) == 0
        conn.close()
