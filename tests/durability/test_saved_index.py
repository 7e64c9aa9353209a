"""A broker restarted after a clean stop serves from the journal's saved index; one killed
after that restart starts from it again, as the checkpoint it became, replays what followed
and neither loses nor resurrects a message; a damaged
saved index is a warning and a replay, never a traceback. One broker's data dir through all
of it (each start costs seconds)."""

from __future__ import annotations

import pika

from tests.broker_process import BrokerProcess
from tests.durability.clients import PERSISTENT, read_queue
from warren.store.journal import saved_index

QUEUE = "saved.index"


def publish(url: str, bodies: list[bytes]) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        channel.queue_declare(QUEUE, durable=True)
        for body in bodies:
            channel.basic_publish("", QUEUE, body, PERSISTENT)
    finally:
        conn.close()


def take(url: str, count: int) -> list[bytes]:
    """Consume and ack ``count`` messages (acks are confirmed by the closing handshake)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        taken = []
        for _ in range(count):
            method, _props, body = channel.basic_get(QUEUE, auto_ack=False)
            assert method is not None
            channel.basic_ack(method.delivery_tag)
            taken.append(body)
        channel.queue_declare(QUEUE, passive=True)   # a round trip after the acks
        return taken
    finally:
        conn.close()


def bodies(start: int, stop: int) -> list[bytes]:
    return [f"m{i}".encode() for i in range(start, stop)]


def test_clean_restart_serves_from_the_saved_index_and_a_kill_after_it_replays_the_rest(
        tmp_path):
    broker = BrokerProcess(tmp_path / "data").start()
    try:
        publish(broker.amqp_url, bodies(0, 30))
        assert take(broker.amqp_url, 10) == bodies(0, 10)
        broker.stop()
        assert any("saved the index of 20 messages" in line for line in broker.lines), \
            broker.log()
        broker.start()
        broker.wait_for_line("recovered 20 messages in 1 queues")
        assert any("from the saved index" in line for line in broker.lines), broker.log()
        assert read_queue(broker.amqp_url, QUEUE) == [(b, False) for b in bodies(10, 30)]

        assert take(broker.amqp_url, 2) == bodies(10, 12)
        # confirmed after the acks: the journal's sync for this confirm also covers the acks
        # written before it (an ack has no confirm of its own, and one not yet synced may
        # come back after a kill -9, as in RabbitMQ)
        publish(broker.amqp_url, [b"after"])
        broker.kill()
        assert not (tmp_path / "data" / "journal" / saved_index.SAVED_INDEX).exists()
        broker.start()
        line = broker.wait_for_line("recovered 19 messages in 1 queues")
        assert "from the checkpoint at segment 1" in line, line
        got = read_queue(broker.amqp_url, QUEUE)
        assert [body for body, _ in got] == bodies(12, 30) + [b"after"]
        assert "Traceback" not in broker.log()

        broker.stop()   # saves the index again; damaged, it is a warning and a replay
        path = tmp_path / "data" / "journal" / saved_index.SAVED_INDEX
        path.write_bytes(path.read_bytes()[:-3])
        broker.start()
        broker.wait_for_line("saved index not used (truncated")
        broker.wait_for_line("recovered 19 messages in 1 queues")
        got = read_queue(broker.amqp_url, QUEUE)
        assert [body for body, _ in got] == bodies(12, 30) + [b"after"]
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()
