"""What is durable survives `kill -9` and a clean restart; what is not, does not (each store).

One scenario per store builds everything durable and non-durable at once, makes the last
definition durable with a confirmed publish (a sync covers every write before it), kills the
broker with SIGKILL, restarts it and checks, then restarts it cleanly and checks again.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request

import pika
import pytest

from tests.durability.clients import PERSISTENT, TRANSIENT, queue_depth, read_queue


def api(broker, method: str, path: str, body: dict | None = None, *,
        user: str = "guest", password: str = "guest") -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(broker.http_url + path, data=data, method=method)
    request.add_header("Authorization", "Basic " + base64.b64encode(
        f"{user}:{password}".encode()).decode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as error:
        return error.code, None


def confirmed_channel(url: str):
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.confirm_delivery()
    return conn, channel


def build_everything(broker) -> pika.BlockingConnection:
    """Declare durable and non-durable things, publish, take 3 messages unacked.

    Returns the open connection holding the unacked messages (the kill finds them unacked).
    """
    assert api(broker, "PUT", "/api/vhosts/dv")[0] in (201, 204)
    assert api(broker, "PUT", "/api/users/duser",
               {"password": "dpass", "tags": "monitoring"})[0] in (201, 204)
    assert api(broker, "PUT", "/api/permissions/dv/duser",
               {"configure": ".*", "write": ".*", "read": ".*"})[0] in (201, 204)

    conn, ch = confirmed_channel(broker.amqp_url)
    ch.exchange_declare("dx", "topic", durable=True)
    ch.exchange_declare("dx2", "fanout", durable=True)
    ch.exchange_declare("tx", "direct", durable=False)
    ch.queue_declare("dq", durable=True)
    ch.queue_declare("tq", durable=False)
    ch.queue_bind("dq", "dx", "a.#")
    ch.exchange_bind(destination="dx2", source="dx", routing_key="b.*")
    ch.queue_bind("dq", "dx2", "")
    for i in range(10):
        ch.basic_publish("dx", "a.1", f"p{i}".encode(), PERSISTENT, mandatory=True)
    for i in range(5):
        ch.basic_publish("dx", "a.2", f"t{i}".encode(), TRANSIENT, mandatory=True)
    for i in range(3):
        ch.basic_publish("", "tq", f"n{i}".encode(), PERSISTENT, mandatory=True)
    taken = [ch.basic_get("dq", auto_ack=False) for _ in range(3)]
    assert [body for _m, _p, body in taken] == [b"p0", b"p1", b"p2"]

    # the last write: a confirmed persistent publish whose sync covers everything above
    other = pika.BlockingConnection(pika.URLParameters(
        f"amqp://duser:dpass@127.0.0.1:{broker.amqp_port}/dv"))
    vch = other.channel()
    vch.confirm_delivery()
    vch.queue_declare("vq", durable=True)
    vch.basic_publish("", "vq", b"v0", PERSISTENT, mandatory=True)
    other.close()
    return conn


def check_everything(broker, *, after_kill: bool) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.exchange_declare("dx", "topic", durable=True, passive=True)
    ch.exchange_declare("dx2", "fanout", durable=True, passive=True)
    for kind, name in (("exchange", "tx"), ("queue", "tq")):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
            if kind == "exchange":
                ch.exchange_declare(name, passive=True)
            else:
                ch.queue_declare(name, passive=True)
        assert closed.value.reply_code == 404, name
        ch = conn.channel()
    conn.close()

    messages = read_queue(broker.amqp_url, "dq")
    bodies = [body for body, _ in messages]
    assert bodies == [f"p{i}".encode() for i in range(10)], "transient ones must be gone"
    if after_kill:
        # after kill -9 each may have been delivered (RabbitMQ 4's classic queues say so too)
        assert all(flag for _, flag in messages)

    # bindings: dx -> dq ("a.#") and dx -> dx2 -> dq (exchange-to-exchange)
    conn, ch = confirmed_channel(broker.amqp_url)
    ch.basic_publish("dx", "b.x", b"via-dx2", PERSISTENT, mandatory=True)
    ch.basic_publish("dx", "a.z", b"via-dx", PERSISTENT, mandatory=True)
    conn.close()
    assert queue_depth(broker.amqp_url, "dq") == 12
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.queue_purge("dq")  # leave dq as it was for the next round of checks
    for i in range(10):
        ch.basic_publish("", "dq", f"p{i}".encode(), PERSISTENT)
    conn.close()

    # vhost, user, permissions: the user logs in to its vhost and finds its message
    assert api(broker, "GET", "/api/vhosts/dv")[0] == 200
    status, user = api(broker, "GET", "/api/users/duser")
    assert status == 200 and "monitoring" in str(user["tags"])
    assert api(broker, "GET", "/api/permissions/dv/duser")[0] == 200
    assert queue_depth(f"amqp://duser:dpass@127.0.0.1:{broker.amqp_port}/dv", "vq") == 1


def test_durable_things_survive_kill_and_restart(make_broker):
    broker = make_broker().start()
    holder = build_everything(broker)
    broker.kill()
    try:
        holder.close()
    except Exception:
        pass  # the broker is gone: the client notices now or never
    broker.start()
    check_everything(broker, after_kill=True)
    broker.restart()
    check_everything(broker, after_kill=False)
