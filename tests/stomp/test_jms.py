"""ActiveMQ's JMS-style extras: selectors, message groups, scheduled delivery, durable subs,
persistent, expires and priority."""

from __future__ import annotations

import time

import pika
import pytest

from tests.broker_process import BrokerProcess
from tests.stomp.conftest import Client


def test_selector_filters_in_broker(client, unique):
    q = f"/queue/{unique}"
    client.subscribe(q, selector="colour = 'red' AND weight > 5")
    client.send(q, "blue", colour="blue", weight="10")
    client.send(q, "light", colour="red", weight="1")
    client.send(q, "match", colour="red", weight="7")
    assert client.recorder.message().body == "match"
    client.sync()
    assert client.recorder.messages.empty()


def test_non_matching_message_stays_for_others(client_factory, unique):
    q = f"/queue/{unique}"
    picky = client_factory("1.2")
    picky.subscribe(q, selector="kind = 'b'")
    picky.send(q, "for-a", kind="a")
    picky.send(q, "for-b", kind="b")
    assert picky.recorder.message().body == "for-b"
    other = client_factory("1.2")
    other.subscribe(q, selector="kind IN ('a', 'c')")
    assert other.recorder.message().body == "for-a"


def test_selector_on_jms_headers_and_like(client_factory, unique):
    q = f"/queue/{unique}"
    c = client_factory("1.1")
    c.subscribe(q, selector="JMSPriority > 6 OR name LIKE 'x\\_%' ESCAPE '\\'")
    c.send(q, "low", priority="1", name="y_1")
    c.send(q, "named", priority="1", name="x_1")
    c.send(q, "high", priority="9")
    assert c.recorder.message().body == "named"
    assert c.recorder.message().body == "high"


def test_message_groups_stick_to_one_consumer(client_factory, unique):
    q = f"/queue/{unique}"
    a = client_factory("1.2")
    b = client_factory("1.2")
    a.subscribe(q, ack="client-individual")
    b.subscribe(q, ack="client-individual")
    for i in range(6):
        a.send(q, f"g1-{i}", JMSXGroupID="g1")
    a.sync()
    b.sync()
    got_a, got_b = [], []
    total = 0
    while total < 6:
        for c, got in ((a, got_a), (b, got_b)):
            while not c.recorder.messages.empty():
                got.append(c.recorder.message().body)
                total += 1
        if total < 6:
            a.sync()
    assert sorted(got_a + got_b) == [f"g1-{i}" for i in range(6)]
    assert not got_a or not got_b          # one consumer took the whole group
    owner = a if got_a else b
    assert (got_a or got_b) == [f"g1-{i}" for i in range(6)]
    # the owner goes away: the group moves to the other consumer
    owner.conn.disconnect()
    other = b if owner is a else a
    other.send(q, "g1-next", JMSXGroupID="g1")
    bodies = set()
    while "g1-next" not in bodies:
        bodies.add(other.recorder.message().body)


def _collect(clients: list[Client], n: int) -> dict[Client, list[str]]:
    """The bodies each client received, once *n* arrived in all."""
    got: dict[Client, list[str]] = {c: [] for c in clients}
    while sum(map(len, got.values())) < n:
        for c in clients:
            while not c.recorder.messages.empty():
                got[c].append(c.recorder.message().body)
        clients[0].sync()
    return got


def test_closed_group_is_claimed_afresh(client_factory, unique):
    """Two subscriptions without selectors are dispatched the plain way while no group is
    owned; a group's first message claims it, JMSXGroupSeq -1 closes it, and the next group
    is again held by one consumer."""
    q = f"/queue/{unique}"
    a = client_factory("1.2")
    b = client_factory("1.2")
    a.subscribe(q, ack="client-individual")
    b.subscribe(q, ack="client-individual")
    a.send(q, "g2-0", JMSXGroupID="g2")
    a.send(q, "g2-1", JMSXGroupID="g2", JMSXGroupSeq="-1")
    for i in range(4):      # in a row: round robin alone would split them
        a.send(q, f"g3-{i}", JMSXGroupID="g3")
    for i in range(4):
        a.send(q, f"free-{i}")
    got = _collect([a, b], 10)
    assert got[a] and got[b]
    for group, n in (("g2", 2), ("g3", 4)):
        holders = [c for c in got if any(body.startswith(group) for body in got[c])]
        assert len(holders) == 1, got
        assert [body for body in got[holders[0]] if body.startswith(group)] == \
            [f"{group}-{i}" for i in range(n)]


def test_group_claimed_within_one_dispatch_to_many(client_factory, unique):
    """Both subscriptions get room at once (one COMMIT acks both) while a group's messages
    wait: the first claims the group in the middle of that dispatch, and the rest still
    wait for its owner."""
    q = f"/queue/{unique}"
    c = client_factory("1.2")
    for sub_id in ("s1", "s2"):
        c.subscribe(q, sub_id, ack="client-individual", **{"prefetch-count": "1"})
    c.send(q, "free-0")
    c.send(q, "free-1")
    held = [c.recorder.message(), c.recorder.message()]      # one each: both full
    for i in range(4):
        c.send(q, f"g4-{i}", JMSXGroupID="g4")
    c.sync()
    c.conn.begin("t1")
    for frame in held:
        c.ack(frame, transaction="t1")
    c.conn.commit("t1")
    owners = []
    while len(owners) < 4:
        frame = c.recorder.message()
        owners.append(frame.headers["subscription"])
        c.ack(frame)
    assert len(set(owners)) == 1, owners


