"""A broker killed (-9) after a journal checkpoint starts from it: the records written after
the checkpoint (acks of messages it holds, new confirmed publishes) are replayed on top, and
nothing confirmed is lost, nothing acked comes back, the order holds. The checkpoint interval
is a few KB here (``--journal-checkpoint-bytes``), so the first part's messages make exactly
one checkpoint and the second part's records stay after it."""

from __future__ import annotations

import re
from typing import Any

import pika

from tests.broker_process import BrokerProcess
from tests.durability.clients import read_queue
from tests.durability.test_saved_index import QUEUE, publish, take


def bodies(start: int, stop: int, size: int = 0) -> list[bytes]:
    return [f"m{i}".encode().ljust(size, b".") for i in range(start, stop)]


def test_a_kill_after_a_checkpoint_starts_from_it_and_replays_what_follows(tmp_path):
    broker = BrokerProcess(tmp_path / "data",
                           extra_args=["--journal-checkpoint-bytes", "5000"]).start()
    try:
        first = bodies(0, 20, size=300)   # about 7 KB of records: one checkpoint
        publish(broker.amqp_url, first)
        assert take(broker.amqp_url, 5) == first[:5]
        broker.wait_for_line("checkpoint at segment 1")
        assert take(broker.amqp_url, 3) == first[5:8]   # acks after it, of messages it holds
        # confirmed after the acks: the journal's sync for it covers them too
        publish(broker.amqp_url, bodies(20, 23))
        broker.kill()
        broker.start()
        line = broker.wait_for_line("from the checkpoint at segment 1")
        assert "recovered 15 messages in 1 queues" in line, line
        replayed = int(re.search(r"and (\d+) records after it", line).group(1))
        assert replayed > 0, line
        got = read_queue(broker.amqp_url, QUEUE)
        assert [body for body, _ in got] == first[8:] + bodies(20, 23)
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()



def hold(url: str, count: int) -> tuple[pika.BlockingConnection, Any, list[Any]]:
    """Get ``count`` messages unacked: the connection and channel holding them, and them."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    got = []
    for _ in range(count):
        method, _props, body = channel.basic_get(QUEUE, auto_ack=False)
        assert method is not None
        got.append((method.delivery_tag, body))
    return conn, channel, got


def drain(url: str) -> list[tuple[bytes, bool, Any]]:
    """Take every message: (body, redelivered, x-delivery-count)."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = conn.channel()
        out = []
        while True:
            method, props, body = channel.basic_get(QUEUE, auto_ack=True)
            if method is None:
                return out
            out.append((body, method.redelivered, (props.headers or {}).get("x-delivery-count")))
    finally:
        conn.close()


def test_a_kill_after_returns_brings_each_message_back_once_in_order_and_redelivered(tmp_path):
    # returns (nack with requeue, a consumer's connection gone) are journal records of ids and
    # counts, before and after a checkpoint; after kill -9 every message is there once, in
    # queue order, the returned ones with their counts, the others as possibly delivered
    # (redelivered, counted once: RabbitMQ 4's classic queues after an unclean stop)
    broker = BrokerProcess(tmp_path / "data",
                           extra_args=["--journal-checkpoint-bytes", "5000"]).start()
    try:
        first = bodies(0, 20, size=300)
        publish(broker.amqp_url, first)
        conn, channel, got = hold(broker.amqp_url, 4)   # m0-m3
        assert [body for _, body in got] == first[:4]
        channel.basic_nack(got[1][0], requeue=True)
        channel.basic_ack(got[2][0])
        channel.basic_nack(got[3][0], requeue=True)
        conn.close()   # m0 back too (its consumer gone): m0, m1, m3 came back once
        broker.wait_for_line("checkpoint at segment 1")
        conn, channel, got = hold(broker.amqp_url, 6)
        assert [body for _, body in got] == [first[i] for i in (0, 1, 3, 4, 5, 6)]
        conn.close()   # after the checkpoint: m0, m1, m3 twice, m4-m6 once
        # confirmed after the returns: the journal's sync for it covers them too
        publish(broker.amqp_url, bodies(20, 22))
        broker.kill()
        broker.start()
        broker.wait_for_line("from the checkpoint at segment 1")
        counts = {0: 2, 1: 2, 3: 2, 4: 1, 5: 1, 6: 1}
        kept = [i for i in range(22) if i != 2]
        assert drain(broker.amqp_url) == [
            (f"m{i}".encode().ljust(300 if i < 20 else 0, b"."), True, counts.get(i, 1))
            for i in kept]
        assert "Traceback" not in broker.log()
    finally:
        broker.kill()
