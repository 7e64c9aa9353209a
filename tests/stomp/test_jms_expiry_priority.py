"""``expires`` as JMSExpiration and ``priority`` as JMSPriority (warren/stomp/jms.py).

ActiveMQ 5.17 with ``prioritizedMessages`` is the reference (tests/compat/stomp_activemq.py):
an already-expired message is never delivered, MESSAGE carries ``expires`` as sent, queues
order by priority 0-9 (default 4), highest first, FIFO within a level. AMQP-declared queues
keep RabbitMQ's rules, and an AMQP consumer sees the equivalent ``expiration``.
"""

from __future__ import annotations

import time

import pika
import pytest

from tests.polling import eventually
from tests.stomp.conftest import TIMEOUT


def _ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def amqp(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    yield conn.channel()
    conn.close()


def test_already_expired_message_is_never_delivered(client_factory, version, unique):
    c = client_factory(version)
    for dest in (f"/queue/{unique}", f"/topic/{unique}"):
        c.subscribe(dest, sub_id=dest)
        for persistent in ("true", "false"):
            c.send(dest, "dead", expires=str(_ms() - 1000), persistent=persistent)
        c.send(dest, "alive", expires=str(_ms() + 60_000))
        frame = c.recorder.message()
        assert frame.body == "alive"
        c.sync()
        assert c.recorder.messages.empty()


def test_message_carries_expires_as_sent_and_amqp_sees_expiration(
        client_factory, version, amqp, unique):
    amqp.queue_declare(unique)
    c = client_factory(version)
    expires = _ms() + 60_000
    c.send(f"/amq/queue/{unique}", "later", expires=str(expires))
    c.sync()
    method, props, body = amqp.basic_get(unique, auto_ack=True)
    assert body == b"later"
    assert 0 < int(props.expiration) <= 60_000          # the ms left when it arrived
    c.send(f"/amq/queue/{unique}", "again", expires=str(expires))
    c.subscribe(f"/amq/queue/{unique}")
    frame = c.recorder.message()
    assert frame.body == "again" and frame.headers["expires"] == str(expires)


def test_expiring_while_queued_is_dead_lettered_where_the_queue_says(
        client_factory, version, amqp, unique):
    amqp.queue_declare(f"{unique}.dlq")
    amqp.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                          "x-dead-letter-routing-key": f"{unique}.dlq"})
    c = client_factory(version)
    c.send(f"/amq/queue/{unique}", "short", expires=str(_ms() + 2000))
    c.send(f"/amq/queue/{unique}", "long", expires=str(_ms() + 600_000))
    c.sync()
    method, props, body = eventually(lambda: _get(amqp, f"{unique}.dlq"),
                                     "the dead-lettered message")
    assert body == b"short" and props.headers["x-death"][0]["reason"] == "expired"
    assert amqp.queue_declare(unique, passive=True).method.message_count == 1


def _get(channel, queue):
    got = channel.basic_get(queue, auto_ack=True)
    return got if got[0] is not None else None


def test_expiring_while_queued_is_dropped_without_dlx(client_factory, version, amqp, unique):
    c = client_factory(version)
    c.send(f"/queue/{unique}", "short", expires=str(_ms() + 2000))
    c.send(f"/queue/{unique}", "long", expires=str(_ms() + 600_000))
    c.sync()
    eventually(lambda: amqp.queue_declare(unique, passive=True).method.message_count == 1,
               "the expired message dropped")
    c.subscribe(f"/queue/{unique}")
    assert c.recorder.message().body == "long"


def test_stomp_queues_order_by_priority(client_factory, version, unique):
    c = client_factory(version)
    q = f"/queue/{unique}"
    c.send(q, "p1", priority="1")
    c.send(q, "none")                       # JMS default: 4
    c.send(q, "p9", priority="9")
    c.send(q, "p4", priority="4")
    c.send(q, "p0", priority="0")
    c.send(q, "p9b", priority="9")
    c.sync()
    c.subscribe(q)
    frames = [c.recorder.message() for _ in range(6)]
    assert [f.body for f in frames] == ["p9", "p9b", "none", "p4", "p1", "p0"]
    assert frames[0].headers["priority"] == "9"


