"""ActiveMQ's JMS selectors on AMQP 1.0 receivers (``apache.org:selector-filter:string``):
only matching messages reach the receiver, the rest stay queued; an invalid selector refuses
the link with ``amqp:invalid-field``, as ActiveMQ 5.17 does."""

from __future__ import annotations

import pika
import pytest
from proton import Described, Message, symbol
from proton.reactor import Filter, Selector
from proton.utils import LinkDetached

from tests.polling import eventually


def depth(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def answered_filters(receiver):
    """The filter map of the source the broker attached with (None: no filter)."""
    data = receiver.link.remote_source.filter
    data.rewind()
    return data.get_object() if data.next() else None


def test_selector_takes_only_what_matches(amqp1, channel, unique):
    channel.queue_declare(unique)
    for colour in ("blue", "red", "green", "red"):
        channel.basic_publish("", unique, colour.encode(),
                              pika.BasicProperties(headers={"colour": colour}))
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=Selector("colour = 'red'"))
    # the filter applied is echoed in the attach's source (a client may check it)
    assert answered_filters(receiver) == {
        symbol("selector"): Described(symbol("apache.org:selector-filter:string"),
                                      "colour = 'red'")}
    bodies = []
    for _ in range(2):
        got = receiver.receive(timeout=30)
        bodies.append(bytes(got.body))
        receiver.accept()
    assert bodies == [b"red", b"red"]
    receiver.close()
    eventually(lambda: depth(channel, unique) == 2, "blue and green still queued")


def test_selector_on_jms_headers_of_amqp1_messages(amqp1, unique):
    sender = amqp1.create_sender(f"/queue/{unique}")
    sender.send(Message(body=b"low", priority=1, correlation_id="c-1"))
    sender.send(Message(body=b"high", priority=7, correlation_id="c-2"))
    receiver = amqp1.create_receiver(
        f"/queue/{unique}", options=Selector("JMSPriority > 4 AND JMSCorrelationID = 'c-2'"))
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == b"high"


def test_selector_by_its_descriptor_code(amqp1, channel, unique):
    # the filter's descriptor may be its numeric code instead of its symbol
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"no", pika.BasicProperties(headers={"n": 1}))
    channel.basic_publish("", unique, b"yes", pika.BasicProperties(headers={"n": 2}))
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=Filter(
        {symbol("jms-selector"): Described(0x0000468C00000004, "n = 2")}))
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == b"yes"


def test_unknown_filters_are_not_echoed(amqp1, channel, unique):
    channel.queue_declare(unique)
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=Filter(
        {symbol("other"): Described(symbol("example:unknown-filter"), "x")}))
    assert not answered_filters(receiver)


@pytest.mark.parametrize("text", ["colour = ", "colour IN ('a'", "= 3"])
def test_invalid_selector_refuses_the_link(amqp1, channel, unique, text):
    channel.queue_declare(unique)
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_receiver(f"/queues/{unique}", options=Selector(text))
    assert "amqp:invalid-field" in str(caught.value) and text in str(caught.value)


def test_selector_that_is_not_text_refuses_the_link(amqp1, channel, unique):
    channel.queue_declare(unique)
    with pytest.raises(LinkDetached) as caught:
        amqp1.create_receiver(f"/queues/{unique}", options=Filter(
            {symbol("jms-selector"): Described(symbol("apache.org:selector-filter:string"),
                                               5)}))
    assert "amqp:invalid-field" in str(caught.value)


def test_zz_no_traceback(broker):
    assert "Traceback" not in broker.log()