def test_group_claimed_alone_stays_with_its_owner(client_factory, unique):
    """A subscription alone on its queue is not asked about groups (broker/consumers.py),
    yet the groups it took stay its own once a second subscription joins."""
    q = f"/queue/{unique}"
    owner = client_factory("1.2")
    owner.subscribe(q, ack="client-individual")
    owner.send(q, "g1-0", JMSXGroupID="g1")
    assert owner.recorder.message().body == "g1-0"
    other = client_factory("1.2")
    other.subscribe(q, ack="client-individual")
    for i in range(1, 5):
        owner.send(q, f"g1-{i}", JMSXGroupID="g1")
        owner.send(q, f"free-{i}")
    got = _collect([owner, other], 8)
    assert [b for b in got[owner] if b.startswith("g1")] == [f"g1-{i}" for i in range(1, 5)]
    assert got[other]                         # the others still go round robin
    assert all(b.startswith("free") for b in got[other])


def test_selector_beside_plain_subscription(client_factory, unique):
    """A plain subscription and a selective one on one queue: the selector still filters,
    the plain one takes what it refuses."""
    q = f"/queue/{unique}"
    plain = client_factory("1.2")
    plain.subscribe(q)
    picky = client_factory("1.2")
    picky.subscribe(q, selector="kind = 'b'")
    for i in range(6):
        plain.send(q, f"a-{i}", kind="a")
        plain.send(q, f"b-{i}", kind="b")
    got = _collect([plain, picky], 12)
    assert got[picky] and all(b.startswith("b-") for b in got[picky])
    assert sorted(got[plain] + got[picky]) == sorted(
        [f"a-{i}" for i in range(6)] + [f"b-{i}" for i in range(6)])


def test_scheduled_delay(client_factory, unique):
    q = f"/queue/{unique}"
    c = client_factory("1.2")
    c.subscribe(q)
    start = time.monotonic()
    c.send(q, "later", AMQ_SCHEDULED_DELAY="300")
    c.send(q, "now")
    assert c.recorder.message().body == "now"
    assert c.recorder.message().body == "later"
    assert time.monotonic() - start >= 0.25


def test_scheduled_repeat(client_factory, unique):
    q = f"/queue/{unique}"
    c = client_factory("1.2")
    c.subscribe(q)
    c.send(q, "tick", AMQ_SCHEDULED_DELAY="10", AMQ_SCHEDULED_PERIOD="50",
           AMQ_SCHEDULED_REPEAT="2")
    assert [c.recorder.message().body for _ in range(3)] == ["tick"] * 3


def test_durable_topic_subscription_keeps_messages(client_factory, version, unique):
    name = f"{unique}-durable"
    c = client_factory(version, headers={"client-id": name})
    c.subscribe(f"/topic/{unique}", sub_id="d1", **{"activemq.subscriptionName": name})
    c.conn.disconnect()
    p = client_factory(version)
    p.send(f"/topic/{unique}", "while-away")
    p.sync()
    back = client_factory(version, headers={"client-id": name})
    back.subscribe(f"/topic/{unique}", sub_id="d1", **{"activemq.subscriptionName": name})
    assert back.recorder.message().body == "while-away"


def test_rabbitmq_durable_subscription(client_factory, unique):
    c = client_factory("1.2")
    c.subscribe(f"/topic/{unique}", sub_id=f"{unique}-sub", durable="true",
                **{"auto-delete": "false"})
    c.conn.disconnect()
    p = client_factory("1.2")
    p.send(f"/topic/{unique}", "kept")
    p.sync()
    back = client_factory("1.2")
    back.subscribe(f"/topic/{unique}", sub_id=f"{unique}-sub", durable="true",
                   **{"auto-delete": "false"})
    assert back.recorder.message().body == "kept"
    # unsubscribing with durable:true ends it
    back.conn.unsubscribe(f"{unique}-sub", headers={"durable": "true"})
    back.sync()
    p.send(f"/topic/{unique}", "nobody")
    p.sync()
    again = client_factory("1.2")
    again.subscribe(f"/topic/{unique}", sub_id=f"{unique}-sub", durable="true",
                    **{"auto-delete": "false"})
    again.send(f"/topic/{unique}", "fresh")
    assert again.recorder.message().body == "fresh"


def test_persistent_receipt_and_restart(tmp_path):
    proc = BrokerProcess(tmp_path / "d")
    proc.start()
    try:
        c = Client(proc.stomp_port, "1.2")
        c.conn.send("/queue/durable-q", "survives", headers={"persistent": "true"},
                    receipt="stored")
        assert c.recorder.receipt() == "stored"
        c.conn.send("/queue/durable-q", "later", headers={
            "persistent": "true", "AMQ_SCHEDULED_DELAY": "500"}, receipt="scheduled")
        assert c.recorder.receipt() == "scheduled"
        proc.kill()
        proc.start()
        d = Client(proc.stomp_port, "1.2")
        d.subscribe("/queue/durable-q")
        frame = d.recorder.message()
        assert frame.body == "survives" and frame.headers["persistent"] == "true"
        assert d.recorder.message().body == "later"
        d.close()
    finally:
        proc.stop()


def test_expires_and_priority(client_factory, broker, unique):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_declare(unique, arguments={"x-max-priority": 9})
    c = client_factory("1.2")
    q = f"/amq/queue/{unique}"
    c.send(q, "expired", expires=str(int(time.time() * 1000) - 1000))
    c.send(q, "low", priority="1")
    c.send(q, "high", priority="8")
    c.send(q, "ttl", expiration="60000")
    c.sync()
    c.subscribe(q)
    bodies = [c.recorder.message().body for _ in range(3)]
    assert bodies[0] == "high" and sorted(bodies) == ["high", "low", "ttl"]
    c.sync()
    assert c.recorder.messages.empty()
    method, props, body = None, None, None
    conn.close()
