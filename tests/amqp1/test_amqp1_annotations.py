"""AMQP 1.0 message annotations kept, as RabbitMQ 4 keeps them: through a queue from 1.0 to
1.0 with the application properties, ``x-exchange`` / ``x-routing-key`` set on delivery,
``x-`` annotations as 0-9-1 headers and ``x-`` headers as annotations; delivery annotations
(one hop only) dropped; bad annotation sections on raw frames."""

from __future__ import annotations

import struct
import uuid

import pika
import pytest
from proton import Message, symbol

from tests.amqp1.raw import Raw, close_error
from tests.polling import eventually
from warren.amqp1_message.codec import Composite, Described, ULong, encode_frame, encode_message


def got_one(result):
    return result if result[0] is not None else None


def test_annotations_and_application_properties_survive_a_queue(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.direct", routing_key=unique)
    sender = amqp1.create_sender(f"/exchanges/amq.direct/{unique}")
    message = Message(body=b"annotated", properties={"k": "v", "n": 2})
    message.annotations = {symbol("x-opt-trace"): "abc", symbol("x-opt-hops"): 3,
                           symbol("x-opt-flag"): True}
    message.instructions = {symbol("x-opt-next-hop-only"): "gone"}
    sender.send(message)
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == b"annotated"
    assert got.properties == {"k": "v", "n": 2}
    assert got.annotations == {"x-opt-trace": "abc", "x-opt-hops": 3, "x-opt-flag": True,
                               "x-exchange": "amq.direct", "x-routing-key": unique}
    assert not got.instructions          # delivery annotations are for one hop only


def test_delivery_says_where_a_pika_message_was_published(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.topic", routing_key="a.*")
    channel.basic_publish("amq.topic", "a.b", b"routed", pika.BasicProperties(
        headers={"x-trace": "t-1", "plain": "p", "x-table": {"x-k": [1, "two"]},
                 "table": {"not": "converted"}}))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    # RabbitMQ 4: x- headers become message annotations (tables as maps), the others
    # application properties, where a table has no place
    assert got.annotations == {"x-trace": "t-1", "x-table": {"x-k": [1, "two"]},
                               "x-exchange": "amq.topic", "x-routing-key": "a.b"}
    assert got.properties == {"plain": "p"}


def test_a_header_tables_keys_are_symbols_a_senders_map_keys_as_sent(amqp1, channel,
                                                                      unique):
    # mc_amqpl converts a 0-9-1 table into a map with symbol keys, x- or not; a 1.0
    # sender's map keeps its string keys through the queue (RabbitMQ 4 keeps the message)
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"t", pika.BasicProperties(
        headers={"x-table": {"plain": {"inner": 1}}}))
    message = Message(body=b"m", inferred=True)
    message.annotations = {symbol("x-map"): {"text": {"deeper": 2}, symbol("sym"): 3}}
    amqp1.create_sender(f"/queues/{unique}").send(message)
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    from_pika, from_amqp1 = receiver.receive(timeout=30), receiver.receive(timeout=30)
    receiver.accept()
    table = from_pika.annotations["x-table"]
    assert [type(k) for k in table] == [symbol] and [type(k) for k in table["plain"]] == \
        [symbol]
    kept = from_amqp1.annotations["x-map"]
    assert {k: type(k) for k in kept} == {"text": str, "sym": symbol}
    assert [type(k) for k in kept["text"]] == [str]


def test_deliveries_alike_but_for_their_key_say_their_own_key(amqp1, channel, unique):
    # the sections before the body are encoded once per kind of delivery (encode_delivery):
    # messages with the same properties, one published over 0-9-1 and one over 1.0 to each
    # of two keys, still each say where they were published, and a redelivery says so
    channel.queue_declare(unique)
    channel.queue_bind(unique, "amq.topic", routing_key="k.*")
    props = pika.BasicProperties(content_type="text/plain", headers={"h": 1})
    for key in ("k.1", "k.2"):
        channel.basic_publish("amq.topic", key, key.encode(), props)
        amqp1.create_sender(f"/exchanges/amq.topic/{key}").send(
            Message(body=key.encode(), inferred=True, content_type="text/plain",
                    properties={"h": 1}))
    receiver = amqp1.create_receiver(f"/queues/{unique}", credit=4)
    got = [receiver.receive(timeout=30) for _ in range(4)]
    receiver.release()
    again = receiver.receive(timeout=30)
    receiver.accept()
    seen = sorted((m.annotations["x-routing-key"], bytes(m.body), m.first_acquirer)
                  for m in got)
    assert seen == [("k.1", b"k.1", True)] * 2 + [("k.2", b"k.2", True)] * 2
    assert again.annotations["x-routing-key"] == bytes(again.body).decode()
    assert again.first_acquirer is False


def test_x_annotations_reach_a_pika_consumer_as_headers(amqp1, channel, unique):
    channel.queue_declare(unique)
    sender = amqp1.create_sender(f"/queues/{unique}")
    message = Message(body=b"to pika", inferred=True, properties={"app": "a"})
    message.annotations = {symbol("x-opt-trace"): "abc", symbol("x-count"): 4,
                           symbol("vendor-without-x"): "dropped"}
    sender.send(message)
    _method, props, body = eventually(
        lambda: got_one(channel.basic_get(unique, auto_ack=True)), "a message")
    assert body == b"to pika"
    assert props.headers == {"app": "a", "x-opt-trace": "abc", "x-count": 4}


def test_annotations_with_no_header_form_are_dropped(broker, channel, unique):
    # a ulong key (reserved by the spec) and a uuid value have no 0-9-1 header form: the
    # message goes through without them, nothing else of it lost; a map is a table
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin()
    raw.attach_sender(Composite("target", address=f"/queues/{unique}"))
    raw.transfer(0, 0, encode_message({
        "message_annotations": {ULong(7): "ulong key", "x-uuid": uuid.uuid4(),
                                "x-map": {"a": [1, uuid.uuid4()]}, "x-kept": "yes"},
        "data": [b"body"]}))
    assert raw.frame().performative.state.kind == "accepted"
    _method, props, body = eventually(
        lambda: got_one(channel.basic_get(unique, auto_ack=True)), "a message")
    assert body == b"body" and props.headers == {"x-kept": "yes", "x-map": {"a": [1]}}


@pytest.mark.parametrize("section", [0x71, 0x72, 0x78])   # delivery-, message-ann., footer
def test_annotations_that_are_not_a_map_are_decode_error(broker, channel, unique, section):
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin()
    raw.attach_sender(Composite("target", address=f"/queues/{unique}"))
    bad = encode_message({"data": [b"x"]})
    bad = bytes(encode_message({})) + _described(section, ["a", "list"]) + bad
    raw.transfer(0, 0, bad)
    assert close_error(raw).condition == "amqp:decode-error"
    assert channel.queue_declare(unique, passive=True).method.message_count == 0


def _described(code: int, value) -> bytes:
    """A section of the given descriptor code holding any value (here, a wrong one)."""
    frame = encode_frame(Described(ULong(code), value))
    size = struct.unpack(">I", frame[:4])[0]
    return frame[8:size]


def test_zz_no_traceback(broker):
    assert "Traceback" not in broker.log()
