"""The no-local filter (``apache.org:no-local-filter:list``, Qpid JMS's topic subscribers
created with ``noLocal``), as ActiveMQ applies it: a receiver gets no message published on its
own connection. From a topic those are dropped (its own queue keeps nothing); from a shared
queue they stay for other consumers. The filter is answered in the attach."""

from __future__ import annotations

from proton import Described, Message, symbol, ulong
from proton.reactor import Filter
from proton.utils import BlockingConnection

from tests.amqp1.test_amqp1_addresses import api, queue_info, receive
from tests.amqp1.test_amqp1_selectors import answered_filters
from tests.polling import eventually

NO_LOCAL = {symbol("no-local"): Described(symbol("apache.org:no-local-filter:list"), [])}


def test_a_topic_receiver_gets_no_message_of_its_own_connection(broker, amqp1, channel,
                                                                unique):
    receiver = amqp1.create_receiver(f"topic://{unique}", options=Filter(NO_LOCAL))
    assert answered_filters(receiver) == NO_LOCAL
    plain = amqp1.create_receiver(f"topic://{unique}", name="plain")   # no filter
    sender = amqp1.create_sender(f"topic://{unique}")
    for round_ in range(2):
        sender.send(Message(body=f"mine-{round_}".encode()))
        channel.basic_publish("amq.topic", unique, f"theirs-{round_}".encode())
        # "mine" was queued first: had it been delivered, it would come first
        assert receive(receiver) == f"theirs-{round_}".encode()
        assert {receive(plain), receive(plain)} == {f"mine-{round_}".encode(),
                                                   f"theirs-{round_}".encode()}
    # nothing was left behind in the receiver's own queue (the topic's binding names it)
    own = {b["destination"] for b in api(broker, "bindings").json()
           if b["source"] == "amq.topic" and b["routing_key"] == unique}
    assert len(own) == 2
    for name in own:
        eventually(lambda name=name: queue_info(broker, name)["messages_ready"] == 0,
                   f"{name} empty")


def test_another_connection_still_gets_them(broker, amqp1, unique):
    other = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                               allowed_mechs="PLAIN", timeout=30)
    try:
        receiver = other.create_receiver(f"topic://{unique}", options=Filter(NO_LOCAL))
        amqp1.create_sender(f"topic://{unique}").send(Message(body=b"from elsewhere"))
        assert receive(receiver) == b"from elsewhere"
    finally:
        other.close()


def test_on_a_shared_queue_they_stay_for_other_consumers(amqp1, channel, unique):
    # the filter by its descriptor code, as some clients send it
    by_code = {symbol("no-local"): Described(ulong(0x0000468C00000003), [])}
    channel.queue_declare(unique)
    receiver = amqp1.create_receiver(f"/queues/{unique}", options=Filter(by_code))
    assert answered_filters(receiver) == by_code
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"mine", inferred=True))
    channel.basic_publish("", unique, b"theirs")
    assert receive(receiver) == b"theirs"
    _method, _props, body = eventually(
        lambda: (got := channel.basic_get(unique, auto_ack=True))[0] is not None and got,
        "mine, left in the queue")
    assert body == b"mine"


def test_a_dead_lettered_copy_is_still_of_its_connection(amqp1, channel, unique):
    # the copy dead-lettering makes is a new message: it still carries its publisher, as
    # ActiveMQ's dead-lettered message keeps its producer's id
    channel.queue_declare(f"{unique}-dlq")
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": f"{unique}-dlq"})
    receiver = amqp1.create_receiver(f"/queues/{unique}-dlq", options=Filter(NO_LOCAL))
    amqp1.create_sender(f"/queues/{unique}").send(Message(body=b"mine", inferred=True))
    method, _props, _body = eventually(
        lambda: (got := channel.basic_get(unique))[0] is not None and got, "mine")
    channel.basic_reject(method.delivery_tag, requeue=False)       # into the dlq
    channel.basic_publish("", f"{unique}-dlq", b"theirs")
    assert receive(receiver) == b"theirs"           # "mine" was dead-lettered first
    _method, _props, body = eventually(
        lambda: (got := channel.basic_get(f"{unique}-dlq", auto_ack=True))[0] is not None
        and got, "mine, left in the dlq")
    assert body == b"mine"


def test_zz_no_traceback(broker):
    assert "Traceback" not in broker.log()
