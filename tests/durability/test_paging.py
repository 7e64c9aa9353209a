"""Paging (lazy-queue behaviour): past ``--paging-budget`` stored bodies leave memory.

20,000 persistent 1 KiB messages go to a durable queue of a broker with a 1 MiB budget. The
broker's own accounting (``warren_memory_used_bytes`` on /metrics: bodies held plus a fixed
per-message overhead) must stay far below what 20,000 resident bodies cost, while the queue's
logical size (the API's ``message_bytes_ready``) stays the full 20 MB; then every message
comes back intact and in order (bodies are read back from the store on delivery), also after a
restart, and with dead-lettering reading paged bodies too.
"""

from __future__ import annotations

import hashlib
import urllib.request

import pika

from tests.durability.clients import ConfirmedPublisher
from tests.durability.test_kill_cycles import declare
from tests.durability.test_restart import api

COUNT = 20_000
SIZE = 1024
OVERHEAD = 400          # warren.model.message.OVERHEAD: charged per message, never paged
BUDGET = 1024 * 1024
HEAD_KEEP = 256         # warren.broker.paging.HEAD_KEEP


def body(i: int) -> bytes:
    return (f"{i:08d}".encode() + hashlib.sha256(str(i).encode()).digest() * 32)[:SIZE]


def metric(broker, name: str) -> float:
    with urllib.request.urlopen(broker.http_url + "/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def consume_all(url: str, queue: str, count: int) -> list[bytes]:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=500)
    out: list[bytes] = []
    for method, _props, payload in channel.consume(queue, inactivity_timeout=10):
        assert method is not None, f"stalled after {len(out)} messages"
        out.append(payload)
        if len(out) % 250 == 0 or len(out) == count:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if len(out) == count:
            break
    channel.cancel()
    conn.close()
    return out


def test_paged_queue_stays_small_and_delivers_everything_in_order(make_broker):
    broker = make_broker(extra_args=["--paging-budget", str(BUDGET)]).start()
    declare(broker.amqp_url, "lazy")
    publisher = ConfirmedPublisher(broker.amqp_url, "lazy", (body(i) for i in range(COUNT)),
                                   window=1000)
    publisher.run(timeout=60)
    assert len(publisher.acked) == COUNT, publisher.error

    held = metric(broker, "warren_memory_used_bytes")
    all_resident = COUNT * (SIZE + OVERHEAD)
    assert held < COUNT * OVERHEAD + 2 * BUDGET, (held, all_resident)
    status, info = api(broker, "GET", "/api/queues/%2F/lazy")
    assert status == 200 and info["message_bytes_ready"] == COUNT * SIZE

    # half now (bodies read back on delivery), the rest after a restart
    first = consume_all(broker.amqp_url, "lazy", COUNT // 2)
    assert first == [body(i) for i in range(COUNT // 2)]
    broker.restart()
    held = metric(broker, "warren_memory_used_bytes")
    assert held < (COUNT // 2) * OVERHEAD + 2 * BUDGET, held
    rest = consume_all(broker.amqp_url, "lazy", COUNT - COUNT // 2)
    assert rest == [body(i) for i in range(COUNT // 2, COUNT)]


def test_paged_bodies_are_dead_lettered_intact(make_broker):
    broker = make_broker(extra_args=["--paging-budget", str(64 * 1024)]).start()
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    channel = conn.channel()
    channel.queue_declare("dlq", durable=True)
    channel.queue_declare("src", durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"})
    conn.close()
    count = 2000
    publisher = ConfirmedPublisher(broker.amqp_url, "src", (body(i) for i in range(count)),
                                   window=500)
    publisher.run(timeout=60)
    assert len(publisher.acked) == count, publisher.error
    # the queue's head keeps its bodies (they go out next): HEAD_KEEP of them, plus the budget
    held = metric(broker, "warren_memory_used_bytes")
    assert held < count * OVERHEAD + HEAD_KEEP * SIZE + 2 * 64 * 1024, held
    # a policy lowering max-length to 0 drops every ready (mostly paged) entry at once,
    # dead-lettering each: the bodies are read back from the store for the copies
    status, _ = api(broker, "PUT", "/api/policies/%2F/drain",
                    {"pattern": "^src$", "definition": {"max-length": 0},
                     "apply-to": "queues"})
    assert status in (201, 204)
    assert consume_all(broker.amqp_url, "dlq", count) == [body(i) for i in range(count)]
