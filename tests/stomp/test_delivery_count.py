"""Poison messages for STOMP clients (stomp.py 1.0/1.1/1.2): ``JMSXDeliveryCount`` on MESSAGE
frames, counted as ActiveMQ counts it (1 on the first delivery, one more per return), and the
queue's ``x-delivery-limit`` (SUBSCRIBE's ``x-`` headers are queue arguments, as RabbitMQ reads
them) ending a NACK loop by dead-lettering.

Checked against Debian's activemq 5.17.2 with stomp.py 1.2: ActiveMQ's MESSAGE frames carry
no ``JMSXDeliveryCount`` header (its count is the JMS property a selector or a JMS client
reads, 1 + the redelivery counter); they carry ``redelivered:true`` after a consumer left with
the message unacked, as warren does. A NACK there sends the message to the DLQ at once
(a poison ack), where warren requeues it as RabbitMQ does. The header is warren's, carrying
the same count an ActiveMQ JMS client would read.
"""

from __future__ import annotations

import pika

from tests.polling import eventually


def test_jmsx_delivery_count_is_one_first_then_one_more_per_return(client, unique):
    q = f"/queue/{unique}"
    client.subscribe(q, ack="client-individual")
    client.send(q, "again")
    counts = []
    for _ in range(3):
        frame = client.recorder.message()
        counts.append(frame.headers.get("JMSXDeliveryCount"))
        client.nack(frame)
    frame = client.recorder.message()
    counts.append(frame.headers.get("JMSXDeliveryCount"))
    client.ack(frame)
    assert counts == ["1", "2", "3", "4"]


def test_a_disconnect_with_the_message_unacked_counts(client_factory, version, unique):
    q = f"/queue/{unique}"
    first = client_factory(version)
    first.subscribe(q, ack="client-individual")
    first.send(q, "held")
    assert first.recorder.message().headers["JMSXDeliveryCount"] == "1"
    first.conn.disconnect()
    second = client_factory(version)
    second.subscribe(q, ack="auto")
    frame = second.recorder.message()
    assert frame.headers["redelivered"] == "true" and frame.headers["JMSXDeliveryCount"] == "2"


def test_delivery_limit_from_subscribe_headers_dead_letters(broker, client, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(f"{unique}.dlq")
        q = f"/queue/{unique}"
        client.subscribe(q, ack="client-individual", **{
            "x-delivery-limit": "1", "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": f"{unique}.dlq"})
        client.send(q, "poison")
        for expected in ("1", "2"):
            frame = client.recorder.message()
            assert frame.body == "poison" and frame.headers["JMSXDeliveryCount"] == expected
            client.nack(frame)
        method, props, body = eventually(
            lambda: (lambda got: got if got[0] else None)(ch.basic_get(f"{unique}.dlq")),
            "the dead-lettered message")
        assert body == b"poison"
        assert props.headers["x-first-death-reason"] == "delivery_limit"
        client.sync()
        assert client.recorder.messages.empty()
    finally:
        conn.close()


def test_a_bad_delivery_limit_header_is_an_error(client_factory, version, unique):
    c = client_factory(version)
    if version == "1.0":
        c.conn.subscribe(f"/queue/{unique}", ack="auto",
                         headers={"id": "s1", "x-delivery-limit": "-1"})
    else:
        c.conn.subscribe(f"/queue/{unique}", "s1", ack="auto",
                         headers={"x-delivery-limit": "-1"})
    error = c.recorder.error()
    assert error.headers["message"] == "precondition_failed"
    assert error.body == (
        f"PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue '{unique}' in vhost "
        "'/': \"expected integer, got longstr\"\n")


def test_jmsx_delivery_count_in_a_selector(client_factory, version, unique):
    """A selector on ``JMSXDeliveryCount`` sees the delivery the message would be: a consumer
    taking only first deliveries lets a returned message pass to one taking the rest."""
    q = f"/queue/{unique}"
    first = client_factory(version)
    first.subscribe(q, ack="client-individual", selector="JMSXDeliveryCount = 1")
    first.send(q, "twice")
    frame = first.recorder.message()
    assert frame.headers["JMSXDeliveryCount"] == "1"
    later = client_factory(version)
    later.subscribe(q, ack="auto", selector="JMSXDeliveryCount > 1")
    first.conn.disconnect()
    frame = later.recorder.message()
    assert frame.body == "twice" and frame.headers["JMSXDeliveryCount"] == "2"
