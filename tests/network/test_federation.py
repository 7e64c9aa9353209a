"""RabbitMQ federation between subprocess brokers, driven as a RabbitMQ user drives it.

Upstreams are runtime parameters and a policy makes exchanges and queues federated, all
through the HTTP API; producers and consumers are pika (and paho / stomp.py for the
cross-protocol case). Every wait polls for an observable state with a deadline: a link
``running`` in ``/api/federation-links``, an upstream binding listed by the upstream's API, a
message received. Absence is proven with an ordered marker: a message that would have crossed
the link travels before the marker on the same path, so once the marker arrived it would have
too.
"""

from __future__ import annotations

import json
import queue as queue_mod
import socket
import threading
import time
import uuid

import jsonschema
import paho.mqtt.client as mqtt
import pika
import pytest
import requests
import stomp
from proton import Message, symbol
from proton.utils import BlockingConnection

from tests.amqp1.proton_raw import (FOOTER, MESSAGE_ANNOTATIONS, RawMessage, encoded,
                                    receive_raw, section, sections)
from tests.broker_process import BrokerProcess
from tests.polling import eventually
from tests.webconsole.conftest import ApiClient
from tests.webconsole.test_ctl import ctl, rows

DEADLINE = 30.0


@pytest.fixture(scope="module")
def brokers(tmp_path_factory):
    procs = {}
    for name in ("a", "b", "c"):
        procs[name] = BrokerProcess(tmp_path_factory.mktemp(f"fed-{name}"),
                                    extra_args=["--node-name", f"rabbit@{name}"])
    for proc in procs.values():
        proc.start(wait=False)
    for proc in procs.values():
        proc.wait_ready()
    yield procs
    for proc in procs.values():
        proc.stop()
        proc.kill()
    for name, proc in procs.items():   # failures are statuses and log lines, never tracebacks
        bad = [line for line in proc.lines if "Traceback" in line or "Unhandled" in line]
        assert not bad, f"broker {name}:\n" + proc.log()


@pytest.fixture(scope="module")
def apis(brokers):
    return {name: ApiClient(proc.http_url) for name, proc in brokers.items()}


def uri_of(proc: BrokerProcess) -> str:
    return f"amqp://guest:guest@127.0.0.1:{proc.amqp_port}"


def set_upstream(api, name: str, value: dict, vhost: str = "%2F"):
    return api.put(f"/api/parameters/federation-upstream/{vhost}/{name}", {"value": value})


def set_policy(api, name: str, pattern: str, definition: dict, apply_to: str = "all"):
    r = api.put(f"/api/policies/%2F/{name}", {"pattern": pattern, "definition": definition,
                                              "apply-to": apply_to})
    assert r.status_code in (201, 204), r.text
    return r


def links(api, **match) -> list[dict]:
    return [link for link in api.get("/api/federation-links").json()
            if all(link.get(k) == v for k, v in match.items())]


def wait_running(api, **match) -> dict:
    return eventually(lambda: [x for x in links(api, **match) if x["status"] == "running"],
                      f"a running link {match}")[0]


def upstream_bindings(api, exchange: str) -> list[dict]:
    r = api.get(f"/api/exchanges/%2F/{exchange}/bindings/source")
    return r.json() if r.status_code == 200 else []


def upstream_keys(api, exchange: str) -> set[str]:
    return {b["routing_key"] for b in upstream_bindings(api, exchange)
            if b["destination_type"] == "exchange"}


class Consumer:
    """A pika queue on one broker, read with basic_get (no background thread)."""

    def __init__(self, proc: BrokerProcess, exchange: str, keys: list[str],
                 exchange_type: str = "topic") -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        self.ch = self.conn.channel()
        self.ch.exchange_declare(exchange, exchange_type, durable=True)
        self.queue = self.ch.queue_declare("", exclusive=True).method.queue
        self.exchange = exchange
        for key in keys:
            self.ch.queue_bind(self.queue, exchange, key)

    def bind(self, key: str) -> None:
        self.ch.queue_bind(self.queue, self.exchange, key)

    def unbind(self, key: str) -> None:
        self.ch.queue_unbind(self.queue, self.exchange, key)

    def receive_until(self, marker: bytes, timeout: float = DEADLINE) -> list[tuple]:
        """Every message up to and including ``marker``."""
        got: list[tuple] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            method, props, body = self.ch.basic_get(self.queue, auto_ack=True)
            if method is None:
                self.conn.process_data_events(0.05)
                continue
            got.append((method.routing_key, body, props.headers or {}))
            if body == marker:
                return got
        raise AssertionError(f"marker {marker!r} never arrived; got {got!r}")

    def close(self) -> None:
        self.conn.close()


def publish(proc: BrokerProcess, exchange: str, messages: list[tuple[str, bytes]],
            exchange_type: str = "topic") -> None:
    conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, exchange_type, durable=True)
        ch.confirm_delivery()
        for key, body in messages:
            ch.basic_publish(exchange, key, body, pika.BasicProperties(delivery_mode=2))
    finally:
        conn.close()


