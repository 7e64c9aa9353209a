"""The acknowledged delivery's path through the core: a message delivered the moment it
arrives (in ``Queue.enqueue``), counted unacked, then acked in batches
(``Broker.release_entries``), which frees a message held by one queue in line and leaves
shared and paged-out ones to ``Broker.release``.

What must hold whichever way a message goes: deliveries in publish order, the queue's unacked
counts and bytes while they are out, memory accounting back to where it was once every queue
holding a message has acked it (a message two queues hold stays accounted until the second
acks), and a persistent message acked before a restart not delivered after it, while one
delivered but not acked comes back flagged redelivered.
"""

from __future__ import annotations

import pika
import requests

from tests.broker_process import BrokerProcess
from tests.mqtt.helpers import Client
from tests.polling import eventually


def _memory_used(b) -> int:
    for line in requests.get(f"{b.http_url}/metrics", timeout=30).text.splitlines():
        if line.startswith("warren_memory_used_bytes "):
            return int(float(line.split()[1]))
    raise AssertionError("warren_memory_used_bytes not in /metrics")


def _queue(b, name: str) -> dict:
    r = requests.get(f"{b.http_url}/api/queues/%2F/{name}", auth=("guest", "guest"),
                     timeout=30)
    r.raise_for_status()
    return r.json()


def test_acked_batches_free_memory_only_when_no_queue_holds_the_message(broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    one, both = f"{unique}.one", f"{unique}.both"
    ch.exchange_declare(f"{unique}.fan", "fanout", auto_delete=True)
    for q in (one, both):
        ch.queue_declare(q, exclusive=True)
    ch.queue_bind(both, f"{unique}.fan")
    ch.queue_bind(one, f"{unique}.fan")
    before = _memory_used(broker)
    got: list[tuple[int, bytes]] = []
    ch.basic_qos(prefetch_count=100)
    ch.basic_consume(one, lambda c, m, p, body: got.append((m.delivery_tag, body)))
    sizes = [1 + (i * 37) % 500 for i in range(60)]
    bodies = [b"%03d" % i + b"x" * n for i, n in enumerate(sizes)]
    # the first half reaches both queues (one copy, two holders), the second only `one`
    for body in bodies[:30]:
        ch.basic_publish(f"{unique}.fan", "", body)
    for body in bodies[30:]:
        ch.basic_publish("", one, body)
    eventually(lambda: conn.process_data_events(time_limit=0.05) or len(got) == 60,
               "60 deliveries")
    assert [body for _, body in got] == bodies
    q = eventually(lambda: (lambda d: d if d["messages_unacknowledged"] == 60 else None)(
        _queue(broker, one)), "60 unacked in the stats")
    assert q["message_bytes_unacknowledged"] == sum(len(b) for b in bodies)
    # acked in batches (multiple), as MQTT PUBACKs and AMQP multiple acks arrive
    for tag in (10, 40, 60):
        ch.basic_ack(tag, multiple=True)
    eventually(lambda: _queue(broker, one)["messages_unacknowledged"] == 0, "all acked")
    q = _queue(broker, one)
    assert q["message_bytes_unacknowledged"] == 0 and q["messages"] == 0
    # the fanned-out half is still held by `both`: still accounted
    held = eventually(lambda: (lambda m: m if m > before else None)(_memory_used(broker)),
                      "the copies `both` holds still accounted")
    assert held >= before + sum(len(b) for b in bodies[:30])
    drained = []
    for _ in range(30):
        method, _props, body = ch.basic_get(both)
        drained.append(body)
        ch.basic_ack(method.delivery_tag)
    assert drained == bodies[:30]
    eventually(lambda: _memory_used(broker) == before, "memory back where it was")
    conn.close()


def test_mqtt_qos1_deliveries_in_order_and_freed_once_acked(broker, unique):
    before = _memory_used(broker)
    sub = Client(broker.mqtt_port)
    sub.subscribe(f"{unique}/t", qos=1)
    pub = Client(broker.mqtt_port)
    payloads = [b"m%04d" % i for i in range(200)]
    for p in payloads:
        pub.publish(f"{unique}/t", p, qos=1, wait=False)
    pub.publish(f"{unique}/t", b"end", qos=1)
    got = [m.payload for m in sub.drain_until(b"end")]
    assert got == payloads + [b"end"]
    # paho acks each delivery as it takes it: nothing stays accounted
    eventually(lambda: _memory_used(broker) == before, "memory back where it was")
    sub.disconnect()
    pub.disconnect()


def test_persistent_acked_before_a_restart_stays_acked(tmp_path):
    with BrokerProcess(tmp_path) as b:
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        ch.queue_declare("t.acked", durable=True)
        persistent = pika.BasicProperties(delivery_mode=2)
        for i in range(40):
            ch.basic_publish("", "t.acked", b"p%02d" % i, persistent)   # confirmed each
        got: list[tuple[int, bytes]] = []
        ch.basic_qos(prefetch_count=100)
        ch.basic_consume("t.acked", lambda c, m, p, body: got.append((m.delivery_tag, body)))
        eventually(lambda: conn.process_data_events(time_limit=0.05) or len(got) == 40,
                   "40 deliveries")
        assert [body for _, body in got] == [b"p%02d" % i for i in range(40)]
        ch.basic_ack(got[24][0], multiple=True)      # the first 25 acked, 15 left out
        eventually(lambda: _queue(b, "t.acked")["messages_unacknowledged"] == 15, "25 acked")
        conn.close()
        b.restart()
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        after = []
        while True:
            method, _props, body = ch.basic_get("t.acked", auto_ack=True)
            if method is None:
                break
            after.append((body, method.redelivered))
        assert after == [(b"p%02d" % i, True) for i in range(25, 40)]
        conn.close()
        assert not any("Traceback" in line for line in b.lines)
