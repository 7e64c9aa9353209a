"""Bad input over raw sockets: an ERROR frame with a `message` header, then close; the broker
keeps serving everyone else and loses nothing stored."""

from __future__ import annotations

import pika
import pytest

from tests.stomp.conftest import raw_connect, read_until_closed

CONNECT = b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0"

BAD_INPUT = {
    "unknown command": (b"FROB\n\n\0", b"Bad command"),
    "missing destination": (b"SEND\n\nbody\0", b"Missing destination"),
    "missing subscribe id": (b"SUBSCRIBE\ndestination:/queue/x\n\n\0", b"Missing header 'id'"),
    "bad ack mode": (b"SUBSCRIBE\nid:1\ndestination:/queue/x\nack:sometimes\n\n\0",
                     b"Invalid ack mode"),
    "bad escape": (b"SEND\ndestination:/queue/x\nh:a\\tb\n\n\0", b"Invalid header escape"),
    "body longer than content-length": (b"SEND\ndestination:/queue/x\ncontent-length:2\n\n"
                                        b"abcdef\0", b"Body longer than content-length"),
    "bad content-length": (b"SEND\ndestination:/queue/x\ncontent-length:-1\n\nx\0",
                           b"Invalid content-length"),
    "header without colon": (b"SEND\ndestination:/queue/x\nnocolon\n\n\0",
                             b"Header without colon"),
    "too many headers": (b"SEND\ndestination:/queue/x\n"
                         + b"".join(b"h%d:v\n" % i for i in range(2000)) + b"\n\0",
                         b"Too many headers"),
    "frame too large": (b"SEND\ndestination:/queue/x\n\n" + b"x" * (5 * 1024 * 1024) + b"\0",
                        b"Frame too large"),
    "bad priority": (b"SEND\ndestination:/queue/x\npriority:high\n\n\0", b"Invalid priority"),
    "ack without id": (b"ACK\n\n\0", b"Missing header"),
    "second CONNECT": (CONNECT, b"Unexpected frame"),
    "bad heart-beat": (None, b"Invalid heart-beat header"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_gets_error_then_close(broker, case):
    frame, message = BAD_INPUT[case]
    s = raw_connect(broker.stomp_port)
    if frame is None:
        s.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n"
                  b"heart-beat:x,y\n\n\0")
    else:
        s.sendall(CONNECT)
        assert s.recv(4096).startswith(b"CONNECTED")
        try:
            s.sendall(frame)
        except (BrokenPipeError, ConnectionResetError):
            pass
    data = read_until_closed(s)
    assert data.startswith(b"ERROR\n"), data[:200]
    head = data.split(b"\n\n", 1)[0]
    assert b"\nmessage:" + message in head, head
    # as RabbitMQ's every ERROR: the versions it speaks (stomp.py and others read them)
    assert b"\nversion:1.0,1.1,1.2\n" in head + b"\n", head
    s.close()
    # the broker still serves another client
    other = raw_connect(broker.stomp_port)
    other.sendall(CONNECT + b"DISCONNECT\nreceipt:ok\n\n\0")
    assert b"RECEIPT\nreceipt-id:ok" in read_until_closed(other)


def _frames(data: bytes) -> list[tuple[str, dict[str, str], bytes]]:
    """Split what a connection read until close into (command, headers, body) frames."""
    frames = []
    for raw in data.split(b"\0"):
        raw = raw.lstrip(b"\r\n")
        if not raw:
            continue
        head, _, body = raw.partition(b"\n\n")
        command, *lines = head.decode().split("\n")
        frames.append((command, dict(line.split(":", 1) for line in lines), body))
    return frames


def test_refused_subscribe_gets_error_then_its_receipt(broker):
    # as RabbitMQ 3.10: the ERROR names no receipt, the RECEIPT follows it, then the close
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT + b"SUBSCRIBE\nid:1\ndestination:/amq/queue/missing-q\nreceipt:r9\n\n\0")
    frames = _frames(read_until_closed(s))
    assert [f[0] for f in frames] == ["CONNECTED", "ERROR", "RECEIPT"], frames
    _, headers, body = frames[1]
    assert "receipt-id" not in headers
    assert headers["message"] == "not_found"
    assert body == b"NOT_FOUND - no queue 'missing-q' in vhost '/'"
    assert headers["content-length"] == str(len(body))
    assert frames[2][1] == {"receipt-id": "r9"}


def test_duplicated_subscription_id_gets_error_then_its_receipt(broker, unique):
    s = raw_connect(broker.stomp_port)
    sub = b"SUBSCRIBE\nid:1\ndestination:/queue/%s\n" % unique.encode()
    s.sendall(CONNECT + sub + b"\n\0" + sub + b"receipt:dup\n\n\0")
    frames = _frames(read_until_closed(s))
    assert [f[0] for f in frames] == ["CONNECTED", "ERROR", "RECEIPT"], frames
    assert frames[1][1]["message"] == "Duplicated subscription identifier"
    assert "receipt-id" not in frames[1][1]
    assert frames[2][1] == {"receipt-id": "dup"}


