"""Federation with a real RabbitMQ (Debian's ``rabbitmq-server``, installed when missing, or
the tests skipped with WARREN_TEST_SKIP_MISSING: ``tests/missing_tools.py``).

A throw-away RabbitMQ node with the federation plugin (so it has the
``x-federation-upstream`` type) on free ports. Both directions prove the wire format:

- warren federates from RabbitMQ: RabbitMQ accepts what warren's link declares (the internal
  exchange's arguments, ``x-max-hops`` a long), and messages arrive with RabbitMQ's
  ``cluster-name``;
- RabbitMQ federates from warren: warren accepts what RabbitMQ's link declares (its names,
  arguments and ``x-bound-from`` bindings) and RabbitMQ's consumers get warren's messages.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import pika
import pytest

from tests.broker_process import BrokerProcess, free_port
from tests.network.rabbitmq import ensure_rabbitmq
from tests.network.test_federation import (
    Consumer,
    eventually,
    publish,
    set_policy,
    set_upstream,
    wait_running,
)
from tests.webconsole.conftest import ApiClient

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"


def start_rabbit(base, plugins: str):
    """A RabbitMQ node with ``plugins`` enabled; yields its URL, port, ctl and node name."""
    ensure_rabbitmq()    # installed when missing, or skipped (tests/missing_tools.py)
    port, dist = free_port(), free_port()
    node = f"warren-fed-{port}@localhost"
    (base / "enabled_plugins").write_text(f"[{plugins}].\n")
    env = dict(os.environ, HOME=str(base), RABBITMQ_NODE_PORT=str(port),
               RABBITMQ_DIST_PORT=str(dist), RABBITMQ_NODENAME=node,
               RABBITMQ_MNESIA_BASE=str(base / "mnesia"), RABBITMQ_LOG_BASE=str(base / "log"),
               RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
               RABBITMQ_NODE_IP_ADDRESS="127.0.0.1")
    proc = subprocess.Popen([SERVER], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "completed with" in line:
                started.set()
        started.set()

    threading.Thread(target=read, daemon=True).start()
    if not started.wait(180) or proc.poll() is not None:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.skip("rabbitmq-server did not start:\n" + "".join(lines[-30:]))

    def ctl(*args: str) -> str:
        out = subprocess.run([CTL, "-n", node, *args], env=env, capture_output=True,
                             text=True, timeout=120, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    yield {"url": f"amqp://guest:guest@127.0.0.1:{port}/%2F", "port": port, "ctl": ctl,
           "node": node}
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from start_rabbit(tmp_path_factory.mktemp("rabbitmq-fed"), "rabbitmq_federation")


@pytest.fixture(scope="module")
def plain_rabbit(tmp_path_factory):
    """No federation plugin: no ``x-federation-upstream`` type (a typical upstream)."""
    yield from start_rabbit(tmp_path_factory.mktemp("rabbitmq-plain"), "")


@pytest.fixture(scope="module")
def warren(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("fed-warren"),
                         extra_args=["--node-name", "rabbit@warren"])
    proc.start()
    yield proc
    proc.stop()
    proc.kill()
    bad = [line for line in proc.lines if "Traceback" in line or "Unhandled" in line]
    assert not bad, proc.log()


def rabbit_cluster_name(rabbit) -> str:
    conn = pika.BlockingConnection(pika.URLParameters(rabbit["url"]))
    try:
        return conn._impl.server_properties["cluster_name"]
    finally:
        conn.close()


def test_warren_federates_from_rabbitmq(rabbit, warren):
    api = ApiClient(warren.http_url)
    conn = pika.BlockingConnection(pika.URLParameters(rabbit["url"]))
    conn.channel().exchange_declare("rfx", "topic", durable=True)
    conn.close()
    consumer = Consumer(warren, "rfx", ["k"])
    try:
        r = set_upstream(api, "rabbit", {"uri": rabbit["url"], "reconnect-delay": 1})
        assert r.status_code in (201, 204), r.text
        set_policy(api, "fed-rfx", "^rfx$", {"federation-upstream": "rabbit"}, "exchanges")
        wait_running(api, exchange="rfx")
        # RabbitMQ took our internal exchange, with its arguments' types, and the binding
        listed = rabbit["ctl"]("list_exchanges", "name", "type", "internal", "--formatter",
                               "json")
        internal = [x for x in json.loads(listed)
                    if x["name"] == "federation: rfx -> rabbit@warren B"]
        assert internal and internal[0]["type"] == "x-federation-upstream"
        eventually(lambda: "k" in rabbit["ctl"]("list_bindings", "source_name",
                                                "routing_key"), "binding on RabbitMQ")
        publish(SimpleNamespace(amqp_url=rabbit["url"]), "rfx",
                [("k", b"from-rabbit"), ("x", b"not-this"), ("k", b"end")])
        got = consumer.receive_until(b"end")
        assert [body for _k, body, _h in got] == [b"from-rabbit", b"end"]
        entry = got[0][2]["x-received-from"][0]
        assert entry["cluster-name"] == rabbit_cluster_name(rabbit)
        assert entry["exchange"] == "rfx" and entry["vhost"] == "/"
    finally:
        consumer.close()


def test_rabbitmq_federates_from_warren(rabbit, warren):
    ctl = rabbit["ctl"]
    publish(warren, "wfx", [])
    conn = pika.BlockingConnection(pika.URLParameters(rabbit["url"]))
    ch = conn.channel()
    ch.exchange_declare("wfx", "topic", durable=True)
    q = ch.queue_declare("", exclusive=True).method.queue
    ch.queue_bind(q, "wfx", "k")
    try:
        ctl("set_parameter", "federation-upstream", "warren", json.dumps(
            {"uri": f"amqp://guest:guest@127.0.0.1:{warren.amqp_port}", "reconnect-delay": 1}))
        ctl("set_policy", "fed-wfx", "^wfx$", json.dumps({"federation-upstream": "warren"}),
            "--apply-to", "exchanges")
        eventually(lambda: "running" in ctl("eval",
                                            "rabbit_federation_status:status()."),
                   "RabbitMQ's link running")
        api = ApiClient(warren.http_url)
        cluster = rabbit_cluster_name(rabbit)
        queue_name = f"federation: wfx -> {cluster}"

        def bound() -> list:
            r = api.get("/api/exchanges/%2F/wfx/bindings/source")
            return [b for b in r.json() if b["routing_key"] == "k"] if r.ok else []
        binding = eventually(bound, "RabbitMQ's binding on warren")[0]
        assert binding["destination"].startswith(queue_name + " ")
        assert binding["arguments"]["x-bound-from"][0]["cluster-name"] == cluster
        ix = api.get("/api/exchanges/%2F/" + requests_quote(binding["destination"])).json()
        assert ix["type"] == "x-federation-upstream"
        publish(warren, "wfx", [("k", b"from-warren"), ("x", b"not-this"), ("k", b"end")])
        got: list[tuple] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not got or got[-1][1] != b"end"):
            method, props, body = ch.basic_get(q, auto_ack=True)
            if method is None:
                conn.process_data_events(0.05)
                continue
            got.append((method.routing_key, body, props.headers or {}))
        assert [body for _k, body, _h in got] == [b"from-warren", b"end"]
        entry = got[0][2]["x-received-from"][0]
        assert entry["cluster-name"] == "rabbit@warren"
        assert entry["uri"] == f"amqp://127.0.0.1:{warren.amqp_port}"
    finally:
        conn.close()


def requests_quote(name: str) -> str:
    from urllib.parse import quote
    return quote(name, safe="")


def test_upstream_without_the_plugin_gets_a_fanout(plain_rabbit, warren):
    api = ApiClient(warren.http_url)
    conn = pika.BlockingConnection(pika.URLParameters(plain_rabbit["url"]))
    conn.channel().exchange_declare("pfx", "direct", durable=True)
    conn.close()
    consumer = Consumer(warren, "pfx", ["k"], exchange_type="direct")
    try:
        r = set_upstream(api, "plain", {"uri": plain_rabbit["url"], "reconnect-delay": 0.2})
        assert r.status_code in (201, 204), r.text
        set_policy(api, "fed-pfx", "^pfx$", {"federation-upstream": "plain"}, "exchanges")
        wait_running(api, exchange="pfx")
        listed = json.loads(plain_rabbit["ctl"]("list_exchanges", "name", "type",
                                                "--formatter", "json"))
        internal = [x for x in listed if x["name"].startswith("federation: pfx -> ")]
        assert [x["type"] for x in internal] == ["fanout"]
        eventually(lambda: "k" in plain_rabbit["ctl"]("list_bindings", "source_name",
                                                      "routing_key"), "binding")
        publish(SimpleNamespace(amqp_url=plain_rabbit["url"]), "pfx",
                [("k", b"via-fanout"), ("k", b"end")], exchange_type="direct")
        got = consumer.receive_until(b"end")
        assert [body for _k, body, _h in got] == [b"via-fanout", b"end"]
    finally:
        consumer.close()


def test_warren_queue_federates_from_rabbitmq(rabbit, warren):
    api = ApiClient(warren.http_url)
    for url in (rabbit["url"], warren.amqp_url):
        conn = pika.BlockingConnection(pika.URLParameters(url))
        conn.channel().queue_declare("rfq", durable=True)
        conn.close()
    r = set_upstream(api, "rabbit-q", {"uri": rabbit["url"], "reconnect-delay": 1})
    assert r.status_code in (201, 204), r.text
    set_policy(api, "fed-rfq", "^rfq$", {"federation-upstream": "rabbit-q"}, "queues")
    wait_running(api, queue="rfq")
    conn = pika.BlockingConnection(pika.URLParameters(rabbit["url"]))
    ch = conn.channel()
    ch.confirm_delivery()
    for i in range(3):
        ch.basic_publish("", "rfq", f"r{i}".encode(), pika.BasicProperties(delivery_mode=2))
    conn.close()
    conn = pika.BlockingConnection(pika.URLParameters(warren.amqp_url))
    ch = conn.channel()
    got: list[bytes] = []
    ch.basic_consume("rfq", lambda c, m, p, body: (got.append(body),
                                                   c.basic_ack(m.delivery_tag)))
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        conn.process_data_events(0.05)
    conn.close()
    assert sorted(got) == [b"r0", b"r1", b"r2"]