def test_durable_subscription_orders_by_priority(client_factory, version, unique):
    name = f"{unique}-d"
    c = client_factory(version, headers={"client-id": name})
    c.subscribe(f"/topic/{unique}", sub_id="d", **{"activemq.subscriptionName": name})
    c.conn.unsubscribe("d")
    c.sync()
    for p in ("2", "7", "5"):
        c.send(f"/topic/{unique}", f"p{p}", priority=p)
    c.sync()
    c.subscribe(f"/topic/{unique}", sub_id="d", **{"activemq.subscriptionName": name})
    assert [c.recorder.message().body for _ in range(3)] == ["p7", "p5", "p2"]


def test_amqp_declared_queue_keeps_rabbitmq_rules(client_factory, version, amqp, unique):
    amqp.queue_declare(unique)                # no x-max-priority: FIFO whatever the priority
    c = client_factory(version)
    q = f"/queue/{unique}"
    c.send(q, "p1", priority="1")
    c.send(q, "p9", priority="9")
    c.sync()
    c.subscribe(q)
    assert [c.recorder.message().body for _ in range(2)] == ["p1", "p9"]
    # and AMQP can still declare a queue a STOMP client created, with RabbitMQ's arguments
    c.subscribe(f"/queue/{unique}.stomp", sub_id="s2")
    amqp.queue_declare(f"{unique}.stomp", durable=True)


@pytest.mark.parametrize("header, value", [("expires", "soon"), ("expires", "-5"),
                                           ("priority", "high"), ("priority", "1.5"),
                                           ("timestamp", "9" * 16), ("timestamp", "now")])
def test_non_numeric_priority_expires_or_timestamp_is_an_error(client_factory, broker, amqp, version,
                                                      unique, header, value):
    c = client_factory(version)
    c.conn.send(f"/queue/{unique}", "kept", headers={"persistent": "true"}, receipt="r")
    assert c.recorder.receipt() == "r"
    c.send(f"/queue/{unique}", "bad", **{header: value})
    error = c.recorder.error()
    assert error.headers["message"] == f"Invalid {header}"
    assert header in error.body
    assert c.recorder.disconnected.wait(TIMEOUT)
    assert amqp.queue_declare(unique, passive=True, durable=True).method.message_count == 1
    assert "Traceback" not in broker.log()


def test_priority_order_survives_kill_9(tmp_path):
    from tests.broker_process import BrokerProcess
    from tests.stomp.conftest import Client
    proc = BrokerProcess(tmp_path / "d")
    proc.start()
    try:
        c = Client(proc.stomp_port, "1.2")
        for body, headers in (("p1", {"priority": "1"}), ("none", {}),
                              ("p8", {"priority": "8"})):
            c.conn.send("/queue/pq", body, headers=dict(headers, persistent="true"),
                        receipt=body)
            assert c.recorder.receipt() == body
        proc.kill()
        proc.start()
        d = Client(proc.stomp_port, "1.1")
        d.subscribe("/queue/pq")
        assert [d.recorder.message().body for _ in range(3)] == ["p8", "none", "p1"]
        d.close()
    finally:
        proc.stop()


def test_a_stomp_queue_can_opt_out_of_priorities(client_factory, version, unique):
    c = client_factory(version)
    q = f"/queue/{unique}"
    c.subscribe(q, **{"x-prioritized-messages": "false"})   # creates the queue: FIFO
    c.conn.unsubscribe("s1") if version != "1.0" else c.conn.unsubscribe(id="s1")
    c.send(q, "p1", priority="1")
    c.send(q, "p9", priority="9")
    c.sync()
    c.subscribe(q, sub_id="s2")
    assert [c.recorder.message().body for _ in range(2)] == ["p1", "p9"]
