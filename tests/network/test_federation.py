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
import time
import uuid

import paho.mqtt.client as mqtt
import pika
import pytest
import requests
import stomp

from tests.broker_process import BrokerProcess
from tests.webconsole.conftest import ApiClient

DEADLINE = 30.0


def eventually(check, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last: {got!r}")
        time.sleep(0.05)


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
        bound = [x for x in upstream_bindings(apis["b"], "fx")
                 if x["destination"] == ix["name"]][0]
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
