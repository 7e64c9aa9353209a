"""The body section an AMQP 1.0 sender chose reaches AMQP 1.0 receivers as it was sent, as
RabbitMQ 4 keeps it: an amqp-value of any type, amqp-sequence sections, several data
sections. An AMQP 0-9-1 consumer gets what RabbitMQ 4's ``mc_amqpl`` gives it: data sections'
bytes joined; any other body its sections AMQP-encoded, with the type ``amqp-1.0`` (a
subject changes nothing: 0-9-1 has no place for it, but JMSType selectors read it). A 0-9-1
publisher's body reaches 1.0 receivers as one data section, or, typed ``amqp-1.0``, as the
body sections it holds. A body of two kinds is the spec's decode error."""

from __future__ import annotations

import pika
import pytest
from proton import Message, symbol, ulong
from proton.reactor import Selector

from tests.amqp1.proton_raw import RawMessage, receive_raw, section, section_list
from tests.amqp1.raw import Raw, close_error
from tests.polling import eventually
from warren.amqp1_message.codec import Composite

DATA, AMQP_SEQUENCE, AMQP_VALUE, PROPERTIES, FOOTER = 0x75, 0x76, 0x77, 0x73, 0x78
BODY = (DATA, AMQP_SEQUENCE, AMQP_VALUE)

#: body kinds as (descriptor code, value) sections, in order
KINDS = {
    "string": [(AMQP_VALUE, "text")],
    "int": [(AMQP_VALUE, -7)],
    "ulong": [(AMQP_VALUE, ulong(2 ** 40))],
    "map": [(AMQP_VALUE, {"a": 1, symbol("s"): [True, None, 1.5, b"\x00"]})],
    "list": [(AMQP_VALUE, [1, "two", b"3"])],
    "binary": [(AMQP_VALUE, b"\x00\xff")],
    "null": [(AMQP_VALUE, None)],
    "sequences": [(AMQP_SEQUENCE, [1, "a"]), (AMQP_SEQUENCE, [b"b"])],
    "data sections": [(DATA, b"one"), (DATA, b""), (DATA, b"three")],
    "one data section": [(DATA, b"one")],
}


def typed(value):
    """A value with the type of each part, so ``==`` also compares types (1 == True)."""
    if isinstance(value, dict):
        return {typed(k): typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


def encoded_body(kind: str) -> bytes:
    return b"".join(section(code, value) for code, value in KINDS[kind])


def got_one(channel, queue):
    return eventually(lambda: (got := channel.basic_get(queue, auto_ack=True))[0] is not None
                      and got, f"a message in {queue}")


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_reaches_amqp1_as_sent_and_091_as_rabbitmq_4_gives_it(amqp1, channel,
                                                                     unique, kind):
    # one publish, two queues: one read over 1.0, one over 0-9-1
    for name in (f"{unique}-1.0", f"{unique}-0-9-1"):
        channel.queue_declare(name)
        channel.queue_bind(name, "amq.direct", routing_key=unique)
    head = bytes(Message(subject="kind", content_type="application/x-test").encode())
    amqp1.create_sender(f"/exchanges/amq.direct/{unique}").send(
        RawMessage(head + encoded_body(kind)))

    got = section_list(receive_raw(amqp1, f"/queues/{unique}-1.0"))
    assert typed([s for s in got if s[0] in BODY]) == typed(KINDS[kind])
    properties = dict(got)[PROPERTIES]
    assert (properties[3], properties[6]) == ("kind", "application/x-test")   # subject,
    #                                                                       content-type

    _method, props, body = got_one(channel, f"{unique}-0-9-1")
    assert props.content_type == "application/x-test"
    # the subject is no 0-9-1 property (mc_amqpl); the type says what the body is
    assert props.type == (None if KINDS[kind][0][0] == DATA else "amqp-1.0")
    if KINDS[kind][0][0] == DATA:
        assert body == b"".join(value for _code, value in KINDS[kind])
    else:
        assert body == encoded_body(kind)           # as RabbitMQ 4's mc_amqpl gives it


@pytest.mark.parametrize("kind", ["string", "sequences", "data sections"])
def test_with_no_subject_an_encoded_body_is_typed_amqp_1_0(amqp1, channel, unique, kind):
    for name in (f"{unique}-1.0", f"{unique}-0-9-1"):
        channel.queue_declare(name)
        channel.queue_bind(name, "amq.direct", routing_key=unique)
    amqp1.create_sender(f"/exchanges/amq.direct/{unique}").send(
        RawMessage(bytes(Message().encode()) + encoded_body(kind)))
    got = section_list(receive_raw(amqp1, f"/queues/{unique}-1.0"))
    assert typed([s for s in got if s[0] in BODY]) == typed(KINDS[kind])
    assert PROPERTIES not in dict(got)          # no subject made of the type
    _method, props, _body = got_one(channel, f"{unique}-0-9-1")
    assert props.type == (None if kind == "data sections" else "amqp-1.0")


def test_a_jms_type_selector_sees_the_subject_of_an_amqp_value(amqp1, channel, unique):
    # Qpid JMS: a TextMessage's body is an amqp-value string, its JMSType the subject
    channel.queue_declare(unique)
    sender = amqp1.create_sender(f"/queues/{unique}")
    sender.send(Message(body="skipped", subject="other"))
    sender.send(Message(body="taken", subject="order"))
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=Selector("JMSType = 'order'"))
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert (got.body, got.subject) == ("taken", "order")


