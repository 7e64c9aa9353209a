"""Master/slave on a shared directory (journal store, fcntl lock on DATA_DIR/lock)."""

from __future__ import annotations

import json
import urllib.request

from tests.ha.conftest import (
    FailoverPublisher,
    check_no_loss,
    connect,
    drain,
    kill_master_cycles,
    publish_confirmed,
    refuses_amqp,
)


def overview(b) -> dict:
    with urllib.request.urlopen(b.http_url + "/api/overview", timeout=5) as response:
        return json.load(response)


def test_slave_waits_and_shows_its_role(file_pair):
    a, b = file_pair.brokers
    a.start()
    b.start(wait=False)
    line = b.wait_for_line("waiting for the lock held by")
    assert "warren@a/" in line
    assert refuses_amqp(b)
    status = overview(b)
    assert status["ha_role"] == "slave"
    assert status["ha_lock_holder"].startswith("warren@a/")
    with urllib.request.urlopen(b.http_url + "/metrics", timeout=5) as response:
        assert 'warren_ha_role{role="slave"} 1' in response.read().decode()
    assert file_pair.masters() == [a]


def test_kill_9_of_the_master_slave_takes_over_at_once(file_pair, unique):
    a, b = file_pair.brokers
    a.start()
    b.start(wait=False)
    b.wait_for_line("waiting for the lock held by")
    queue = unique + "q"
    bodies = [f"m{i}".encode() for i in range(200)]
    publish_confirmed(a, queue, bodies)
    # five deliveries left unacked on the master when it dies
    conn = connect(a)
    ch = conn.channel()
    unacked = [ch.basic_get(queue, auto_ack=False)[2] for _ in range(5)]
    # "delivered" marks ride along with the next journal write: make one, confirmed
    publish_confirmed(a, unique + "other", [b"commit"])
    a.kill()
    # how fast is measured, not asserted: ``python -m bench.failover --lockers file``
    b.wait_ready(60)
    assert any("role: slave -> master" in line for line in b.lines)
    got = drain(b, queue)
    assert [body for body, _ in got] == bodies          # all of them, in order
    # the master died: each may have been delivered (``possibly_delivered.py``)
    assert all(redelivered for _, redelivered in got)


def test_graceful_stop_hands_over_at_once(file_pair, unique):
    a, b = file_pair.brokers
    a.start()
    b.start(wait=False)
    b.wait_for_line("waiting for the lock held by")
    publish_confirmed(a, unique + "q", [b"x"])
    a.stop()
    b.wait_ready(10)
    assert [body for body, _ in drain(b, unique + "q")] == [b"x"]


def test_brokers_started_at_the_same_moment_make_one_master(file_pair):
    a, b = file_pair.brokers
    file_pair.start()
    master = file_pair.wait_master()
    slave = b if master is a else a
    slave.wait_for_line("waiting for the lock held by")
    assert file_pair.masters() == [master]
    assert refuses_amqp(slave)


def test_failover_cycles_with_a_confirmed_publisher_lose_nothing(file_pair, unique):
    a, b = file_pair.brokers
    a.start()
    b.start(wait=False)
    b.wait_for_line("waiting for the lock held by")
    queue = unique + "q"
    publisher = FailoverPublisher(file_pair, queue)
    master = kill_master_cycles(file_pair, publisher, 10, 15)
    assert publisher.error is None, publisher.error
    assert publisher.reconnects >= 10
    got = [body for body, _ in drain(master, queue)]
    check_no_loss(publisher, got)


def test_streams_and_their_tracking_survive_a_kill_9_failover(file_pair, unique):
    """A stream lives in the shared data directory: the new master has its messages and the
    Stream protocol's deduplication and stored offsets."""
    import asyncio

    from rstream import Consumer, Producer, RawMessage

    a, b = file_pair.brokers
    a.start()
    b.start(wait=False)
    b.wait_for_line("waiting for the lock held by")
    stream = unique + "s"

    async def write():
        async with Producer("127.0.0.1", port=a.stream_port, username="guest",
                            password="guest") as p:
            await p.create_stream(stream)
            for i in range(1, 11):
                await p.send_wait(stream, RawMessage(b"s%d" % i, publishing_id=i),
                                  publisher_name="w")
        consumer = Consumer("127.0.0.1", port=a.stream_port, username="guest",
                            password="guest")
        await consumer.start()
        await consumer.store_offset(stream, "reader", 4)
        await consumer.query_offset(stream, "reader")   # a round trip: the store is read
        await consumer.close()

    asyncio.run(write())
    publish_confirmed(a, unique + "sync", [b"x"])     # a confirmed publish: synced since
    a.kill()
    b.wait_ready(10)

    async def read():
        async with Producer("127.0.0.1", port=b.stream_port, username="guest",
                            password="guest") as p:
            client = await p.default_client
            last = await client.query_publisher_sequence(stream=stream, reference="w")
        consumer = Consumer("127.0.0.1", port=b.stream_port, username="guest",
                            password="guest")
        await consumer.start()
        offset = await consumer.query_offset(stream, "reader")
        await consumer.close()
        return last, offset

    assert asyncio.run(read()) == (10, 4)
    conn = connect(b)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=20)
    got = []
    for method, props, body in ch.consume(stream, arguments={"x-stream-offset": "first"},
                                          inactivity_timeout=30):
        assert method is not None
        got.append(body)
        if len(got) == 10:
            break
    assert got == [b"s%d" % i for i in range(1, 11)]
    conn.close()
