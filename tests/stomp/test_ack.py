"""Ack modes, ACK/NACK, prefetch, UNSUBSCRIBE and disconnect requeueing."""

from __future__ import annotations

import pika
import pytest
import requests

from tests.stomp.conftest import raw_connect


def test_client_individual_acks_one(client, unique):
    q = f"/queue/{unique}"
    client.subscribe(q, ack="client-individual")
    for i in range(3):
        client.send(q, f"m{i}")
    frames = [client.recorder.message() for _ in range(3)]
    if client.version == "1.2":
        assert frames[0].headers["ack"]
    client.ack(frames[1])
    client.sync()
    client.conn.unsubscribe("s1") if client.version != "1.0" else \
        client.conn.unsubscribe(id="s1")
    client.sync()
    client.subscribe(q, sub_id="s2", ack="auto")
    bodies = sorted(client.recorder.message().body for _ in range(2))
    assert bodies == ["m0", "m2"]


def test_client_ack_is_cumulative(client, client_factory, unique):
    q = f"/queue/{unique}"
    client.subscribe(q, ack="client")
    for i in range(3):
        client.send(q, f"m{i}")
    frames = [client.recorder.message() for _ in range(3)]
    client.ack(frames[1])          # acks m0 and m1
    client.sync()
    client.conn.disconnect()
    other = client_factory(client.version)
    other.subscribe(q, ack="auto")
    frame = other.recorder.message()
    assert frame.body == "m2"
    assert frame.headers.get("redelivered") == "true"
    other.sync()
    assert other.recorder.messages.empty()


def test_nack_requeues_by_default(client, unique):
    q = f"/queue/{unique}"
    client.subscribe(q, ack="client-individual")
    client.send(q, "again")
    first = client.recorder.message()
    client.nack(first)
    second = client.recorder.message()
    assert second.body == "again" and second.headers.get("redelivered") == "true"
    client.ack(second)