# ------------------------------------------------------------------------------ exchanges
def test_federated_exchange_follows_bindings(brokers, apis):
    a, b = brokers["a"], brokers["b"]
    publish(b, "fx", [])
    consumer = Consumer(a, "fx", ["k"])
    try:
        assert set_upstream(apis["a"], "up-b", {"uri": uri_of(b), "reconnect-delay": 1}
                            ).status_code in (201, 204)
        set_policy(apis["a"], "fed-fx", "^fx$", {"federation-upstream": "up-b"},
                   "exchanges")
        link = wait_running(apis["a"], exchange="fx")
        assert link["upstream"] == "up-b" and link["type"] == "exchange"
        assert link["upstream_exchange"] == "fx" and link["node"] == "rabbit@a"
        assert link["uri"] == f"amqp://127.0.0.1:{b.amqp_port}/%2F"   # no credentials
        # what the link declared on B, under RabbitMQ's names
        queue_name = "federation: fx -> rabbit@a"
        q = eventually(lambda: apis["b"].get(f"/api/queues/%2F/{requests.utils.quote(queue_name, safe='')}"),
                       "the upstream queue")
        assert q.status_code == 200, q.text
        assert q.json()["durable"] is True
        assert q.json()["arguments"]["x-internal-purpose"] == "federation"
        ix = eventually(lambda: [e for e in apis["b"].get("/api/exchanges/%2F").json()
                                 if e["name"].startswith(queue_name + " ")], "internal x")[0]
        assert ix["name"] == queue_name + " B"
        assert ix["type"] == "x-federation-upstream"
        assert ix["internal"] is True and ix["durable"] is True and ix["auto_delete"] is True
        assert ix["arguments"] == {"x-max-hops": 1, "x-downstream-name": "rabbit@a",
                                   "x-downstream-vhost": "/",
                                   "x-internal-purpose": "federation"}
        eventually(lambda: upstream_keys(apis["b"], "fx") == {"k"}, "binding k upstream")
        bound = next(x for x in upstream_bindings(apis["b"], "fx")
                     if x["destination"] == ix["name"])
        assert bound["arguments"]["x-bound-from"] == [
            {"cluster-name": "rabbit@a", "vhost": "/", "exchange": "/:fx B", "hops": 1}]

        publish(b, "fx", [("k", b"one"), ("other", b"not-for-a"), ("k", b"end-1")])
        got = consumer.receive_until(b"end-1")
        assert [body for _k, body, _h in got] == [b"one", b"end-1"]
        headers = got[0][2]
        assert headers["x-received-from"] == [
            {"uri": f"amqp://127.0.0.1:{b.amqp_port}/%2F", "exchange": "fx",
             "redelivered": False, "cluster-name": "rabbit@b", "vhost": "/"}]

        # a binding added downstream is followed upstream, a removed one too
        consumer.bind("k2")
        eventually(lambda: upstream_keys(apis["b"], "fx") == {"k", "k2"}, "binding k2")
        consumer.unbind("k")
        eventually(lambda: upstream_keys(apis["b"], "fx") == {"k2"}, "binding k gone")
        publish(b, "fx", [("k", b"unbound"), ("k2", b"two"), ("k2", b"end-2")])
        got = consumer.receive_until(b"end-2")
        assert [body for _k, body, _h in got] == [b"two", b"end-2"]

        # the policy cleared: the link stops and deletes what it made upstream
        assert apis["a"].delete("/api/policies/%2F/fed-fx").status_code == 204
        eventually(lambda: not links(apis["a"], exchange="fx"), "link gone")
        eventually(lambda: apis["b"].get(
            f"/api/queues/%2F/{requests.utils.quote(queue_name, safe='')}").status_code == 404,
            "upstream queue deleted")
    finally:
        consumer.close()


def receive_markers(consumer: Consumer, markers: set[bytes],
                    timeout: float = DEADLINE) -> list[tuple]:
    """Every message until each of ``markers`` arrived (messages from several brokers
    interleave, so one marker per path)."""
    got: list[tuple] = []
    left = set(markers)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        method, props, body = consumer.ch.basic_get(consumer.queue, auto_ack=True)
        if method is None:
            consumer.conn.process_data_events(0.05)
            continue
        got.append((method.routing_key, body, props.headers or {}))
        left.discard(body)
    assert not left, f"markers {left!r} never arrived; got {got!r}"
    return got


RING = {"a": "b", "b": "c", "c": "a"}   # each broker federates from the next


