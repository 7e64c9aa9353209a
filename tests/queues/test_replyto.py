"""Direct reply-to (RabbitMQ direct-reply-to.html): RPC through amq.rabbitmq.reply-to."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, UnroutableError

from .conftest import wait_until

REPLY_TO = "amq.rabbitmq.reply-to"


def _server(channel, queue):
    """An RPC server on ``channel``: replies 'echo:<body>' to each request's reply_to."""
    channel.queue_declare(queue)

    def on_request(ch, method, props, body):
        ch.basic_publish("", props.reply_to, b"echo:" + body,
                         pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)
    channel.basic_consume(queue, on_request)


def test_rpc_round_trip(broker, channel, unique):
    server_conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    seen_reply_to = []

    def on_request(ch, method, props, body):
        seen_reply_to.append(props.reply_to)
        ch.basic_publish("", props.reply_to, b"echo:" + body,
                         pika.BasicProperties(correlation_id=props.correlation_id))
    sch = server_conn.channel()
    sch.queue_declare(unique)
    sch.basic_consume(unique, on_request, auto_ack=True)

    replies = []
    tag = channel.basic_consume(REPLY_TO, lambda c, m, p, b: replies.append((m, p, b)),
                                auto_ack=True)
    for i in range(3):
        channel.basic_publish("", unique, f"req{i}".encode(),
                              pika.BasicProperties(reply_to=REPLY_TO, correlation_id=str(i)))

    def done():
        server_conn.process_data_events(time_limit=0)
        return len(replies) == 3
    wait_until(channel.connection, done)
    assert [b for _, _, b in replies] == [b"echo:req0", b"echo:req1", b"echo:req2"]
    assert [p.correlation_id for _, p, _ in replies] == ["0", "1", "2"]
    m = replies[0][0]
    assert m.consumer_tag == tag and m.exchange == "" and m.redelivered is False
    # the broker rewrote reply_to to an address of this subscription
    assert len(set(seen_reply_to)) == 1
    address = seen_reply_to[0]
    assert address.startswith(REPLY_TO + ".") and len(address) > len(REPLY_TO) + 10
    assert m.routing_key == address
    # the address answers a passive declare while the requester lives
    assert channel.queue_declare(address, passive=True).method.message_count == 0
    server_conn.close()


def test_consume_requires_no_ack(channel):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.basic_consume(REPLY_TO, lambda *a: None, auto_ack=False)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - reply consumer cannot acknowledge"


def test_publish_with_reply_to_needs_a_reply_consumer(channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"x", pika.BasicProperties(reply_to=REPLY_TO))
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, passive=True)
    assert e.value.reply_code == 406
    assert e.value.reply_text == "PRECONDITION_FAILED - fast reply consumer does not exist"


def test_reply_after_requester_left_is_unroutable(broker, channel, unique):
    channel.queue_declare(unique)
    requester = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    rch = requester.channel()
    rch.basic_consume(REPLY_TO, lambda *a: None, auto_ack=True)
    rch.basic_publish("", unique, b"q", pika.BasicProperties(reply_to=REPLY_TO))
    _, props, _ = wait_until(channel.connection,
                             lambda: (lambda r: r if r[0] else None)(channel.basic_get(unique,
                                                                                      True)))
    requester.close()
    channel.confirm_delivery()
    with pytest.raises(UnroutableError):
        channel.basic_publish("", props.reply_to, b"late", mandatory=True)
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(props.reply_to, passive=True)
    assert e.value.reply_code == 404


def test_cancelled_reply_consumer_gets_nothing(channel, unique):
    channel.queue_declare(unique)
    got = []
    tag = channel.basic_consume(REPLY_TO, lambda c, m, p, b: got.append(b), auto_ack=True)
    channel.basic_publish("", unique, b"q", pika.BasicProperties(reply_to=REPLY_TO))
    _, props, _ = channel.basic_get(unique, auto_ack=True)
    channel.basic_cancel(tag)
    channel.basic_publish("", props.reply_to, b"late")
    channel.connection.process_data_events(time_limit=0.05)
    assert got == []


def test_kombu_style_passive_declare_of_pseudo_queue(channel):
    assert channel.queue_declare(REPLY_TO, passive=True).method.queue == REPLY_TO
