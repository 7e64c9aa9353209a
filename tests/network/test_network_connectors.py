"""ActiveMQ-style network connectors between subprocess brokers, from ``[[network]]`` tables of
a TOML config file (``--config FILE``).

Producers and consumers are real clients (paho, stomp.py, pika). Every wait polls an
observable state with a deadline: a connector ``running`` in ``/api/network-connectors``, a
message received. Absence is proven with ordered markers: a message that would have crossed
travels before a marker on the same path, so once the marker arrived it would have too; for
queues, with a sample of the peer's consumers the connector took after the publish.
"""

from __future__ import annotations

import queue as queue_mod
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pika
import pytest
import stomp

from tests.broker_process import BrokerProcess
from tests.webconsole.conftest import ApiClient

DEADLINE = 30.0
ROOT = Path(__file__).resolve().parents[2]


def eventually(check, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {got!r}")
        time.sleep(0.05)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return str(value)


def write_config(path: Path, connectors: list[dict]) -> Path:
    lines = []
    for connector in connectors:
        lines.append("[[network]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in connector.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def uri_of(proc: BrokerProcess) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proc.amqp_port}"


class Net:
    """Brokers named a, b, c ... with ``[[network]]`` connectors given by the test."""

    def __init__(self, tmp: Path, names: list[str]) -> None:
        self.tmp = tmp
        self.procs = {n: BrokerProcess(tmp / n) for n in names}
        self.apis = {n: ApiClient(p.http_url) for n, p in self.procs.items()}

    def start(self, connectors: dict[str, list[dict]]) -> None:
        for name, proc in self.procs.items():
            cfg = write_config(self.tmp / f"{name}.toml", [
                {**c, "uri": c["uri"] if c["uri"] not in self.procs
                 else uri_of(self.procs[c["uri"]])}
                for c in connectors.get(name, [])])
            proc.extra_args = ["--config", str(cfg), "--node-name", f"warren@{name}"]
            proc.start(wait=False)
        for proc in self.procs.values():
            proc.wait_ready()
        # wait_ready starts a broker again on new ports when one it was given was taken
        self.apis = {n: ApiClient(p.http_url) for n, p in self.procs.items()}
        for name, conns in connectors.items():
            for c in conns:
                eventually(lambda n=name, c=c: self.connector(n, c["name"])["status"]
                           == "running", f"connector {c['name']} on {name} running")

    def connector(self, broker: str, name: str) -> dict:
        rows = self.apis[broker].get("/api/network-connectors").json()
        return next(r for r in rows if r["name"] == name)

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.stop()
            proc.kill()
        for name, proc in self.procs.items():
            bad = [line for line in proc.lines if "Traceback" in line or "Unhandled" in line]
            assert not bad, f"broker {name}:\n" + proc.log()


@pytest.fixture
def net(tmp_path):
    made: list[Net] = []

    def make(*names: str) -> Net:
        n = Net(tmp_path, list(names))
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


class TopicConsumer:
    """A pika consumer of a server-named queue bound to ``amq.topic``, on its own thread."""

    def __init__(self, proc: BrokerProcess, key: str) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        self.ch = self.conn.channel()
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.ch.queue_bind(self.queue, "amq.topic", key)
        self.bodies: list[bytes] = []

    def drain(self) -> list[bytes]:
        while True:
            method, _props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                return self.bodies
            self.bodies.append(body)

    def wait_for(self, body: bytes) -> list[bytes]:
        return eventually(lambda: body in self.drain() and self.bodies, f"{body!r}")

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()


def publish(proc: BrokerProcess, exchange: str, key: str, bodies: list[bytes]) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for body in bodies:
        ch.basic_publish(exchange, key, body, pika.BasicProperties(delivery_mode=2))
    conn.close()


def queue_depth(proc: BrokerProcess, name: str) -> int:
    conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
    try:
        return conn.channel().queue_declare(name, passive=True).method.message_count
    finally:
        conn.close()


# ------------------------------------------------------------------------------ topics
def test_line_of_three_mqtt_on_a_reaches_stomp_on_c_once(net):
    n = net("a", "b", "c")
    n.start({"a": [{"name": "a-to-b", "uri": "b", "include": ["topic://prices.>"],
                    "network_ttl": 2}],
             "b": [{"name": "b-to-c", "uri": "c", "include": ["topic://prices.>"],
                    "network_ttl": 2}]})
    received: queue_mod.Queue = queue_mod.Queue()

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            received.put(frame)

    sub = stomp.Connection12([("127.0.0.1", n.procs["c"].stomp_port)])
    sub.set_listener("", Listener())
    sub.connect("guest", "guest", wait=True)
    sub.subscribe("/topic/prices.eur", id="1", ack="auto", receipt="r1")
    # demand travels back: C's subscription to B, B's onward connector to A
    eventually(lambda: n.connector("b", "b-to-c")["demand"] == ["prices.eur"], "C's demand")
    # exactly C's subscription, two hops away (not B's include pattern)
    eventually(lambda: n.connector("a", "a-to-b")["demand"] == ["prices.eur"], "B's demand")
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="nc-" + uuid.uuid4().hex[:8])
    try:
        pub.connect("127.0.0.1", n.procs["a"].mqtt_port)
        pub.loop_start()
        for i in range(20):
            pub.publish("prices/eur", f"p{i}".encode(), qos=1).wait_for_publish(DEADLINE)
        pub.publish("prices/eur", b"marker", qos=1).wait_for_publish(DEADLINE)
        bodies = []
        deadline = time.monotonic() + DEADLINE
        while "marker" not in bodies:
            frame = received.get(timeout=max(0.1, deadline - time.monotonic()))
            assert frame.headers["destination"] == "/topic/prices.eur"
            bodies.append(frame.body if isinstance(frame.body, str) else frame.body.decode())
        assert bodies == [f"p{i}" for i in range(20)] + ["marker"]   # each once, in order
        # counted on B's confirm, which may follow B's forwarding (B's fsync)
        a_to_b = eventually(lambda: (row := n.connector("a", "a-to-b"))["forwarded_out"] >= 21
                            and row, "A's count of B's confirms")
        assert a_to_b["peer"] == "warren@b"
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.disconnect()


def test_network_ttl_1_stops_after_one_hop(net):
    n = net("a", "b", "c")
    n.start({"a": [{"name": "a-to-b", "uri": "b", "include": ["topic://t.>"]}],
             "b": [{"name": "b-to-c", "uri": "c", "include": ["topic://t.>"]}]})
    on_b, on_c = TopicConsumer(n.procs["b"], "t.#"), TopicConsumer(n.procs["c"], "t.#")
    try:
        eventually(lambda: "t.#" in n.connector("b", "b-to-c")["demand"], "C's demand")
        eventually(lambda: "t.#" in n.connector("a", "a-to-b")["demand"], "B's demand")
        publish(n.procs["a"], "amq.topic", "t.x", [b"from-a"])
        on_b.wait_for(b"from-a")
        publish(n.procs["b"], "amq.topic", "t.x", [b"marker-from-b"])
        assert on_c.wait_for(b"marker-from-b") == [b"marker-from-b"]   # from-a never came
    finally:
        on_b.close()
        on_c.close()


def test_include_and_exclude(net):
    n = net("a", "b")
    n.start({"a": [{"name": "filtered", "uri": "b",
                    "include": ["topic://inc.>", "queue://q.*"],
                    "exclude": ["topic://inc.secret.>", "queue://q.private"]}]})
    on_b = TopicConsumer(n.procs["b"], "#")
    conn = pika.BlockingConnection(pika.URLParameters(n.procs["b"].amqp_url))
    ch = conn.channel()
    try:
        eventually(lambda: n.connector("a", "filtered")["demand"] == ["#"], "B's demand")
        publish(n.procs["a"], "amq.topic", "other.x", [b"other"])
        publish(n.procs["a"], "amq.topic", "inc.secret.x", [b"secret"])
        publish(n.procs["a"], "amq.topic", "inc.public", [b"public"])
        publish(n.procs["a"], "amq.topic", "inc.public.marker", [b"marker"])
        assert on_b.wait_for(b"marker") == [b"public", b"marker"]
        # queues: q.orders is forwarded to B's consumer, q.private and other ones are not
        a = pika.BlockingConnection(pika.URLParameters(n.procs["a"].amqp_url))
        for name in ("q.orders", "q.private", "r.orders"):
            a.channel().queue_declare(name, durable=True)
        a.close()
        eventually(lambda: [q["name"] for q in n.connector("a", "filtered")["queues"]]
                   == ["q.orders"], "only q.orders followed")
        for name in ("q.orders", "q.private", "r.orders"):
            ch.queue_declare(name, durable=True)
        got: list[bytes] = []
        for name in ("q.orders", "q.private", "r.orders"):
            ch.basic_consume(name, lambda _c, m, _p, body: (got.append(body),
                                                             ch.basic_ack(m.delivery_tag)))
        for name in ("q.orders", "q.private", "r.orders"):
            publish(n.procs["a"], "", name, [name.encode()])
        deadline = time.monotonic() + DEADLINE
        while b"q.orders" not in got and time.monotonic() < deadline:
            conn.process_data_events(0.1)
        assert got == [b"q.orders"]
        assert queue_depth(n.procs["a"], "q.private") == 1
        assert queue_depth(n.procs["a"], "r.orders") == 1
    finally:
        on_b.close()
        conn.close()


def test_topics_cross_only_to_a_peer_with_subscriptions(net):
    n = net("a", "b")
    n.start({"a": [{"name": "news", "uri": "b", "include": ["topic://news.>"]}]})
    a, b = n.procs["a"], n.procs["b"]
    assert n.connector("a", "news")["demand"] == []
    publish(a, "amq.topic", "news.early", [b"nobody-on-b"])
    on_b = TopicConsumer(b, "news.sport")
    try:
        eventually(lambda: n.connector("a", "news")["demand"] == ["news.sport"],
                   "B's subscription seen on A")
        publish(a, "amq.topic", "news.weather", [b"not-subscribed"])
        publish(a, "amq.topic", "news.sport", [b"marker"])
        assert on_b.wait_for(b"marker") == [b"marker"]
        assert n.connector("a", "news")["forwarded_out"] == 1   # only the marker crossed
    finally:
        on_b.close()
    eventually(lambda: n.connector("a", "news")["demand"] == [], "the subscription gone")


# ------------------------------------------------------------------------------ queues
def test_queue_forwarded_only_while_the_peer_has_a_consumer(net):
    n = net("a", "b")
    n.start({"a": [{"name": "jobs", "uri": "b", "include": ["queue://jobs.>"],
                    "prefetch": 10}]})
    a, b = n.procs["a"], n.procs["b"]
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    conn.channel().queue_declare("jobs.new", durable=True)
    conn.close()

    def row():
        rows = n.connector("a", "jobs")["queues"]
        return rows[0] if rows else None

    eventually(lambda: row() and row()["samples"] > 0, "a sample of B's jobs.new")
    # while B has no consumer the connector is no consumer of A's queue: exclusive use works
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    excl = conn.channel()
    excl.basic_cancel(excl.basic_consume("jobs.new", lambda *_: None, exclusive=True))
    conn.close()
    publish(a, "", "jobs.new", [f"j{i}".encode() for i in range(10)])
    # a sample taken after the publish: B has no consumer, nothing moved
    seen = row()["samples"]
    eventually(lambda: row()["samples"] > seen + 1, "two more samples")
    assert queue_depth(a, "jobs.new") == 10 and queue_depth(b, "jobs.new") == 0

    got: list[bytes] = []
    bconn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    bch = bconn.channel()
    tag = bch.basic_consume("jobs.new", lambda _c, m, _p, body: (
        got.append(body), bch.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + DEADLINE
    while len(got) < 10 and time.monotonic() < deadline:
        bconn.process_data_events(0.1)
    assert sorted(got) == sorted(f"j{i}".encode() for i in range(10))
    assert queue_depth(a, "jobs.new") == 0
    bch.basic_cancel(tag)
    eventually(lambda: row()["remote_consumers"] == 0 and not row()["forwarding"],
               "the connector saw the consumer go")
    publish(a, "", "jobs.new", [b"stays"])
    seen = row()["samples"]
    eventually(lambda: row()["samples"] > seen + 1, "two more samples")
    assert queue_depth(a, "jobs.new") == 1 and queue_depth(b, "jobs.new") == 0
    bconn.close()


@pytest.mark.parametrize("conduit, shares", [(True, (150, 150)), (False, (200, 100))])
def test_conduit_subscriptions_false_shares_a_queue_by_remote_consumer(net, conduit, shares):
    """A's queue is forwarded to B (two consumers) and C (one): by default each peer is one
    network consumer and gets half; with conduit_subscriptions = false each remote consumer
    is one, as in ActiveMQ, so B gets two thirds."""
    n = net("a", "b", "c")
    n.start({"a": [{"name": f"a-to-{y}", "uri": y, "include": ["queue://work"],
                    "conduit_subscriptions": conduit} for y in ("b", "c")]})
    a = n.procs["a"]
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    conn.channel().queue_declare("work", durable=True)
    conn.close()
    consumers = []
    for y, count in (("b", 2), ("c", 1)):
        c = pika.BlockingConnection(pika.URLParameters(n.procs[y].amqp_url))
        for _ in range(count):
            ch = c.channel()
            ch.queue_declare("work", durable=True)
            ch.basic_consume("work", lambda *_: None, auto_ack=True)
        consumers.append(c)
    try:
        want = {"b": 2 if not conduit else 1, "c": 1}
        for y, subs in want.items():
            eventually(lambda y=y, subs=subs: [
                r for r in n.connector("a", f"a-to-{y}")["queues"]
                if r["name"] == "work" and r["remote_consumers"] == (2 if y == "b" else 1)
                and r["subscriptions"] == subs], f"a-to-{y} with {subs} subscriptions")
        publish(a, "", "work", [f"w{i}".encode() for i in range(300)])
        eventually(lambda: n.connector("a", "a-to-b")["forwarded_out"]
                   + n.connector("a", "a-to-c")["forwarded_out"] == 300, "all forwarded")
        assert (n.connector("a", "a-to-b")["forwarded_out"],
                n.connector("a", "a-to-c")["forwarded_out"]) == shares
    finally:
        for c in consumers:
            c.close()


def test_queue_demand_travels_down_a_line(net):
    n = net("a", "b", "c")
    n.start({"a": [{"name": "a-to-b", "uri": "b", "include": ["queue://line"],
                    "network_ttl": 2}],
             "b": [{"name": "b-to-c", "uri": "c", "include": ["queue://line"],
                    "network_ttl": 2}]})
    a, c = n.procs["a"], n.procs["c"]
    for proc in (a, n.procs["b"], c):
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        conn.channel().queue_declare("line", durable=True)
        conn.close()
    publish(a, "", "line", [f"l{i}".encode() for i in range(20)])
    # C's consumer makes B's connector a consumer of B's queue, which A's connector sees
    cconn = pika.BlockingConnection(pika.URLParameters(c.amqp_url))
    cch = cconn.channel()
    got: list[bytes] = []
    paths: list = []
    cch.basic_consume("line", lambda _c, m, p, body: (got.append(body),
                                                      paths.append(p.headers["x-network-path"]),
                                                      cch.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + DEADLINE
    while len(got) < 20 and time.monotonic() < deadline:
        cconn.process_data_events(0.1)
    cconn.close()
    assert sorted(got) == sorted(f"l{i}".encode() for i in range(20))
    assert all(p == ["warren@a", "warren@b"] for p in paths), paths
    assert queue_depth(a, "line") == 0 and queue_depth(n.procs["b"], "line") == 0


def test_local_consumers_first(net):
    n = net("a", "b")
    n.start({"a": [{"name": "work", "uri": "b", "include": ["queue://work"]}]})
    a, b = n.procs["a"], n.procs["b"]
    aconn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ach = aconn.channel()
    ach.queue_declare("work", durable=True)
    ach.basic_qos(prefetch_count=1000)
    local: list[bytes] = []
    ach.basic_consume("work", lambda _c, m, _p, body: (local.append(body),
                                                       ach.basic_ack(m.delivery_tag)))
    bconn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    bch = bconn.channel()
    bch.queue_declare("work", durable=True)
    remote: list[bytes] = []
    bch.basic_consume("work", lambda _c, m, _p, body: (remote.append(body),
                                                       bch.basic_ack(m.delivery_tag)))
    eventually(lambda: n.connector("a", "work")["queues"][0]["forwarding"],
               "B's consumer seen")
    publish(a, "", "work", [f"w{i}".encode() for i in range(50)])
    deadline = time.monotonic() + DEADLINE
    while len(local) + len(remote) < 50 and time.monotonic() < deadline:
        aconn.process_data_events(0.05)
        bconn.process_data_events(0.05)
    # A's consumer had room for all of them: none had to leave A
    assert sorted(local) == sorted(f"w{i}".encode() for i in range(50)) and remote == []
    aconn.close()
    bconn.close()


# ------------------------------------------------------------------------------ duplex
def test_duplex_one_connection_both_ways(net):
    n = net("a", "b")
    n.start({"a": [{"name": "both", "uri": "b", "duplex": True,
                    "include": ["topic://news.>", "queue://tasks"]}]})
    a, b = n.procs["a"], n.procs["b"]
    on_a, on_b = TopicConsumer(a, "news.#"), TopicConsumer(b, "news.#")
    try:
        eventually(lambda: n.connector("a", "both")["demand"] == ["news.#"], "B's demand")
        eventually(lambda: n.connector("a", "both")["pull_demand"] == ["news.#"],
                   "A's demand bound on B")
        publish(a, "amq.topic", "news.a", [b"from-a"])
        publish(b, "amq.topic", "news.b", [b"from-b"])
        publish(a, "amq.topic", "news.a", [b"marker-a"])
        publish(b, "amq.topic", "news.b", [b"marker-b"])
        on_a.wait_for(b"marker-b")
        on_b.wait_for(b"marker-a")
        on_a.wait_for(b"marker-a")
        on_b.wait_for(b"marker-b")
        # each message once on each side, nothing echoed back
        assert sorted(on_a.drain()) == [b"from-a", b"from-b", b"marker-a", b"marker-b"]
        assert sorted(on_b.drain()) == [b"from-a", b"from-b", b"marker-a", b"marker-b"]
        # both directions over the one connection A's connector opened to B
        links = [c for c in n.apis["b"].get("/api/connections").json()
                 if c.get("client_properties", {}).get("information") == "warren network link"]
        assert len(links) == 1, links
        # queues: B's messages come to A's idle consumer over the same link
        bconn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        bconn.channel().queue_declare("tasks", durable=True)
        bconn.close()
        aconn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
        ach = aconn.channel()
        ach.queue_declare("tasks", durable=True)
        got: list[bytes] = []
        ach.basic_consume("tasks", lambda _c, m, _p, body: (got.append(body),
                                                            ach.basic_ack(m.delivery_tag)))
        eventually(lambda: n.connector("a", "both")["queues"]
                   and n.connector("a", "both")["queues"][0]["pulling"], "A pulls tasks")
        publish(b, "", "tasks", [b"t1", b"t2"])
        deadline = time.monotonic() + DEADLINE
        while len(got) < 2 and time.monotonic() < deadline:
            aconn.process_data_events(0.1)
        assert got == [b"t1", b"t2"]
        assert n.connector("a", "both")["forwarded_in"] >= 4
        aconn.close()
        # A's subscription gone: B's topics no longer come
        on_a.close()
        eventually(lambda: n.connector("a", "both")["pull_demand"] == [], "A's demand gone")
    finally:
        on_a.close()
        on_b.close()

def test_topic_demand_is_exact_along_a_line_of_four(net):
    """A -> B -> C -> D: each connector is bound for exactly the subscriptions behind its
    peer, as far as its network_ttl reaches, and loses them with the subscriptions."""
    n = net("a", "b", "c", "d")
    line = {"a": ("b", 3), "b": ("c", 3), "c": ("d", 3)}
    n.start({x: [{"name": f"{x}-to-{y}", "uri": y, "include": ["topic://k.>"],
                  "network_ttl": ttl, "reconnect_delay": 0.2}] for x, (y, ttl) in line.items()})
    on_c = TopicConsumer(n.procs["c"], "k.c")
    on_d = TopicConsumer(n.procs["d"], "k.d.*")
    try:
        for x, want in (("a", ["k.c", "k.d.*"]), ("b", ["k.c", "k.d.*"]), ("c", ["k.d.*"])):
            eventually(lambda x=x, want=want: n.connector(x, f"{x}-to-{line[x][0]}")["demand"]
                       == want, f"{x}'s demand {want}")
        publish(n.procs["a"], "amq.topic", "k.other", [b"nobody"])
        publish(n.procs["a"], "amq.topic", "k.d.1", [b"to-d"])
        publish(n.procs["a"], "amq.topic", "k.c", [b"to-c"])
        assert on_d.wait_for(b"to-d") == [b"to-d"]
        assert on_c.wait_for(b"to-c") == [b"to-c"]
        # k.other went nowhere: no forwarder was bound for it (A forwarded 2, not 3); A counts
        # a message forwarded once B confirmed it, which may come after C and D delivered it
        eventually(lambda: n.connector("a", "a-to-b")["forwarded_out"] >= 2, "a's count")
        assert n.connector("a", "a-to-b")["forwarded_out"] == 2
        on_d.close()     # the subscription goes: its demand goes, all the way back
        for x, want in (("a", ["k.c"]), ("b", ["k.c"]), ("c", [])):
            eventually(lambda x=x, want=want: n.connector(x, f"{x}-to-{line[x][0]}")["demand"]
                       == want, f"{x}'s demand {want}")
    finally:
        on_c.close()
        on_d.close()


def test_topic_demand_beyond_network_ttl_is_not_asked_for(net):
    n = net("a", "b", "c")
    n.start({"a": [{"name": "a-to-b", "uri": "b", "include": ["topic://k.>"]}],
             "b": [{"name": "b-to-c", "uri": "c", "include": ["topic://k.>"],
                    "network_ttl": 2}]})
    on_b, on_c = TopicConsumer(n.procs["b"], "k.b"), TopicConsumer(n.procs["c"], "k.c")
    try:
        eventually(lambda: n.connector("b", "b-to-c")["demand"] == ["k.c"], "C's demand")
        # A's network_ttl is 1: C is two hops away, so only B's own subscription counts
        eventually(lambda: n.connector("a", "a-to-b")["demand"] == ["k.b"], "B's demand")
    finally:
        on_b.close()
        on_c.close()


# ------------------------------------------------------------------------------ no loops
def test_ring_of_three_delivers_each_message_once_per_consumer(net):
    n = net("a", "b", "c")
    ring = {"a": "b", "b": "c", "c": "a"}
    n.start({x: [{"name": f"{x}-to-{y}", "uri": y, "include": ["topic://ring.>"],
                  "network_ttl": 5}] for x, y in ring.items()})
    consumers = {x: TopicConsumer(n.procs[x], "ring.#") for x in ring}
    try:
        for x in ring:
            eventually(lambda x=x: n.connector(x, f"{x}-to-{ring[x]}")["demand"]
                       == ["ring.#"], f"demand of {ring[x]}")
        sent = []
        for x in ring:
            bodies = [f"{x}-{i}".encode() for i in range(10)]
            publish(n.procs[x], "amq.topic", f"ring.{x}", bodies)
            sent += bodies
        markers = [f"marker-{x}".encode() for x in ring]
        for x in ring:
            publish(n.procs[x], "amq.topic", f"ring.{x}", [f"marker-{x}".encode()])
        for c in consumers.values():
            for m in markers:
                c.wait_for(m)
        # a message looping round the ring would come back to its origin's consumer
        # before the origin's marker, which went the same way after it
        for m in markers:
            publish(n.procs["a"], "amq.topic", "ring.a", [m + b"/again"])
        for c in consumers.values():
            c.wait_for(b"marker-a/again")
        for x, c in consumers.items():
            got = [b for b in c.drain() if not b.endswith(b"/again")]
            assert sorted(got) == sorted(sent + markers), x
        # nothing went round: a-to-b carried A's and C's messages and the A markers, b-to-c
        # A's and B's and the A markers, c-to-a only C's and B's
        expected = {"a": ("a-to-b", 25), "b": ("b-to-c", 25), "c": ("c-to-a", 22)}
        for x, (name, count) in expected.items():
            eventually(lambda x=x, name=name, count=count:
                       n.connector(x, name)["forwarded_out"] == count, f"{name} count")
            assert n.connector(x, name)["forwarded_out"] == count
    finally:
        for c in consumers.values():
            c.close()


def test_full_mesh_of_three_with_ttl_1(net):
    n = net("a", "b", "c")
    names = ["a", "b", "c"]
    n.start({x: [{"name": f"{x}-to-{y}", "uri": y, "include": ["topic://mesh.>"]}
                 for y in names if y != x] for x in names})
    consumers = {x: TopicConsumer(n.procs[x], "mesh.#") for x in names}
    try:
        for x in names:
            for y in names:
                if y != x:
                    eventually(lambda x=x, y=y: "mesh.#" in
                               n.connector(x, f"{x}-to-{y}")["demand"], f"{y}'s demand")
        sent = []
        for x in names:
            bodies = [f"{x}-{i}".encode() for i in range(10)] + [f"marker-{x}".encode()]
            publish(n.procs[x], "amq.topic", f"mesh.{x}", bodies)
            sent += bodies
        for c in consumers.values():
            for x in names:
                c.wait_for(f"marker-{x}".encode())
        for x, c in consumers.items():
            assert sorted(c.drain()) == sorted(sent), x
        for x in names:    # with network_ttl 1 nothing goes a second hop
            for y in names:
                if y != x:
                    assert n.connector(x, f"{x}-to-{y}")["forwarded_out"] == 11
    finally:
        for c in consumers.values():
            c.close()


# ------------------------------------------------------------------------------ faults
def test_peer_killed_and_restarted_loses_no_confirmed_message(net):
    n = net("a", "b")
    n.start({"a": [{"name": "evt", "uri": "b", "include": ["topic://evt.>"],
                    "reconnect_delay": 0.2, "prefetch": 50}]})
    a, b = n.procs["a"], n.procs["b"]
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.queue_declare("evt-store", durable=True)
    ch.queue_bind("evt-store", "amq.topic", "evt.#")
    conn.close()
    eventually(lambda: n.connector("a", "evt")["demand"] == ["evt.#"], "B's demand")
    total = 600
    done = threading.Event()

    def produce():
        publish(a, "amq.topic", "evt.x", [f"e{i}".encode() for i in range(total)])
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    eventually(lambda: n.connector("a", "evt")["forwarded_out"] >= 100, "100 forwarded")
    b.kill()
    b.start()
    eventually(lambda: done.is_set(), "the producer done")
    eventually(lambda: n.connector("a", "evt")["status"] == "running", "reconnected")
    eventually(lambda: queue_depth(b, "evt-store") >= total, f"{total} on B")
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    bodies = []
    while True:
        method, _props, body = ch.basic_get("evt-store", auto_ack=True)
        if method is None:
            break
        bodies.append(body)
    conn.close()
    assert set(bodies) == {f"e{i}".encode() for i in range(total)}   # none lost
    assert len(bodies) - total <= 50                                  # repeats: in flight only


# ------------------------------------------------------------------------------ config
def run_with(tmp_path: Path, text: str) -> subprocess.CompletedProcess:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-m", "warren", "run", "--config", str(cfg),
                           "--data-dir", str(tmp_path / "d")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("body, words", [
    ('uri = "amqp://h:5672"\nnetwork_ttl = 0', "network 'connector-1'.network_ttl"),
    ('uri = "amqp://h:5672"\nbridge = true', "unknown key 'bridge'"),
    ('uri = "amqp://h:5672"\ninclude = ["topic://a.>.b"]', ".include"),
    ('uri = "amqp://h:5672"\ninclude = ["stream://x"]', ".include"),
    ('uri = "static:(amqp://h:5672,htp://x)"', ".uri"),
    ('name = "n"', "network 'n': key 'uri' is missing"),
    ('uri = "amqp://h:5672"\nvhost = 5', "network 'connector-1'.vhost"),
    ('uri = "amqp://h:5672"\nvhost = ""', "network 'connector-1'.vhost"),
    ('uri = "amqp://h:5672"\nconduit_subscriptions = "no"',
     "network 'connector-1'.conduit_subscriptions"),
])
def test_bad_config_refused_in_one_line(tmp_path, body, words):
    result = run_with(tmp_path, "[[network]]\n" + body + "\n")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if " ERROR " in line]
    assert len(errors) == 1, output
    assert "warren cannot start: " in errors[0] and words in errors[0], errors[0]
    assert "Traceback" not in output


def test_a_demand_message_keeps_only_well_formed_items():
    """What a peer sends into the demand queue is data from the network: items that are
    not a key or {"key", "path": [names]} are dropped, never raised on."""
    from warren.network.connector import demand_entries
    items = ["k.a", {"key": "k.b", "path": ["warren@b", "warren@c"]}, 5, None, [],
             {"key": 7, "path": ["x"]}, {"key": "k.c", "path": "warren@b"},
             {"key": "k.d", "path": []}, {"key": "k.e", "path": ["ok", 3]}, {"path": ["x"]}]
    assert demand_entries(items, "warren@b") == {
        "k.a": ["warren@b"], "k.b": ["warren@b", "warren@c"]}


def test_network_tables_beside_a_warren_table_are_read(tmp_path):
    result = run_with(tmp_path, '[warren]\nnode_name = "warren@x"\n\n'
                                '[[network]]\nuri = "amqp://h:5672"\nnetwork_ttl = 0\n')
    assert result.returncode != 0 and "network_ttl" in result.stdout + result.stderr


def test_peer_vhost_from_the_uri(net):
    n = net("a", "b")
    a, b = n.procs["a"], n.procs["b"]
    b.extra_args = ["--node-name", "warren@b"]
    b.start()
    assert n.apis["b"].put("/api/vhosts/other").status_code in (201, 204)
    assert n.apis["b"].put("/api/permissions/other/guest", {
        "configure": ".*", "write": ".*", "read": ".*"}).status_code in (201, 204)
    cfg = write_config(n.tmp / "a.toml", [{
        "name": "to-other", "uri": uri_of(b) + "/other", "include": ["topic://v.>"],
        "reconnect_delay": 0.2}])
    a.extra_args = ["--config", str(cfg), "--node-name", "warren@a"]
    a.start()
    eventually(lambda: n.connector("a", "to-other")["status"] == "running", "running")
    conn = pika.BlockingConnection(pika.URLParameters(
        f"amqp://guest:guest@127.0.0.1:{b.amqp_port}/other"))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", "v.#")
    try:
        eventually(lambda: n.connector("a", "to-other")["demand"] == ["v.#"],
                   "the demand of B's vhost other")
        publish(a, "amq.topic", "v.1", [b"into-other"])
        got = eventually(lambda: ch.basic_get(q, auto_ack=True)[2], "the message on B")
        assert got == b"into-other"
    finally:
        conn.close()


def test_a_connector_serving_another_vhost(net):
    """``vhost = "east"``: A's vhost east (made after A started) is linked to B's east; A's
    vhost / is not."""
    n = net("a", "b")
    a, b = n.procs["a"], n.procs["b"]
    cfg = write_config(n.tmp / "a.toml", [{
        "name": "east", "vhost": "east", "uri": uri_of(b) + "/east",
        "include": ["topic://e.>"], "reconnect_delay": 0.2}])
    a.extra_args = ["--config", str(cfg), "--node-name", "warren@a"]
    b.extra_args = ["--node-name", "warren@b"]
    b.start()
    a.start()
    for api in (n.apis["a"], n.apis["b"]):
        assert api.put("/api/vhosts/east").status_code in (201, 204)
        assert api.put("/api/permissions/east/guest", {
            "configure": ".*", "write": ".*", "read": ".*"}).status_code in (201, 204)
    conn = pika.BlockingConnection(pika.URLParameters(
        f"amqp://guest:guest@127.0.0.1:{b.amqp_port}/east"))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "amq.topic", "e.#")
    try:
        row = eventually(lambda: (r := n.connector("a", "east"))["status"] == "running"
                         and r["demand"] == ["e.#"] and r, "east running, B's demand")
        assert row["vhost"] == "east"
        publish(a, "amq.topic", "e.1", [b"from-slash"])    # vhost /: not linked
        east = pika.BlockingConnection(pika.URLParameters(
            f"amqp://guest:guest@127.0.0.1:{a.amqp_port}/east"))
        east_ch = east.channel()
        east_ch.confirm_delivery()
        east_ch.basic_publish("amq.topic", "e.1", b"from-east")
        east.close()
        got = eventually(lambda: ch.basic_get(q, auto_ack=True)[2], "the message on B")
        assert got == b"from-east"
        assert ch.basic_get(q, auto_ack=True)[0] is None
    finally:
        conn.close()


def test_static_uri_list_and_metrics(net):
    n = net("a", "b")
    b = n.procs["b"]
    a = n.procs["a"]
    cfg = write_config(n.tmp / "a.toml", [{
        "name": "st", "uri": f"static:(amqp://guest:guest@127.0.0.1:1,{uri_of(b)})",
        "reconnect_delay": 0.2, "include": ["topic://s.>"]}])
    a.extra_args = ["--config", str(cfg), "--node-name", "warren@a"]
    b.extra_args = ["--node-name", "warren@b"]
    b.start()
    a.start()
    eventually(lambda: n.connector("a", "st")["status"] == "running", "st running")
    row = n.connector("a", "st")
    assert row["type"] == "connector" and row["peer"] == "warren@b"
    assert str(b.amqp_port) in row["uri"] and "guest:guest" not in row["uri"]
    text = n.apis["a"].get("/metrics").text
    assert 'warren_network_connector_state{name="st",peer="warren@b",state="running"} 1.0' \
        in text

