"""Behaviours RabbitMQ's own STOMP test suite (rabbitmq_stomp python_SUITE) checks, each found
failing against warren once: message ids and MESSAGE headers, receipt order, transactional
receipts, x-queue-name, RabbitMQ's error texts, stray NULs between frames."""

from __future__ import annotations

import re

import pika

from tests.stomp.conftest import raw_connect, read_until_closed

CONNECT10 = b"CONNECT\nlogin:guest\npasscode:guest\n\n\0"


def _read_frame(sock) -> bytes:
    data = b""
    while b"\0" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    return data


def test_connected_headers_in_rabbitmq_order(broker):
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT10)
    frame = _read_frame(s).decode()
    assert re.match(r"CONNECTED\nserver:warren/[^\n]+\nsession:session-[^\n]+\n"
                    r"heart-beat:0,0\nversion:1.0\n\n\0", frame), frame
    s.close()


def test_message_without_subscription_id_1_0(broker):
    """1.0 SUBSCRIBE without id: consumer tag Q_<destination>, no subscription header,
    redelivered:false always, and leading NULs between frames are skipped."""
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT10)
    _read_frame(s)
    s.sendall(b"\n\0SUBSCRIBE\ndestination:/exchange/amq.fanout\nreceipt:r\n\n\0\n"
              b"\0SEND\ndestination:/exchange/amq.fanout\ncontent-type:text/plain\n\nhello\n\0\n")
    data = b""
    while data.count(b"\0") < 2:
        data += s.recv(65536)
    receipt, message = data.split(b"\0")[:2]
    assert receipt == b"RECEIPT\nreceipt-id:r\n\n"
    assert re.match(rb"MESSAGE\ndestination:/exchange/amq.fanout\n"
                    rb"message-id:Q_/exchange/amq.fanout@@session-[^\n]+@@\d+\n"
                    rb"redelivered:false\ncontent-type:text/plain\nJMSXDeliveryCount:1\n"
                    rb"content-length:6\n\nhello\n$",
                    message), message
    s.close()


def test_subscribe_receipt_comes_before_waiting_messages(broker, unique):
    s = raw_connect(broker.stomp_port)
    s.sendall(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0")
    _read_frame(s)
    q = unique.encode()
    s.sendall(b"SEND\ndestination:/queue/" + q + b"\nreceipt:sent\n\nwaiting\0")
    assert _read_frame(s).startswith(b"RECEIPT\nreceipt-id:sent")
    s.sendall(b"SUBSCRIBE\nid:s1\nack:client\ndestination:/queue/" + q + b"\nreceipt:sub\n\n\0")
    data = b""
    while data.count(b"\0") < 2:
        data += s.recv(65536)
    receipt, message = data.split(b"\0")[:2]
    assert receipt == b"RECEIPT\nreceipt-id:sub\n\n"
    assert message.startswith(b"MESSAGE\nsubscription:s1\ndestination:/queue/" + q +
                              b"\nmessage-id:T_s1@@session-"), message
    assert b"\nredelivered:false\n" in message and message.endswith(b"\n\nwaiting")
    s.close()


def test_transactional_send_receipts_wait_for_commit(client_factory, unique):
    c = client_factory("1.2")
    c.conn.begin("tx1")
    c.conn.send(f"/queue/{unique}", "in-tx", headers={"transaction": "tx1", "receipt": "held"})
    c.sync()                                   # its receipt comes; the held one has not
    assert c.recorder.receipts.empty()
    c.conn.commit("tx1", headers={"receipt": "commit"})
    assert [c.recorder.receipt(), c.recorder.receipt()] == ["held", "commit"]


def test_x_queue_name_names_topic_subscription_queue(client_factory, broker, unique):
    c = client_factory("1.2")
    c.subscribe(f"/topic/{unique}", **{"x-queue-name": f"{unique}-named"})
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        conn.channel().basic_publish("", f"{unique}-named", b"via amqp",
                                     pika.BasicProperties(headers={"x-custom-hdr": "v"}))
    finally:
        conn.close()
    frame = c.recorder.message()
    assert frame.body == "via amqp" and frame.headers["x-custom-hdr"] == "v"


def test_exchange_destination_without_key_echoed_without_slash(client_factory):
    c = client_factory("1.2")
    c.subscribe("/exchange/amq.fanout")
    c.send("/exchange/amq.fanout", "x")
    assert c.recorder.message().headers["destination"] == "/exchange/amq.fanout"


def _error_after(broker, frames: bytes, connect: bytes = CONNECT10) -> bytes:
    s = raw_connect(broker.stomp_port)
    s.sendall(connect)
    assert _read_frame(s).startswith(b"CONNECTED")
    s.sendall(frames)
    data = read_until_closed(s)
    s.close()
    return data[data.index(b"ERROR\n"):]


def test_invalid_destination_texts(broker):
    for dest, body in [(b"/queue/bah/baz", b"'/bah/baz' is not a valid queue destination\n"),
                       (b"/topic", b"'' is not a valid topic destination\n"),
                       (b"/exchange//foo", b"'//foo' is not a valid exchange destination\n")]:
        error = _error_after(broker, b"SEND\ndestination:" + dest + b"\n\nx\0")
        assert b"\nmessage:Invalid destination\n" in error
        assert error.split(b"\n\n", 1)[1].rstrip(b"\0") == body


def test_duplicate_subscription_and_durable_without_id(broker):
    error = _error_after(broker, b"SUBSCRIBE\nid:1\ndestination:/queue/dup-sub-reg\n\n\0"
                                 b"SUBSCRIBE\nid:1\ndestination:/queue/dup-sub-reg\n\n\0")
    assert b"\nmessage:Duplicated subscription identifier\n" in error
    assert b"A subscription identified by 'T_1' already exists." in error
    error = _error_after(broker, b"SUBSCRIBE\ndestination:/topic/d\ndurable:true\n\n\0")
    assert b"\nmessage:Missing Header\n" in error


def test_send_with_message_id_refused(broker):
    error = _error_after(broker, b"SEND\ndestination:/queue/a\nmessage-id:1\n\n\0")
    assert b"\nmessage:Invalid header\n" in error
    assert b"'message-id' is not allowed on 'SEND'.\n" in error


def test_connect_refusal_texts(broker):
    for connect, body in [
            (b"CONNECT\nlogin:gust\npasscode:guest\n\n\0", b"Access refused for user 'gust'\n"),
            (b"CONNECT\naccept-version:100.1\nlogin:guest\npasscode:guest\n\n\0",
             b"Supported versions are 1.0,1.1,1.2\n"),
            (b"CONNECT\naccept-version:1.1\nhost://\nlogin:guest\npasscode:guest\n\n\0",
             b"Virtual host '//' access denied")]:
        s = raw_connect(broker.stomp_port)
        s.sendall(connect)
        data = read_until_closed(s)
        s.close()
        assert data.startswith(b"ERROR\n"), data
        assert data.split(b"\n\n", 1)[1].rstrip(b"\0") == body