def test_nack_requeue_false_dead_letters(client_factory, broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(f"{unique}.dead")
    ch.queue_declare(unique, durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": f"{unique}.dead"})
    c = client_factory("1.2")
    c.subscribe(f"/amq/queue/{unique}", ack="client-individual")
    c.subscribe(f"/amq/queue/{unique}.dead", sub_id="dead")
    c.send(f"/amq/queue/{unique}", "bad")
    frame = c.recorder.message()
    c.nack(frame, requeue=False)
    dead = c.recorder.message()
    assert dead.body == "bad" and dead.headers["subscription"] == "dead"
    conn.close()


def test_prefetch_count_bounds_unacked(client_factory, unique):
    c = client_factory("1.2")
    q = f"/queue/{unique}"
    for i in range(5):
        c.send(q, f"m{i}")
    c.sync()
    c.subscribe(q, ack="client-individual", **{"prefetch-count": "2"})
    a, b = c.recorder.message(), c.recorder.message()
    c.sync()
    assert c.recorder.messages.empty()
    c.ack(a)
    assert c.recorder.message().body == "m2"
    c.sync()
    assert c.recorder.messages.empty()


def test_activemq_prefetch_size(client_factory, unique):
    c = client_factory("1.1")
    q = f"/queue/{unique}"
    for i in range(3):
        c.send(q, f"m{i}")
    c.subscribe(q, ack="client", **{"activemq.prefetchSize": "1"})
    first = c.recorder.message()
    c.sync()
    assert c.recorder.messages.empty()
    c.ack(first)
    assert c.recorder.message().body == "m1"


def test_unknown_ack_id_is_error(client_factory):
    c = client_factory("1.2")
    c.conn.ack("T_99@@1")
    assert c.recorder.error().headers["message"] == "Subscription not found"


def test_disconnect_requeues_unacked(client_factory, unique):
    c = client_factory("1.2")
    q = f"/queue/{unique}"
    c.subscribe(q, ack="client-individual")
    c.send(q, "keep")
    c.recorder.message()
    c.conn.disconnect()
    d = client_factory("1.2")
    d.subscribe(q)
    frame = d.recorder.message()
    assert frame.body == "keep" and frame.headers["redelivered"] == "true"


def test_unsubscribe_unknown_is_error(client_factory):
    c = client_factory("1.2")
    c.conn.unsubscribe("nope")
    assert c.recorder.error().headers["message"] == "No subscription found"


def _raw_frames(sock, pending: bytearray, done) -> list[bytes]:
    """Frames read from a raw socket until ``done(frames)``; bytes read past the last frame
    stay in *pending* for the next call."""
    frames: list[bytes] = []
    while True:
        while b"\0" in pending:
            end = pending.index(b"\0")
            frames.append(bytes(pending[:end]).lstrip(b"\r\n"))
            del pending[:end + 1]
            if done(frames):
                return frames
        chunk = sock.recv(65536)
        assert chunk, f"closed early; got {frames!r}"
        pending += chunk


def _ack_ids(frames: list[bytes]) -> list[str]:
    return [line[4:].decode() for frame in frames if frame.startswith(b"MESSAGE")
            for line in frame.split(b"\n") if line.startswith(b"ack:")]


@pytest.mark.parametrize("ending", [b"UNSUBSCRIBE\nid:s\n\n\0DISCONNECT\nreceipt:bye\n\n\0",
                                    b"ACK\nid:T_s@@nobody@@1\n\n\0"],
                         ids=["unsubscribe", "bad-ack"])
def test_acks_in_one_read_settle_before_the_next_frame(client_factory, broker, unique, ending):
    """A run of ACKs in one write is settled before the frame after it: what was acked stays
    acked when an UNSUBSCRIBE (or a fatal bad ACK) ends the subscription in that same read,
    and only the unacknowledged message comes back."""
    sock = raw_connect(broker.stomp_port)
    try:
        sends = b"".join(b"SEND\ndestination:/queue/%s\n\nm%d\0" % (unique.encode(), i)
                         for i in range(3))
        sock.sendall(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\0"
                     b"SUBSCRIBE\nid:s\ndestination:/queue/" + unique.encode() +
                     b"\nack:client-individual\n\n\0" + sends)
        pending = bytearray()
        ids = _ack_ids(_raw_frames(sock, pending, lambda frames: len(_ack_ids(frames)) == 3))
        acks = b"".join(b"ACK\nid:%s\n\n\0" % i.encode() for i in ids[:2])
        sock.sendall(acks + ending)
        last = b"RECEIPT" if ending.startswith(b"UNSUB") else b"ERROR"
        tail = _raw_frames(sock, pending, lambda frames: frames[-1].startswith(last))
        if last == b"ERROR":
            assert b"message:Subscription not found" in tail[-1]
    finally:
        sock.close()
    other = client_factory("1.2")
    other.subscribe(f"/queue/{unique}", ack="client-individual")
    frame = other.recorder.message()
    assert frame.body == "m2" and frame.headers["redelivered"] == "true"
    other.ack(frame)
    other.sync()
    assert other.recorder.messages.empty()
    # nothing left held as unacknowledged by the closed connection either
    info = requests.get(f"http://127.0.0.1:{broker.http_port}/api/queues/%2F/{unique}",
                        auth=("guest", "guest"), timeout=10).json()
    assert (info["messages_ready"], info["messages_unacknowledged"]) == (0, 0), info


def test_a_subscription_id_that_needs_escaping_comes_back_whole(client, unique):
    """MESSAGE frames are built from pieces encoded once per subscription
    (stomp/message_frames.py): an id holding ':' (and '\\', which 1.0 cannot escape) comes
    back in the subscription header, and ACKs of its message-ids settle the messages."""
    q = f"/queue/{unique}"
    sub_id = "odd:id" if client.version == "1.0" else "odd:id\\x"
    client.subscribe(q, sub_id=sub_id, ack="client-individual")
    client.send(q, "m0")
    client.send(q, "m1")
    frames = [client.recorder.message() for _ in range(2)]
    assert [f.body for f in frames] == ["m0", "m1"]
    assert {f.headers["subscription"] for f in frames} == {sub_id}
    assert {f.headers["destination"] for f in frames} == {q}
    for frame in frames:
        client.ack(frame)
    client.sync()
    assert client.recorder.errors.empty()
    client.conn.unsubscribe(sub_id) if client.version != "1.0" else \
        client.conn.unsubscribe(id=sub_id)
    client.send(q, "m2")
    client.subscribe(q, sub_id="s2")
    assert client.recorder.message().body == "m2"     # m0 and m1 were settled


def test_a_header_the_version_cannot_carry_is_left_out_of_that_message_only(
        client, broker, unique):
    """A message's own header with a line feed cannot be written in STOMP 1.0 (no escapes):
    that MESSAGE is built the general way without it; the next one is whole."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(unique)
        client.subscribe(f"/amq/queue/{unique}")
        ch.basic_publish("", unique, b"m0", pika.BasicProperties(
            headers={"multi": "a\nb", "keep": "yes"}))
        ch.basic_publish("", unique, b"m1", pika.BasicProperties(headers={"keep": "too"}))
    finally:
        conn.close()
    first, second = client.recorder.message(), client.recorder.message()
    assert (first.body, first.headers["keep"]) == ("m0", "yes")
    assert first.headers.get("multi") == (None if client.version == "1.0" else "a\nb")
    assert (second.body, second.headers["keep"]) == ("m1", "too")
    assert second.headers["message-id"] != first.headers["message-id"]