@pytest.mark.parametrize("body, type_, sent", [
    (b"plain", None, [(DATA, b"plain")]),
    (b"plain", "amqp-1.0", [(DATA, b"plain")]),     # typed so, but no sections: data
    (b"", "amqp-1.0", [(DATA, b"")]),
    (section(AMQP_VALUE, {"k": "v"}), "amqp-1.0", [(AMQP_VALUE, {"k": "v"})]),
    (section(AMQP_SEQUENCE, [1]) + section(AMQP_SEQUENCE, [2]), "amqp-1.0",
     [(AMQP_SEQUENCE, [1]), (AMQP_SEQUENCE, [2])]),
    (section(DATA, b"a") + section(DATA, b"b"), "amqp-1.0", [(DATA, b"a"), (DATA, b"b")]),
    # a footer after the body: RabbitMQ 4's mc_amqpl decodes the whole 0-9-1 body into
    # sections (and its own 1.0 -> 0-9-1 conversion puts the footer there)
    (section(AMQP_VALUE, "v") + section(FOOTER, {}), "amqp-1.0",
     [(AMQP_VALUE, "v"), (FOOTER, {})]),
    (section(AMQP_VALUE, "v") + section(PROPERTIES, []), "amqp-1.0",   # not only a body
     [(DATA, section(AMQP_VALUE, "v") + section(PROPERTIES, []))]),
    (section(FOOTER, {}), "amqp-1.0", [(DATA, section(FOOTER, {}))]),  # a footer, no body
], ids=["plain", "plain typed amqp-1.0", "empty typed amqp-1.0", "amqp-value",
        "amqp-sequences", "data sections", "a body and its footer", "not only a body",
        "a footer without a body"])
def test_a_091_body_reaches_amqp1_as_rabbitmq_4_gives_it(amqp1, channel, unique, body,
                                                         type_, sent):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, body, pika.BasicProperties(type=type_))
    got = section_list(receive_raw(amqp1, f"/queues/{unique}"))
    assert typed([s for s in got if s[0] in BODY + (FOOTER,)]) == typed(sent)


@pytest.mark.parametrize("body", [
    section(DATA, b"x") + section(AMQP_VALUE, "y"),             # two kinds
    section(AMQP_VALUE, "x") + section(AMQP_VALUE, "y"),        # two amqp-values
    section(AMQP_SEQUENCE, [1]) + section(AMQP_VALUE, "y"),
], ids=["data and amqp-value", "two amqp-values", "amqp-sequence and amqp-value"])
def test_a_body_of_two_kinds_is_a_decode_error(broker, channel, unique, body):
    channel.queue_declare(unique)
    raw = Raw(broker.amqp_port)
    raw.open()
    raw.begin()
    raw.attach_sender(Composite("target", address=f"/queues/{unique}"))
    raw.transfer(0, 0, body)
    assert close_error(raw).condition == "amqp:decode-error"
    assert channel.queue_declare(unique, passive=True).method.message_count == 0


def test_zz_no_traceback(broker):
    assert "Traceback" not in broker.log()


def test_a_basic_type_annotation_is_the_091_type_and_no_header(amqp1, channel, unique):
    # mc_amqpl: a data body's type is the x-basic-type annotation; x-basic-* annotations
    # are internal, no headers; a 1.0 receiver still gets the annotation and the subject
    for name in (f"{unique}-1.0", f"{unique}-0-9-1"):
        channel.queue_declare(name)
        channel.queue_bind(name, "amq.direct", routing_key=unique)
    message = Message(body=b"typed", inferred=True, subject="s", properties={"k": "v"})
    message.annotations = {symbol("x-basic-type"): "t", symbol("x-other"): "o"}
    amqp1.create_sender(f"/exchanges/amq.direct/{unique}").send(message)
    _method, props, _body = got_one(channel, f"{unique}-0-9-1")
    assert (props.type, props.headers) == ("t", {"x-other": "o", "k": "v"})
    receiver = amqp1.create_receiver(f"/queues/{unique}-1.0")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert (got.subject, got.annotations["x-basic-type"]) == ("s", "t")


def test_a_jms_type_selector_sees_the_subject_of_a_data_body(amqp1, channel, unique):
    channel.queue_declare(unique)
    sender = amqp1.create_sender(f"/queues/{unique}")
    sender.send(Message(body=b"skipped", inferred=True, subject="other"))
    sender.send(Message(body=b"taken", inferred=True, subject="order"))
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=Selector("JMSType = 'order'"))
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert (bytes(got.body), got.subject) == (b"taken", "order")