def test_ring_of_three_is_loop_free(brokers, apis):
    consumers = {n: Consumer(brokers[n], "ring", ["r"]) for n in RING}
    try:
        for n, up in RING.items():
            r = set_upstream(apis[n], "next", {"uri": uri_of(brokers[up]), "max-hops": 1,
                                               "reconnect-delay": 1})
            assert r.status_code in (201, 204), r.text
            set_policy(apis[n], "fed-ring", "^ring$", {"federation-upstream": "next"},
                       "exchanges")
        for n, up in RING.items():
            wait_running(apis[n], exchange="ring", upstream="next")
            # n's binding reached its upstream
            eventually(lambda up=up: upstream_keys(apis[up], "ring") == {"r"},
                       f"{n}'s binding on {up}")

        # max-hops 1: a consumer gets what is published on its broker and on its upstream
        for n in RING:
            publish(brokers[n], "ring", [("r", f"{n}-1".encode())])
        for n, up in RING.items():
            got = receive_markers(consumers[n], {f"{n}-1".encode(), f"{up}-1".encode()})
            assert sorted(body for _k, body, _h in got) == sorted(
                [f"{n}-1".encode(), f"{up}-1".encode()])
        # ... and nothing from two hops away: it would have crossed before these markers
        for n in RING:
            publish(brokers[n], "ring", [("r", f"{n}-m".encode())])
        for n, up in RING.items():
            got = receive_markers(consumers[n], {f"{n}-m".encode(), f"{up}-m".encode()})
            assert sorted(body for _k, body, _h in got) == sorted(
                [f"{n}-m".encode(), f"{up}-m".encode()])

        # max-hops 3 (links restart): every consumer gets every message exactly once, and
        # the message that went round comes back to no one
        for n, up in RING.items():
            set_upstream(apis[n], "next", {"uri": uri_of(brokers[up]), "max-hops": 3,
                                           "reconnect-delay": 1})
        for n, up in RING.items():
            eventually(lambda n=n: [x for x in links(apis[n], exchange="ring")
                                if x["status"] == "running"], f"{n} relinked")
            # two bindings upstream now: the downstream's own and the one passed on
            eventually(lambda up=up: len([b for b in upstream_bindings(apis[up], "ring")
                                    if b["destination_type"] == "exchange"]) == 2,
                       f"bindings passed on to {up}")
        for n in RING:
            publish(brokers[n], "ring", [("r", f"{n}-2".encode())])
        everything = {f"{n}-2".encode() for n in RING}
        for n in RING:
            got = receive_markers(consumers[n], everything)
            assert sorted(body for _k, body, _h in got) == sorted(everything), n
        for n in RING:
            publish(brokers[n], "ring", [("r", f"{n}-m2".encode())])
        markers = {f"{n}-m2".encode() for n in RING}
        for n, up in RING.items():
            got = receive_markers(consumers[n], markers)
            assert sorted(body for _k, body, _h in got) == sorted(markers), n
            two_hops = next(h for _k, body, h in got if body == f"{RING[up]}-m2".encode())
            trail = two_hops["x-received-from"]
            assert [e["cluster-name"] for e in trail] == [f"rabbit@{up}", f"rabbit@{RING[up]}"]
    finally:
        for c in consumers.values():
            c.close()
        for n in RING:
            apis[n].delete("/api/policies/%2F/fed-ring")


def test_another_brokers_federation_objects_are_not_federated(brokers, apis):
    """A policy on B that also matches what A's link made on B federates only B's own X."""
    a, b, c = brokers["a"], brokers["b"], brokers["c"]
    for proc in (b, c):
        publish(proc, "wx", [])
    consumer = Consumer(a, "wx", ["k"])
    try:
        set_upstream(apis["a"], "up-b-wx", {"uri": uri_of(b), "reconnect-delay": 1})
        set_policy(apis["a"], "fed-wx", "^wx$", {"federation-upstream": "up-b-wx"})
        set_upstream(apis["b"], "up-c-wx", {"uri": uri_of(c), "reconnect-delay": 1})
        set_policy(apis["b"], "fed-wx-wide", "^(wx$|federation: wx)",
                   {"federation-upstream": "up-c-wx"})
        wait_running(apis["a"], exchange="wx")
        wait_running(apis["b"], exchange="wx")
        eventually(lambda: upstream_keys(apis["b"], "wx") == {"k"}, "A's binding on B")
        assert [(x["type"], x.get("exchange", x.get("queue"))) for x in links(apis["b"])
                if x["upstream"] == "up-c-wx"] == [("exchange", "wx")]
    finally:
        consumer.close()
        apis["a"].delete("/api/policies/%2F/fed-wx")
        apis["b"].delete("/api/policies/%2F/fed-wx-wide")


