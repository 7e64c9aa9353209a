"""After ``kill -9`` every recovered message may have been delivered, as RabbitMQ 4's classic
queues report it: AMQP 1.0 first-acquirer false with delivery-count 1, AMQP 0-9-1
redelivered (and, warren's classic queues showing a count once there is one,
``x-delivery-count`` 1). A delivered mark is lazy, so warren cannot tell which of them a
consumer had; the flag stays through clean restarts until the message is gone. A quorum
queue keeps its counts (a guess must not spend a delivery limit) but flags the redelivery.
A message published after the kill is a first delivery, clean restart or not."""

from __future__ import annotations

import pika
import pytest
from proton.utils import BlockingConnection

from tests.broker_process import BrokerProcess
from tests.polling import eventually

PERSISTENT = pika.BasicProperties(delivery_mode=2)


def _amqp1(broker: BrokerProcess) -> BlockingConnection:
    return BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)


def _channel(broker: BrokerProcess):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = conn.channel()
    channel.confirm_delivery()
    return conn, channel


def _headers(broker: BrokerProcess, queue: str, n: int) -> dict[bytes, tuple[bool, int]]:
    """Body -> (first-acquirer, delivery-count) of the next ``n`` messages, accepted."""
    conn = _amqp1(broker)
    receiver = conn.create_receiver(f"/queues/{queue}", credit=0)   # one a receive()
    got = {}
    for _ in range(n):
        message = receiver.receive(timeout=30)
        got[bytes(message.body)] = (message.first_acquirer, message.delivery_count)
        receiver.accept()
    conn.close()
    return got


def _get(channel, queue: str):
    method, props, body = eventually(
        lambda: (lambda got: got if got[0] is not None else None)(channel.basic_get(queue)),
        f"a message on {queue}")
    return method, props, body


@pytest.mark.parametrize("store", ["journal", "sql"])
def test_every_message_recovered_after_a_kill_may_have_been_delivered(tmp_path, store):
    with BrokerProcess(tmp_path, store=store) as broker:
        conn, ch = _channel(broker)
        ch.queue_declare("classic", durable=True)
        ch.queue_declare("quorum", durable=True, arguments={
            "x-queue-type": "quorum", "x-delivery-limit": 0,
            "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
        ch.queue_declare("dlq", durable=True)
        for body in (b"out", b"kept", b"other"):
            ch.basic_publish("", "classic", body, PERSISTENT)
        ch.basic_publish("", "quorum", b"q", PERSISTENT)
        # one is out with an AMQP 1.0 receiver, unsettled, when the broker dies
        amqp1 = _amqp1(broker)
        assert bytes(amqp1.create_receiver("/queues/classic", credit=0)
                     .receive(timeout=30).body) == b"out"
        broker.kill()

        broker.start()
        # over 1.0: all three, the two nobody had as well
        assert _headers(broker, "classic", 2) == {b"out": (False, 1), b"kept": (False, 1)}
        conn, ch = _channel(broker)
        method, props, body = _get(ch, "classic")
        assert body == b"other" and method.redelivered
        assert props.headers == {"x-delivery-count": 1}
        ch.basic_nack(method.delivery_tag, requeue=True)   # a failed delivery: one more
        method, props, body = _get(ch, "quorum")
        assert body == b"q" and method.redelivered
        assert props.headers == {"x-delivery-count": 0}    # not dead-lettered either
        ch.basic_nack(method.delivery_tag, requeue=False)
        ch.basic_publish("", "classic", b"new", PERSISTENT)
        conn.close()

        broker.restart()   # clean: what may have been delivered stays so
        assert _headers(broker, "classic", 2) == {b"other": (False, 2), b"new": (True, 0)}
        conn, ch = _channel(broker)
        assert ch.queue_declare("dlq", passive=True).method.message_count == 1
        conn.close()
        assert "Traceback" not in broker.log()

