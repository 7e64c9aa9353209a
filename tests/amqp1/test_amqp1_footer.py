"""What of an AMQP 1.0 message has no AMQP 0-9-1 form still reaches an AMQP 1.0 receiver, as
RabbitMQ 4 (which keeps the bare message and footer) delivers it: the footer and the message
annotations without the ``x-`` prefix (or with a ulong key, or a value no header holds whole).
A 0-9-1 consumer sees neither, as RabbitMQ 4's conversion drops them; delivery annotations
reach no one (one hop only)."""

from __future__ import annotations

import uuid

from proton import Message, symbol, ulong

from tests.amqp1.proton_raw import (DELIVERY_ANNOTATIONS, FOOTER, MESSAGE_ANNOTATIONS,
                                    RawMessage, encoded, receive_raw, section, sections)
from tests.polling import eventually

FOOTER_MAP = {symbol("signature"): b"\x00\x01sig", symbol("hops"): 3}
ID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def _message(unique: str) -> bytes:
    message = Message(body=b"with a footer", inferred=True, properties={"app": "a"})
    message.annotations = {symbol("vendor-note"): "kept", ulong(7): "ulong key",
                           symbol("x-opt-trace"): "t", symbol("x-opt-ids"): {"a": [1, ID]}}
    return encoded(message, before=section(DELIVERY_ANNOTATIONS, {symbol("hop"): "one"}),
                   after=section(FOOTER, FOOTER_MAP))


def test_footer_and_annotations_without_x_reach_an_amqp1_receiver(amqp1, channel, unique):
    channel.queue_declare(unique)
    amqp1.create_sender(f"/queues/{unique}").send(RawMessage(_message(unique)))
    got = sections(receive_raw(amqp1, f"/queues/{unique}"))
    assert got[FOOTER] == FOOTER_MAP
    assert got[MESSAGE_ANNOTATIONS] == {
        "vendor-note": "kept", 7: "ulong key", "x-opt-trace": "t",
        "x-opt-ids": {"a": [1, ID]},            # whole: a header holds no uuid
        "x-exchange": "", "x-routing-key": unique}
    assert DELIVERY_ANNOTATIONS not in got
    assert bytes(got[0x75]) == b"with a footer"       # the body, as one data section


def test_a_pika_consumer_sees_neither(amqp1, channel, unique):
    channel.queue_declare(unique)
    amqp1.create_sender(f"/queues/{unique}").send(RawMessage(_message(unique)))
    _method, props, body = eventually(
        lambda: (got := channel.basic_get(unique, auto_ack=True))[0] is not None and got,
        "a message")
    assert body == b"with a footer"
    assert props.headers == {"app": "a", "x-opt-trace": "t", "x-opt-ids": {"a": [1]}}


def test_a_dead_lettered_message_keeps_its_footer(amqp1, channel, unique):
    channel.queue_declare(f"{unique}-dlq")
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq"})
    amqp1.create_sender(f"/queues/{unique}").send(RawMessage(_message(unique)))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    receiver.receive(timeout=30)
    receiver.reject()
    got = sections(receive_raw(amqp1, f"/queues/{unique}-dlq"))
    assert got[FOOTER] == FOOTER_MAP
    assert got[MESSAGE_ANNOTATIONS]["vendor-note"] == "kept"


def test_an_amqp_value_and_its_footer_are_the_091_body_as_rabbitmq_4_gives_them(
        amqp1, channel, unique):
    # RabbitMQ 4's mc_amqp converts a non-data body with the footer after it
    # (amqp_encoded_body_and_footer): that is the 0-9-1 body, typed amqp-1.0, and a 0-9-1
    # client passing the message on (as a shovel does) passes on both
    channel.queue_declare(unique)
    channel.queue_declare(f"{unique}-on")
    body = section(0x77, "value")
    amqp1.create_sender(f"/queues/{unique}").send(
        RawMessage(encoded(Message(body="value"), after=section(FOOTER, FOOTER_MAP))))
    _method, props, got = eventually(
        lambda: (got := channel.basic_get(unique, auto_ack=True))[0] is not None and got,
        "a message")
    assert (got, props.type) == (body + section(FOOTER, FOOTER_MAP), "amqp-1.0")
    channel.basic_publish("", f"{unique}-on", got, props)
    again = sections(receive_raw(amqp1, f"/queues/{unique}-on"))
    assert (again[0x77], again[FOOTER]) == ("value", FOOTER_MAP)


def test_an_amqp_value_with_a_footer_reaches_amqp1_once(amqp1, channel, unique):
    channel.queue_declare(unique)
    sent = encoded(Message(body="value"), after=section(FOOTER, FOOTER_MAP))
    amqp1.create_sender(f"/queues/{unique}").send(RawMessage(sent))
    got = receive_raw(amqp1, f"/queues/{unique}")
    assert got.endswith(section(0x77, "value") + section(FOOTER, FOOTER_MAP))
    assert got.count(section(FOOTER, FOOTER_MAP)) == 1
