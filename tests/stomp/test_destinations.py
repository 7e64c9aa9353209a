"""Destinations as RabbitMQ maps them, plus ActiveMQ's bare names; cross-protocol with pika."""

from __future__ import annotations

import time

import pika
import pytest

from tests.stomp.conftest import raw_connect


@pytest.fixture
def amqp(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    yield ch
    conn.close()


def amqp_get(ch, queue: str, deadline: float = 10.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        ch.connection.process_data_events(time_limit=0.05)
    raise AssertionError(f"nothing arrived on {queue}")


def test_queue_send_and_subscribe(client, unique):
    client.subscribe(f"/queue/{unique}")
    client.send(f"/queue/{unique}", "one")
    frame = client.recorder.message()
    assert frame.body == "one"
    assert frame.headers["destination"] == f"/queue/{unique}"
    assert frame.headers["subscription"] == "s1" or client.version == "1.0"


def test_queue_is_declared_durable(client, unique, amqp):
    client.send(f"/queue/{unique}", "x")
    client.sync()
    # passive declare: exists; durable=True equivalent declare succeeds
    amqp.queue_declare(unique, durable=True)
    assert amqp_get(amqp, unique)[2] == b"x"


def test_bare_name_is_a_queue(client, unique):
    client.subscribe(unique)
    client.send(unique, "bare")
    assert client.recorder.message().body == "bare"


def test_topic_fan_out_to_each_subscriber(client_factory, version, unique):
    a = client_factory(version)
    b = client_factory(version)
    a.subscribe(f"/topic/{unique}.x")
    b.subscribe(f"/topic/{unique}.*")
    a.send(f"/topic/{unique}.x", "t")
    assert a.recorder.message().body == "t"
    frame = b.recorder.message()
    assert frame.body == "t" and frame.headers["destination"] == f"/topic/{unique}.x"


def test_stomp_topic_reaches_amqp_binding(client, unique, amqp):
    amqp.queue_declare(unique, exclusive=True)
    amqp.queue_bind(unique, "amq.topic", routing_key="a.b")
    client.send("/topic/a.b", "cross", **{"content-type": "text/plain", "priority": "3",
                                          "correlation-id": "c1", "x-custom": "v"})
    method, props, body = amqp_get(amqp, unique)
    assert body == b"cross"
    assert method.routing_key == "a.b" and method.exchange == "amq.topic"
    assert props.content_type == "text/plain"
    assert props.priority == 3 and props.correlation_id == "c1"
    assert props.headers["x-custom"] == "v"


def test_amqp_publish_reaches_stomp_with_headers(client, unique, amqp):
    client.subscribe(f"/topic/{unique}")
    amqp.basic_publish("amq.topic", unique, b"from-amqp", pika.BasicProperties(
        content_type="application/json", delivery_mode=2, priority=5, correlation_id="cid",
        reply_to="replies", expiration="60000", message_id="mid-1", timestamp=1700000000,
        type="kind", app_id="app", headers={"h1": "v1", "n": 7, "flag": True,
                                            "table": {"a": "b"}, "array": ["c"]}))
    frame = client.recorder.message()
    h = frame.headers
    assert frame.body == "from-amqp"
    assert h["content-type"] == "application/json"
    assert h["persistent"] == "true"
    assert h["priority"] == "5"
    assert h["correlation-id"] == "cid"
    assert h["reply-to"] == "/reply-queue/replies"
    assert h["expiration"] == "60000"
    assert h["amqp-message-id"] == "mid-1"
    assert h["timestamp"] == "1700000000"
    assert h["type"] == "kind" and h["app-id"] == "app"
    assert h["h1"] == "v1" and h["n"] == "7" and h["flag"] == "true"
    assert "table" not in h and "array" not in h     # no STOMP text for a table or an array


def test_exchange_destination(client, unique, amqp):
    amqp.exchange_declare(unique, "direct")
    client.subscribe(f"/exchange/{unique}/rk")
    client.send(f"/exchange/{unique}/rk", "via-exchange")
    frame = client.recorder.message()
    assert frame.body == "via-exchange"
    assert frame.headers["destination"] == f"/exchange/{unique}/rk"


def test_amq_queue_existing_only(client_factory, unique, amqp):
    amqp.queue_declare(unique)
    c = client_factory("1.2")
    c.subscribe(f"/amq/queue/{unique}")
    c.send(f"/amq/queue/{unique}", "existing")
    assert c.recorder.message().body == "existing"
    d = client_factory("1.2")
    d.conn.subscribe(f"/amq/queue/{unique}-missing", "s1")
    error = d.recorder.error()
    assert error.headers["message"] == "not_found"
    assert error.body.startswith("NOT_FOUND - no queue")
    assert d.recorder.disconnected.wait(10)
    c.sync()   # other clients are unaffected


def test_send_to_missing_amq_queue_is_dropped_with_receipt(client_factory, unique, broker):
    # as RabbitMQ 3.10: a SEND is not checked against the queue; unroutable, it is dropped,
    # its receipt written and the connection kept; no queue is made
    c = client_factory("1.2")
    c.conn.send(f"/amq/queue/{unique}-missing", "lost", headers={"receipt": "sent"})
    assert c.recorder.receipt() == "sent"
    c.sync()
    assert not c.recorder.disconnected.is_set()
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
            conn.channel().queue_declare(f"{unique}-missing", passive=True)
        assert refused.value.reply_code == 404
    finally:
        conn.close()


def test_temp_queue_reply_to(client_factory, version, unique):
    server = client_factory(version)
    requester = client_factory(version)
    server.subscribe(f"/queue/{unique}")
    requester.send(f"/queue/{unique}", "ping", **{"reply-to": "/temp-queue/replies"})
    request = server.recorder.message()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/reply-queue/")
    server.send(reply_to, "pong")
    reply = requester.recorder.message()
    assert reply.body == "pong"
    assert reply.headers["subscription"] == "/temp-queue/replies"


def test_invalid_destination_is_error(client_factory):
    c = client_factory("1.2")
    c.conn.send("/nonsense/x", "x")
    error = c.recorder.error()
    assert error.headers["message"] == "Unknown destination"
    assert error.body.startswith("'/nonsense/x' is not a valid destination.")


def test_stomp_server_answers_amqp_direct_reply_to(client_factory, unique, broker):
    """The core publish pipeline routes reply addresses for every front end: a STOMP server
    answers an AMQP requester that consumes from amq.rabbitmq.reply-to (no reply queue)."""
    server = client_factory("1.2")
    server.subscribe(f"/queue/{unique}")
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    replies = []
    ch.basic_consume("amq.rabbitmq.reply-to", lambda c, m, p, b: replies.append(b),
                     auto_ack=True)
    ch.basic_publish("", unique, b"ping",
                     pika.BasicProperties(reply_to="amq.rabbitmq.reply-to"))
    request = server.recorder.message()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/reply-queue/amq.rabbitmq.reply-to.")
    server.send(reply_to, "pong")
    server.sync()
    deadline = time.monotonic() + 10
    while not replies and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    conn.close()
    assert replies == [b"pong"]


def test_send_naming_direct_reply_to_without_reply_consumer(client_factory, unique):
    """A SEND whose reply-to names amq.rabbitmq.reply-to still goes through the core's
    reply-to rewrite (a SEND without reply-to skips it): with no reply consumer it is
    refused as over AMQP (RabbitMQ's 406 text) and nothing is queued."""
    q = f"/queue/{unique}"
    sender = client_factory("1.2")
    sender.send(q, "refused", **{"reply-to": "amq.rabbitmq.reply-to"})
    error = sender.recorder.error()
    assert error.headers["message"] == "precondition_failed"
    assert error.body == "PRECONDITION_FAILED - fast reply consumer does not exist"
    consumer = client_factory("1.2")
    consumer.subscribe(q)
    consumer.send(q, "plain", **{"reply-to": "/queue/replies"})
    assert consumer.recorder.message().body == "plain"


def test_repeated_send_headers_the_first_wins(client, broker, unique, amqp):
    """STOMP 1.2 "Repeated Header Entries": only the first is used (the handlers read the
    parser's first-wins lookup, the properties the first of each name)."""
    amqp.queue_declare(f"{unique}-b")
    client.subscribe(f"/queue/{unique}-a")
    sock = raw_connect(broker.stomp_port)
    try:
        sock.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0"
                     b"SEND\ndestination:/queue/%s-a\ndestination:/queue/%s-b\n"
                     b"x-k:first\nx-k:second\nreceipt:r\nreceipt:other\n\nbody\0"
                     % (unique.encode(), unique.encode()))
        frame = client.recorder.message()
        assert (frame.body, frame.headers["x-k"]) == ("body", "first")
        received = b""
        while b"receipt-id:" not in received:
            chunk = sock.recv(4096)
            assert chunk, received
            received += chunk
        assert b"receipt-id:r\n" in received
    finally:
        sock.close()
    assert amqp.basic_get(f"{unique}-b")[0] is None
