"""Priority queues (RabbitMQ priority.html): x-max-priority up to 255."""

from __future__ import annotations

import random

import pika

from .conftest import drain


def _publish(channel, queue, priority, body):
    props = pika.BasicProperties(priority=priority) if priority is not None else None
    channel.basic_publish("", queue, body, props)


def test_higher_priority_first_fifo_within_a_level(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 10})
    sent = []
    rng = random.Random(4)
    for i in range(60):
        prio = rng.choice([None, 0, 1, 5, 10])
        _publish(channel, unique, prio, f"{prio}:{i}".encode())
        sent.append((prio or 0, i))
    got = [b.decode() for _, _, b in drain(channel, unique)]
    expected = [f"{p if p else ('0' if p == 0 else 'None')}:{i}" for p, i in []]
    order = sorted(sent, key=lambda t: (-t[0], t[1]))
    assert [int(s.split(":")[1]) for s in got] == [i for _, i in order]


def test_priority_above_max_counts_as_max(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 3})
    _publish(channel, unique, 3, b"a")
    _publish(channel, unique, 200, b"b")
    _publish(channel, unique, 2, b"c")
    _publish(channel, unique, 9, b"d")
    assert [b for _, _, b in drain(channel, unique)] == [b"a", b"b", b"d", b"c"]


def test_max_priority_255(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 255})
    for p in (0, 255, 128, 254, 1):
        _publish(channel, unique, p, str(p).encode())
    assert [b for _, _, b in drain(channel, unique)] == [b"255", b"254", b"128", b"1", b"0"]


def test_requeued_message_keeps_its_place_in_its_level(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 5})
    for body, p in ((b"h1", 5), (b"h2", 5), (b"l1", 1)):
        _publish(channel, unique, p, body)
    method, _, body = channel.basic_get(unique)
    assert body == b"h1"
    channel.basic_nack(method.delivery_tag, requeue=True)
    assert [b for _, _, b in drain(channel, unique)] == [b"h1", b"h2", b"l1"]


def test_consumer_receives_in_priority_order(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-priority": 9})
    for p in (1, 9, 5):
        _publish(channel, unique, p, str(p).encode())
    got = []
    channel.basic_qos(prefetch_count=1)

    def on_message(ch, method, props, body):
        got.append(body)
        ch.basic_ack(method.delivery_tag)
    channel.basic_consume(unique, on_message)
    from .conftest import wait_until
    wait_until(channel.connection, lambda: len(got) == 3)
    assert got == [b"9", b"5", b"1"]


def test_priority_queue_with_kombu(broker, unique):
    import kombu
    with kombu.Connection(broker.amqp_url) as conn:
        q = kombu.Queue(unique, routing_key=unique, exchange=kombu.Exchange(""),
                        queue_arguments={"x-max-priority": 10})
        with conn.Producer() as producer:
            for p, body in ((1, "low"), (10, "high"), (5, "mid")):
                producer.publish(body, routing_key=unique, priority=p, declare=[q],
                                 serializer="raw")
        simple = conn.SimpleQueue(q)
        got = [simple.get(timeout=5) for _ in range(3)]
        for m in got:
            m.ack()
        assert [m.body for m in got] == ["high", "mid", "low"]
        simple.close()