def test_full_mesh_of_three_delivers_exactly_once(brokers, apis):
    """Each broker federates from both others through a named upstream set (max-hops 1, as
    a mesh needs): every consumer gets every message once."""
    names = list(RING)
    consumers = {n: Consumer(brokers[n], "mesh", ["m"]) for n in names}
    try:
        for n in names:
            others = [o for o in names if o != n]
            for o in others:
                r = set_upstream(apis[n], f"mesh-{o}", {"uri": uri_of(brokers[o]),
                                                        "reconnect-delay": 1})
                assert r.status_code in (201, 204), r.text
            r = apis[n].put("/api/parameters/federation-upstream-set/%2F/mesh-set",
                            {"value": [{"upstream": f"mesh-{o}"} for o in others]})
            assert r.status_code in (201, 204), r.text
            set_policy(apis[n], "fed-mesh", "^mesh$", {"federation-upstream-set": "mesh-set"},
                       "exchanges")
        for n in names:
            for o in names:
                if o != n:
                    wait_running(apis[n], exchange="mesh", upstream=f"mesh-{o}")
        for n in names:   # each broker's X has one binding per downstream
            eventually(lambda n=n: len([b for b in upstream_bindings(apis[n], "mesh")
                                    if b["destination_type"] == "exchange"]) == 2,
                       f"both downstreams bound on {n}")
        for n in names:
            publish(brokers[n], "mesh", [("m", f"{n}-x".encode())])
        everything = {f"{n}-x".encode() for n in names}
        for n in names:
            got = receive_markers(consumers[n], everything)
            assert sorted(body for _k, body, _h in got) == sorted(everything), n
        for n in names:
            publish(brokers[n], "mesh", [("m", f"{n}-end".encode())])
        markers = {f"{n}-end".encode() for n in names}
        for n in names:
            got = receive_markers(consumers[n], markers)
            assert sorted(body for _k, body, _h in got) == sorted(markers), n
    finally:
        for c in consumers.values():
            c.close()
        for n in names:
            apis[n].delete("/api/policies/%2F/fed-mesh")


def test_upstream_exchange_of_another_type_is_used_as_it_is(brokers, apis):
    """As RabbitMQ's link, ours looks the upstream X up with a passive declare on a spare
    channel and declares it only when missing: an X of another type there is used as it is,
    on the first connection (reconnect-delay 60 s: a link that needed a second one would
    not be running within the wait), without a PRECONDITION_FAILED."""
    a, b = brokers["a"], brokers["b"]
    publish(b, "tx", [], exchange_type="fanout")
    consumer = Consumer(a, "tx", ["k"])          # a topic exchange here
    seen = len(a.lines)
    try:
        set_upstream(apis["a"], "up-b-tx", {"uri": uri_of(b), "reconnect-delay": 60})
        set_policy(apis["a"], "fed-tx", "^tx$", {"federation-upstream": "up-b-tx"},
                   "exchanges")
        wait_running(apis["a"], exchange="tx")
        assert apis["b"].get("/api/exchanges/%2F/tx").json()["type"] == "fanout"
        eventually(lambda: upstream_keys(apis["b"], "tx") == {"k"}, "binding on B")
        publish(b, "tx", [("k", b"one"), ("other", b"not-bound-here"), ("k", b"end")],
                exchange_type="fanout")
        got = consumer.receive_until(b"end")
        assert [body for _k, body, _h in got] == [b"one", b"end"]
        assert not any("PRECONDITION_FAILED" in line for line in a.lines[seen:])
    finally:
        consumer.close()
        apis["a"].delete("/api/policies/%2F/fed-tx")


def exchange_info(api, name: str):
    return api.get("/api/exchanges/%2F/" + requests.utils.quote(name, safe=""))


def test_a_stale_internal_exchange_upstream_is_replaced_on_the_first_connection(brokers, apis):
    """An earlier run left the internal exchange "A" upstream as a fanout (its upstream
    lacked the x-federation-upstream type then): our declare of "A" goes on a spare channel,
    so its PRECONDITION_FAILED does not take the link down; the link swaps to a fresh "B" on
    the same connection (reconnect-delay 60 s: waiting for a second connection would fail
    the wait)."""
    a, b = brokers["a"], brokers["b"]
    stale = "federation: sx -> rabbit@a A"
    publish(b, "sx", [], exchange_type="topic")
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    conn.channel().exchange_declare(stale, "fanout", durable=True, internal=True,
                                    auto_delete=True,
                                    arguments={"x-internal-purpose": "federation"})
    conn.close()
    consumer = Consumer(a, "sx", ["k"])
    try:
        set_upstream(apis["a"], "up-b-sx", {"uri": uri_of(b), "reconnect-delay": 60})
        set_policy(apis["a"], "fed-sx", "^sx$", {"federation-upstream": "up-b-sx"},
                   "exchanges")
        wait_running(apis["a"], exchange="sx")
        eventually(lambda: upstream_keys(apis["b"], "sx") == {"k"}, "binding on B")
        assert exchange_info(apis["b"], stale).status_code == 404
        fresh = exchange_info(apis["b"], stale[:-1] + "B").json()
        assert fresh["type"] == "x-federation-upstream" and fresh["arguments"]["x-max-hops"] == 1
        publish(b, "sx", [("k", b"one"), ("k", b"end")], exchange_type="topic")
        got = consumer.receive_until(b"end")
        assert [body for _k, body, _h in got] == [b"one", b"end"]
    finally:
        consumer.close()
        apis["a"].delete("/api/policies/%2F/fed-sx")


# ------------------------------------------------------------------------------ queues
def queue_info(api, name: str) -> dict:
    r = api.get(f"/api/queues/%2F/{name}")
    return r.json() if r.status_code == 200 else {}