@pytest.mark.parametrize("frame", [
    b"SEND\ndestination:/exchange/missing-x/k\nreceipt:r1\n\nbody\0",
    b"SUBSCRIBE\nid:1\ndestination:/queue/x\nack:sometimes\nreceipt:r1\n\n\0",
    b"FROB\nreceipt:r1\n\n\0",
], ids=["send to a missing exchange", "bad subscribe", "unknown command"])
def test_other_errors_name_no_receipt_and_send_none(broker, frame):
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT + frame)
    frames = _frames(read_until_closed(s))
    assert [f[0] for f in frames] == ["CONNECTED", "ERROR"], frames
    assert "receipt-id" not in frames[1][1]


def test_frames_before_fault_are_acted_on(broker, unique):
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT)
    assert s.recv(4096).startswith(b"CONNECTED")
    s.sendall(b"SEND\ndestination:/queue/%s\npersistent:true\n\nsaved\0FROB\n\n\0"
              % unique.encode())
    assert read_until_closed(s).startswith(b"ERROR")
    t = raw_connect(broker.stomp_port)
    t.sendall(CONNECT + b"SUBSCRIBE\nid:1\ndestination:/queue/%s\n\n\0" % unique.encode())
    data = b""
    while b"saved" not in data:
        chunk = t.recv(4096)
        assert chunk
        data += chunk
    t.close()


def test_unacked_messages_survive_a_faulty_client(broker, unique):
    q = b"/queue/" + unique.encode()
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT + b"SEND\ndestination:" + q + b"\n\nkeep-me\0"
              b"SUBSCRIBE\nid:1\nack:client\ndestination:" + q + b"\n\n\0")
    data = b""
    while b"keep-me" not in data:
        data += s.recv(4096)
    s.sendall(b"GARBAGE\n\n\0")
    read_until_closed(s)
    t = raw_connect(broker.stomp_port)
    t.sendall(CONNECT + b"SUBSCRIBE\nid:1\ndestination:" + q + b"\n\n\0")
    data = b""
    while b"keep-me" not in data:
        chunk = t.recv(4096)
        assert chunk
        data += chunk
    assert b"redelivered:true" in data
    t.close()


def test_send_to_internal_exchange_is_refused(broker, unique):
    """STOMP publishes through the core's pipeline: same rule, same text as AMQP."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    conn.channel().exchange_declare(unique, "fanout", internal=True)
    conn.close()
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT + f"SEND\ndestination:/exchange/{unique}/k\n\nx\0".encode())
    data = read_until_closed(s)
    error = data[data.index(b"ERROR\n"):]
    assert f"cannot publish to internal exchange '{unique}' in vhost '/'".encode() in error


def test_unknown_command_error_is_rabbitmqs(broker):
    """RabbitMQ's ERROR for an unknown command: its headers in its order, version included."""
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT)
    assert s.recv(4096).startswith(b"CONNECTED")
    s.sendall(b"FROB\n\n\0")
    data = read_until_closed(s)
    head, body = data.split(b"\n\n", 1)
    assert head.split(b"\n") == [b"ERROR", b"message:Bad command", b"content-type:text/plain",
                                 b"version:1.0,1.1,1.2", b"content-length:%d" % (len(body) - 1)]
    assert body.startswith(b'Could not interpret command "FROB"')


# (frame, ERROR message header, body): RabbitMQ 3.10.8's words, read off its STOMP plugin
RABBITMQ_TEXTS = {
    "send without destination": (
        b"SEND\n\nx\0", "Missing destination",
        b"\"SEND\" must include a 'destination' header\n"),
    "subscribe without destination": (
        b"SUBSCRIBE\nid:1\n\n\0", "Missing destination",
        b"\"SUBSCRIBE\" must include a 'destination' header\n"),
    "send in an unknown transaction": (
        b"SEND\ndestination:/queue/x\ntransaction:nope\n\nx\0", "Bad transaction",
        b'Invalid transaction identifier: "nope"\n'),
    "abort an unknown transaction": (
        b"ABORT\ntransaction:t8\n\n\0", "Bad transaction",
        b'Invalid transaction identifier: "t8"\n'),
    "unsubscribe an unknown id": (
        b"UNSUBSCRIBE\nid:nosuch\n\n\0", "No subscription found",
        b"UNSUBSCRIBE must refer to an existing subscription.\n"
        b"Subscription to \"id='nosuch'\" not found.\n"),
    "ack without id": (
        b"ACK\n\n\0", "Missing header", b'"ACK" must include the "id" header\n'),
    "nack with an id of another shape": (
        b"NACK\nid:zzz\n\n\0", "Invalid header", b'"NACK" must include a valid "id" header\n'),
    "ack naming no subscription": (
        b"ACK\nid:T_1@@session-abc@@5\n\n\0", "Subscription not found",
        b'Message with id "T_1@@session-abc@@5" has no subscription'),
    "destination of no known type": (
        b"SEND\ndestination:/bogus/x\n\nx\0", "Unknown destination",
        b"'/bogus/x' is not a valid destination.\nValid destination types are: /temp-queue, "
        b"/exchange, /topic, /queue, /amq/queue, /reply-queue/.\n"),
}


@pytest.mark.parametrize("case", sorted(RABBITMQ_TEXTS))
def test_error_texts_are_rabbitmqs(broker, case):
    frame, message, body = RABBITMQ_TEXTS[case]
    s = raw_connect(broker.stomp_port)
    s.sendall(CONNECT + frame)
    frames = _frames(read_until_closed(s))
    assert [f[0] for f in frames] == ["CONNECTED", "ERROR"], frames
    _, headers, got = frames[1]
    assert (headers["message"], got) == (message, body)
    assert headers["content-length"] == str(len(body))
