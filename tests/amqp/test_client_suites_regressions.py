"""Regressions found by running client libraries' own suites (py-amqp, kombu, pika, aio-pika)
against warren; each test drives the behaviour through the client that tripped over it.
"""

from __future__ import annotations

import amqp
import kombu
import pytest


@pytest.fixture
def pyamqp(broker):
    conn = amqp.Connection(host=f"127.0.0.1:{broker.amqp_port}", userid="guest",
                           password="guest", virtual_host="/")
    conn.connect()
    yield conn
    if conn.connected:
        conn.close()


def test_immediate_publish_close_names_basic_publish(pyamqp, unique):
    """py-amqp test_rmq: immediate=true is a 540 connection error whose class/method ids are
    Basic.Publish, even when the previous method on the channel was something else."""
    ch = pyamqp.channel()
    ch.queue_declare(unique, exclusive=True)
    ch.basic_publish(amqp.Message("x"), routing_key=unique, immediate=True)
    with pytest.raises(amqp.exceptions.AMQPNotImplementedError) as e:
        ch.basic_consume(unique, callback=lambda m: None)
    assert e.value.reply_code == 540
    assert e.value.method_name == "Basic.publish"
    assert e.value.reply_text == "NOT_IMPLEMENTED - immediate=true"


def test_queue_delete_ok_comes_before_own_consumers_cancel(broker, unique):
    """kombu test_ack_from_another_thread: deleting a queue the same channel consumes from
    answers delete-ok before basic.cancel (RabbitMQ's channel handles the queue's exit after
    the method), so a client waiting for delete-ok is not handed an unexpected cancel."""
    with kombu.Connection(f"pyamqp://guest:guest@127.0.0.1:{broker.amqp_port}//") as conn:
        queue = kombu.Queue(unique, routing_key=unique)
        with conn.channel() as ch:
            kombu.Producer(ch).publish(b"m", routing_key=unique, declare=[queue])
        got = []
        consumer = kombu.Consumer(conn, [queue], callbacks=[lambda b, m: got.append(m)])
        with consumer:
            conn.drain_events(timeout=5)
            assert got
            # raised amqp.exceptions.ConsumerCancelled while waiting for delete-ok before
            queue(consumer.channel).delete()


def test_pika_consumer_still_told_of_delete_by_own_channel(conn, unique):
    """The deferred basic.cancel still arrives (pika's start_consuming returns on it)."""
    ch = conn.channel()
    ch.queue_declare(unique, exclusive=True)
    tag = ch.basic_consume(unique, lambda *a: None)
    cancelled = []
    ch.add_on_cancel_callback(cancelled.append)
    ch.queue_delete(unique)
    ch.start_consuming()
    assert [f.method.consumer_tag for f in cancelled] == [tag]