def test_federated_queue_moves_messages_only_to_consumers(brokers, apis):
    a, b = brokers["a"], brokers["b"]
    for proc in (a, b):
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        conn.channel().queue_declare("fq", durable=True)
        conn.close()
    r = set_upstream(apis["a"], "up-b-q", {"uri": uri_of(b), "reconnect-delay": 1})
    assert r.status_code in (201, 204), r.text
    set_policy(apis["a"], "fed-fq", "^fq$", {"federation-upstream": "up-b-q"}, "queues")
    link = wait_running(apis["a"], queue="fq")
    assert link["type"] == "queue" and link["upstream_queue"] == "fq"
    assert link["consumer_tag"] == "federation-link-up-b-q"

    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(5):
        ch.basic_publish("", "fq", f"q{i}".encode(), pika.BasicProperties(delivery_mode=2))
    conn.close()
    # no consumer on A: the link does not consume upstream, the messages stay on B
    eventually(lambda: queue_info(apis["b"], "fq").get("messages") == 5, "5 on B")
    assert queue_info(apis["b"], "fq")["consumers"] == 0
    assert queue_info(apis["a"], "fq").get("messages") == 0

    # a consumer on A: demand, the link consumes and the messages move to it
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    got: list[tuple] = []
    tag = ch.basic_consume("fq", lambda c, m, p, body: (got.append((body, p.headers)),
                                                          c.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + DEADLINE
    while len(got) < 5 and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    assert sorted(body for body, _h in got) == [f"q{i}".encode() for i in range(5)]
    headers = got[0][1]
    assert headers["x-received-from"] == [
        {"uri": f"amqp://127.0.0.1:{b.amqp_port}/%2F", "queue": "fq", "redelivered": False,
         "visit-count": 1}]
    assert headers["x-original-exchange"] == "" and headers["x-original-routing-key"] == "fq"
    eventually(lambda: queue_info(apis["b"], "fq").get("messages") == 0, "B's fq drained")
    eventually(lambda: queue_info(apis["b"], "fq").get("consumers") == 1, "link consuming")
    # the consumer gone: no demand, the link cancels upstream
    ch.basic_cancel(tag)
    conn.close()
    eventually(lambda: queue_info(apis["b"], "fq").get("consumers") == 0, "link cancelled")

    # local consumers first: what A's queue holds goes out before anything is pulled from B
    for proc, prefix in ((a, "local"), (b, "remote")):
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        ch = conn.channel()
        ch.confirm_delivery()
        for i in range(3):
            ch.basic_publish("", "fq", f"{prefix}{i}".encode(),
                             pika.BasicProperties(delivery_mode=2))
        conn.close()
    eventually(lambda: queue_info(apis["b"], "fq").get("messages") == 3, "3 on B")
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=10)
    order: list[bytes] = []
    ch.basic_consume("fq", lambda c, m, p, body: (order.append(body),
                                                  c.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + DEADLINE
    while len(order) < 6 and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.close()
    assert order == [b"local0", b"local1", b"local2", b"remote0", b"remote1", b"remote2"]
    apis["a"].delete("/api/policies/%2F/fed-fq")


def test_federated_queue_follows_a_busy_consumer_getting_credit_back(brokers, apis):
    """A consumer on A with prefetch 1 that holds its message has no credit: the link stops
    consuming on B (prefetch-count 1, so at most one more crossed); each ack gives credit
    back and the core tells the link at once, which pulls the next one."""
    a, b = brokers["a"], brokers["b"]
    for proc in (a, b):
        conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
        conn.channel().queue_declare("fq2", durable=True)
        conn.close()
    set_upstream(apis["a"], "up-b-q2", {"uri": uri_of(b), "reconnect-delay": 1,
                                        "prefetch-count": 1})
    set_policy(apis["a"], "fed-fq2", "^fq2$", {"federation-upstream": "up-b-q2"}, "queues")
    wait_running(apis["a"], queue="fq2")
    conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(6):
        ch.basic_publish("", "fq2", f"c{i}".encode(), pika.BasicProperties(delivery_mode=2))
    conn.close()
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.basic_qos(prefetch_count=1)
    held: list = []
    ch.basic_consume("fq2", lambda c, m, p, body: held.append((m.delivery_tag, body)))
    try:
        eventually(lambda: conn.process_data_events(0.05) or held, "a first message")
        # busy: the link cancelled on B, most messages are still there
        eventually(lambda: conn.process_data_events(0.05) or
                   queue_info(apis["b"], "fq2").get("consumers") == 0, "link cancelled")
        assert queue_info(apis["b"], "fq2")["messages"] >= 6 - 3
        got = []
        while len(got) < 6:
            tag, body = eventually(lambda: conn.process_data_events(0.05) or
                                   (held.pop(0) if held else None), f"message {len(got)}")
            got.append(body)
            ch.basic_ack(tag)      # credit back: the next one is pulled from B
        assert sorted(got) == [f"c{i}".encode() for i in range(6)]
    finally:
        conn.close()
        apis["a"].delete("/api/policies/%2F/fed-fq2")


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("value, words", [
    ({"uri": "amqp://h", "colour": "red"}, 'Unrecognised terms [{<<"colour">>,<<"red">>}] in bad'),
    ({"uri": "http://h"}, '"http://h" not a valid URI: unexpected_uri_scheme: http'),
    ({"exchange": "x"}, 'Key "uri" not found in bad'),
    ({"uri": "amqp://h", "max-hops": 0}, "max-hops should be at least 1, actually was 0"),
    ({"uri": "amqp://h", "prefetch-count": "ten"},
     'prefetch-count should be a number, actually was <<"ten">>'),
    ({"uri": "amqp://h", "ack-mode": "later"},
     ('ack-mode should be one of [<<"no-ack">>,<<"on-publish">>,<<"on-confirm">>], '
      'actually was <<"later">>')),
    ({"uri": "amqp://"}, '"amqp://" points at this broker itself'),
])
def test_bad_upstreams_are_refused_with_rabbitmq_words(apis, value, words):
    r = set_upstream(apis["c"], "bad", value)
    assert r.status_code == 400, r.text
    assert r.json()["reason"].startswith("Validation failed\n\n")
    # the management API escapes HTML in reasons, as RabbitMQ's does
    assert words.replace("<", "&lt;").replace(">", "&gt;") in r.json()["reason"]
    assert apis["c"].get("/api/parameters/federation-upstream/%2F/bad").status_code == 404


def test_self_upstream_set_of_unknown_and_bad_policy_are_refused(brokers, apis):
    c = brokers["c"]
    r = set_upstream(apis["c"], "me", {"uri": f"amqp://127.0.0.1:{c.amqp_port}/%2F"})
    assert r.status_code == 400 and "points at this broker itself" in r.json()["reason"]
    out = ctl(c, "set_parameter", "federation-upstream", "zero",
              json.dumps({"uri": "amqp://elsewhere", "max-hops": 0}), check=False)
    assert out.returncode != 0
    assert "max-hops should be at least 1, actually was 0" in out.stdout + out.stderr
    r = apis["c"].put("/api/parameters/federation-upstream-set/%2F/s",
                      {"value": [{"upstream": "nobody"}]})
    assert r.status_code == 400
    assert 'upstream "nobody" not found in vhost "/"' in r.json()["reason"]
    r = apis["c"].put("/api/parameters/federation-upstream-set/%2F/s",
                      {"value": [{"upstream": "next", "max-hops": "two"}]})
    assert r.status_code == 400
    assert 'max-hops should be a number, actually was &lt;&lt;"two"&gt;&gt;' \
        in r.json()["reason"]
    r = apis["c"].put("/api/policies/%2F/p", {"pattern": ".", "definition": {
        "federation-upstream-set": 3}})
    assert r.status_code == 400
    assert "3 is not a valid federation upstream set name" in r.json()["reason"]
    r = apis["c"].put("/api/policies/%2F/p", {"pattern": ".", "definition": {
        "federation-upstream-set": "all", "federation-upstream": "next"}})
    assert r.status_code == 400
    assert "cannot specify federation-upstream, federation-upstream-set or " \
           "federation-upstream-pattern together" in r.json()["reason"]


# ------------------------------------------------------------------------------ protocols
def test_mqtt_publish_on_b_reaches_stomp_subscriber_on_a(brokers, apis):
    a, b = brokers["a"], brokers["b"]
    set_upstream(apis["a"], "up-b-topic", {"uri": uri_of(b), "reconnect-delay": 1})
    set_policy(apis["a"], "fed-topic", r"^amq\.topic$",
               {"federation-upstream": "up-b-topic"}, "exchanges")
    received: queue_mod.Queue = queue_mod.Queue()

    class Listener(stomp.ConnectionListener):
        def on_message(self, frame):
            received.put(frame)

    sub = stomp.Connection12([("127.0.0.1", a.stomp_port)])
    sub.set_listener("", Listener())
    sub.connect("guest", "guest", wait=True)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fed-" + uuid.uuid4().hex[:8])
    try:
        sub.subscribe("/topic/sensors.t1", id="1", ack="auto")
        wait_running(apis["a"], exchange="amq.topic")
        eventually(lambda: "sensors.t1" in upstream_keys(apis["b"], "amq.topic"),
                   "the STOMP subscription's binding on B")
        pub.connect("127.0.0.1", b.mqtt_port)
        pub.loop_start()
        info = pub.publish("sensors/t1", b"21.5", qos=1)
        info.wait_for_publish(DEADLINE)
        frame = received.get(timeout=DEADLINE)
        assert frame.body in ("21.5", b"21.5")
        assert frame.headers["destination"] == "/topic/sensors.t1"
    finally:
        pub.loop_stop()
        pub.disconnect()
        sub.disconnect()
        apis["a"].delete("/api/policies/%2F/fed-topic")


def test_an_amqp1_message_crosses_a_federated_exchange_in_its_091_form(brokers, apis):
    """What crosses a federation link is the 0-9-1 form, as with RabbitMQ 4: an AMQP 1.0
    sender's amqp-value body and footer (typed amqp-1.0), application properties and x-
    annotations reach a 1.0 receiver downstream; a 0-9-1 consumer downstream sees what one
    upstream sees, with x-received-from."""
    a, b = brokers["a"], brokers["b"]
    publish(b, "fx1", [], exchange_type="direct")
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.exchange_declare("fx1", "direct", durable=True)
    ch.queue_declare("fx1-at-a")
    ch.queue_bind("fx1-at-a", "fx1", "k")
    conn.close()
    set_upstream(apis["a"], "up-b-fx1", {"uri": uri_of(b), "reconnect-delay": 1})
    set_policy(apis["a"], "fed-fx1", "^fx1$", {"federation-upstream": "up-b-fx1"},
               "exchanges")
    try:
        wait_running(apis["a"], exchange="fx1")
        eventually(lambda: upstream_keys(apis["b"], "fx1") == {"k"}, "binding k upstream")
        conn = pika.BlockingConnection(pika.URLParameters(b.amqp_url))
        ch = conn.channel()
        ch.queue_declare("fx1-at-b")
        ch.queue_bind("fx1-at-b", "fx1", "k")
        conn.close()
        message = Message(body={"k": "v"}, subject="s", properties={"colour": "red"})
        message.annotations = {symbol("x-opt-tag"): "t"}
        footer = section(FOOTER, {symbol("sig"): b"s"})
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{b.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=DEADLINE)
        sender = amqp1.create_sender("/exchanges/fx1/k")
        for _ in range(2):
            sender.send(RawMessage(encoded(message, after=footer)))
        amqp1.close()
        amqp1 = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{a.amqp_port}",
                                   allowed_mechs="PLAIN", timeout=DEADLINE)
        got = sections(receive_raw(amqp1, "/queues/fx1-at-a"))
        amqp1.close()
        assert (got[0x77], got[FOOTER], got[0x74]) == ({"k": "v"}, {"sig": b"s"},
                                                       {"colour": "red"})
        assert got[MESSAGE_ANNOTATIONS]["x-opt-tag"] == "t"

        def view(proc, queue):
            conn = pika.BlockingConnection(pika.URLParameters(proc.amqp_url))
            _m, props, body = eventually(
                lambda: (got := conn.channel().basic_get(queue, auto_ack=True))[0]
                is not None and got, f"a message in {queue}")
            conn.close()
            return body, props.type, props.headers
        body, kind, headers = view(a, "fx1-at-a")
        assert headers.pop("x-received-from")[0]["exchange"] == "fx1"
        assert (body, kind, headers) == view(b, "fx1-at-b")
        assert (body, kind) == (section(0x77, {"k": "v"}) + footer, "amqp-1.0")
    finally:
        apis["a"].delete("/api/policies/%2F/fed-fx1")


# ------------------------------------------------------------------------------ status
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]   # nothing listens once the socket is closed


def test_link_status_error_schema_metrics_and_removal(brokers, apis):
    api = apis["c"]
    port = closed_port()
    r = set_upstream(api, "nowhere", {"uri": f"amqp://u:secret@127.0.0.1:{port}",
                                      "reconnect-delay": 1})
    assert r.status_code in (201, 204), r.text
    publish(brokers["c"], "sx", [])
    set_policy(api, "fed-sx", "^sx$", {"federation-upstream": "nowhere"}, "exchanges")
    link = eventually(lambda: [x for x in links(api, exchange="sx")
                               if x["status"] == "error"], "an error status")[0]
    assert "connection refused" in link["error"]
    assert link["uri"] == f"amqp://127.0.0.1:{port}/%2F"
    assert "secret" not in json.dumps(api.get("/api/federation-links").json())
    assert len(link["id"]) == 8 and int(link["id"], 16) >= 0
    assert "local_connection" not in link
    doc = api.get("/api/openapi.json").json()
    schema = {"type": "array", "items": {"$ref": "#/components/schemas/FederationLink"},
              "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(api.get("/api/federation-links").json())
    assert [x["exchange"] for x in api.get("/api/federation-links/%2F").json()
            if x.get("exchange") == "sx"] == ["sx"]
    assert api.get("/api/federation-links/nosuchvhost").status_code == 404
    table = rows(ctl(brokers["c"], "federation_status").stdout)
    assert [r[:6] for r in table if r[1] == "sx"] == [
        ["exchange", "sx", "/", "nowhere", "sx", "error"]]
    metrics = requests.get(brokers["c"].http_url + "/metrics", timeout=30).text
    assert ('warren_federation_link_state{name="sx",state="error",type="exchange",'
            'upstream="nowhere",vhost="/"} 1.0') in metrics

    # the upstream deleted: its links go
    assert api.delete("/api/parameters/federation-upstream/%2F/nowhere").status_code == 204
    eventually(lambda: not links(api, exchange="sx"), "link of a deleted upstream gone")
    api.delete("/api/policies/%2F/fed-sx")


def test_links_come_back_after_a_restart(brokers, apis):
    a, b = brokers["a"], brokers["b"]
    publish(b, "rx", [])
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.exchange_declare("rx", "topic", durable=True)
    ch.queue_declare("rx-q", durable=True)
    ch.queue_bind("rx-q", "rx", "k")
    conn.close()
    set_upstream(apis["a"], "up-b-rx", {"uri": uri_of(b), "reconnect-delay": 1})
    set_policy(apis["a"], "fed-rx", "^rx$", {"federation-upstream": "up-b-rx"}, "exchanges")
    wait_running(apis["a"], exchange="rx")
    for proc in (a, b):      # the downstream, then the upstream under a running link
        earlier = list(proc.lines)
        proc.restart()
        assert not [x for x in earlier if "Traceback" in x or "Unhandled" in x], \
            "\n".join(earlier[-80:])
    link = wait_running(apis["a"], exchange="rx")
    assert link["upstream"] == "up-b-rx"
    eventually(lambda: upstream_keys(apis["b"], "rx") == {"k"}, "binding k after restart")
    publish(b, "rx", [("k", b"after-restart")])
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    try:
        ch = conn.channel()
        body = eventually(lambda: ch.basic_get("rx-q", auto_ack=True)[2], "the message")
        assert body == b"after-restart"
    finally:
        conn.close()
    apis["a"].delete("/api/policies/%2F/fed-rx")


def test_rabbitmq_definitions_with_federation_import_unchanged(brokers, apis):
    """A definitions file as RabbitMQ exports it: upstream, set (listed first), policy."""
    b = brokers["b"]
    defs = {
        "parameters": [
            {"value": [{"upstream": "defs-up", "prefetch-count": 50}], "vhost": "/",
             "component": "federation-upstream-set", "name": "defs-set"},
            {"value": {"uri": uri_of(b), "ack-mode": "on-confirm", "trust-user-id": False,
                       "reconnect-delay": 1},
             "vhost": "/", "component": "federation-upstream", "name": "defs-up"}],
        "policies": [{"vhost": "/", "name": "defs-fed", "pattern": "^dx$",
                      "apply-to": "exchanges", "priority": 0,
                      "definition": {"federation-upstream-set": "defs-set"}}],
        "exchanges": [{"name": "dx", "vhost": "/", "type": "fanout", "durable": True,
                       "auto_delete": False, "internal": False, "arguments": {}}],
    }
    r = apis["c"].post("/api/definitions", defs)
    assert r.status_code in (200, 201, 204), r.text
    link = wait_running(apis["c"], exchange="dx")
    assert link["upstream"] == "defs-up"
    # the fanout upstream exchange was declared on B with the downstream's type
    assert apis["b"].get("/api/exchanges/%2F/dx").json()["type"] == "fanout"
    apis["c"].delete("/api/policies/%2F/defs-fed")
    eventually(lambda: not links(apis["c"], exchange="dx"), "link gone")


def test_downstream_killed_mid_stream_loses_no_confirmed_message(brokers, apis):
    """on-confirm: B's message is acked only once A's store has it, so a kill -9 of A while
    messages cross loses none; only those in flight (at most the prefetch) may come twice."""
    a, b = brokers["a"], brokers["b"]
    count, prefetch = 1500, 50
    publish(b, "kx", [])
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    ch = conn.channel()
    ch.exchange_declare("kx", "topic", durable=True)
    ch.queue_declare("kq", durable=True)
    ch.queue_bind("kq", "kx", "k")
    conn.close()
    set_upstream(apis["a"], "up-b-kx", {"uri": uri_of(b), "reconnect-delay": 0.2,
                                        "prefetch-count": prefetch})
    set_policy(apis["a"], "fed-kx", "^kx$", {"federation-upstream": "up-b-kx"}, "exchanges")
    wait_running(apis["a"], exchange="kx")
    eventually(lambda: upstream_keys(apis["b"], "kx") == {"k"}, "binding k on B")
    # B's publisher runs on while A is killed: messages are crossing at that moment
    publisher = threading.Thread(target=publish, args=(
        b, "kx", [("k", f"m{i}".encode()) for i in range(count)]))   # all confirmed by B
    publisher.start()
    eventually(lambda: (queue_info(apis["a"], "kq").get("messages") or 0) >= count // 10,
               "messages crossing")
    earlier = list(a.lines)
    a.kill()
    publisher.join(4 * DEADLINE)     # confirms one by one: slow on a busy machine
    assert not publisher.is_alive()
    a.start()
    assert not [x for x in earlier if "Traceback" in x or "Unhandled" in x]
    eventually(lambda: (queue_info(apis["a"], "kq").get("messages") or 0) >= count,
               "every message on A", timeout=60)
    conn = pika.BlockingConnection(pika.URLParameters(a.amqp_url))
    bodies: list[bytes] = []
    try:
        ch = conn.channel()
        for _ in range(count + 10 * prefetch):       # bounded: count + the allowed duplicates
            method, _props, body = ch.basic_get("kq", auto_ack=True)
            if method is None:
                break
            bodies.append(body)
    finally:
        conn.close()
    assert set(bodies) == {f"m{i}".encode() for i in range(count)}
    duplicates = len(bodies) - count
    assert duplicates <= prefetch, duplicates
    apis["a"].delete("/api/policies/%2F/fed-kx")
