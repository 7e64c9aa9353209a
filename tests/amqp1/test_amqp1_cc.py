"""Sender-selected distribution from AMQP 1.0, as RabbitMQ 4 does it: the ``x-cc`` message
annotation (a list of strings) adds routing keys to the address's, each queue gets the
message once, and receivers see the keys as RabbitMQ 4 maps them (``x-cc`` over 1.0, the
``CC`` header over 0-9-1, and a 0-9-1 ``CC`` is ``x-cc`` over 1.0) with ``x-routing-key``
the address's key. Any other ``x-cc`` routes nothing more."""

from __future__ import annotations

import pika
from proton import UNDESCRIBED, Array, Data, Message, symbol

from tests.polling import eventually


def got_one(result):
    return result if result[0] is not None else None


def cc_message(body, cc):
    message = Message(body=body, inferred=True)
    message.annotations = {symbol("x-cc"): cc}
    return message


def depth(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def test_x_cc_routes_by_every_key_once_per_queue(amqp1, channel, unique):
    for name, keys in (("k1", ["k1"]), ("k2", ["k2"]), ("both", ["k1", "k3"]),
                       ("none", ["k9"])):
        channel.queue_declare(f"{unique}-{name}")
        for key in keys:
            channel.queue_bind(f"{unique}-{name}", "amq.direct", routing_key=f"{unique}.{key}")
    sender = amqp1.create_sender(f"/exchanges/amq.direct/{unique}.k1")
    sender.send(cc_message(b"copied", [f"{unique}.k2", f"{unique}.k3"]))
    receiver = amqp1.create_receiver(f"/queues/{unique}-k2")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert bytes(got.body) == b"copied"
    assert got.annotations["x-cc"] == [f"{unique}.k2", f"{unique}.k3"]
    assert got.annotations["x-routing-key"] == f"{unique}.k1"
    _method, props, body = eventually(
        lambda: got_one(channel.basic_get(f"{unique}-k1", auto_ack=True)), "a message")
    assert props.headers == {"CC": [f"{unique}.k2", f"{unique}.k3"]}   # as RabbitMQ 4
    assert eventually(lambda: depth(channel, f"{unique}-both") == 1 or None, "one copy")
    assert depth(channel, f"{unique}-none") == 0


def test_a_091_cc_header_reaches_10_as_x_cc(amqp1, channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"cc", pika.BasicProperties(
        headers={"CC": ["a", "b"], "other": "o"}))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    got = receiver.receive(timeout=30)
    receiver.accept()
    assert got.annotations["x-cc"] == ["a", "b"]
    assert got.properties == {"other": "o"}


def test_x_cc_on_the_default_exchange_names_queues(amqp1, channel, unique):
    channel.queue_declare(f"{unique}-a")
    channel.queue_declare(f"{unique}-b")
    amqp1.create_sender(f"/queues/{unique}-a").send(
        cc_message(b"both", [f"{unique}-b", f"{unique}-missing"]))
    for queue in (f"{unique}-a", f"{unique}-b"):
        _method, _props, body = eventually(
            lambda: got_one(channel.basic_get(queue, auto_ack=True)), "a message")
        assert body == b"both"


def test_x_cc_of_another_type_routes_by_the_address_only(broker, amqp1, channel, unique):
    # RabbitMQ 4 reads a list only: an array, a string, a list of no strings route nothing
    # more, and the message is still accepted where its address goes
    channel.queue_declare(f"{unique}-a")
    channel.queue_declare(f"{unique}-b")
    sender = amqp1.create_sender(f"/queues/{unique}-a")
    odd = (Array(UNDESCRIBED, Data.STRING, f"{unique}-b"), f"{unique}-b", [1, 2], [])
    for cc in odd:
        sender.send(cc_message(b"odd", cc))
    assert eventually(lambda: depth(channel, f"{unique}-a") == len(odd) or None, "all")
    assert depth(channel, f"{unique}-b") == 0
    assert "Traceback" not in broker.log()


def test_a_dead_letter_records_the_x_cc_keys(amqp1, channel, unique):
    channel.queue_declare(f"{unique}-dlq")
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq"})
    amqp1.create_sender(f"/queues/{unique}").send(cc_message(b"cc", [f"{unique}-nowhere"]))
    receiver = amqp1.create_receiver(f"/queues/{unique}")
    receiver.receive(timeout=30)
    receiver.reject()
    receiver.close()                    # the disposition is sent by then
    _method, props, _body = eventually(
        lambda: got_one(channel.basic_get(f"{unique}-dlq", auto_ack=True)), "a dead letter")
    assert props.headers["x-death"][0]["routing-keys"] == [unique, f"{unique}-nowhere"]

