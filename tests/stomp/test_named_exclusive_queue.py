"""SUBSCRIBE with ``x-queue-name`` and ``exclusive:true``: one queue of the session's own,
bound by several subscriptions (what the console's watch panel relies on).

Each message reaches the session once however many of the queue's bindings match it; another
connection naming the queue is refused with the locked-queue error; the queue goes with the
session.
"""

from __future__ import annotations

import urllib.parse

import pika
import requests

from tests.polling import eventually

GUEST = ("guest", "guest")


def queue_status(broker, name: str) -> requests.Response:
    return requests.get(f"{broker.http_url}/api/queues/%2F/{urllib.parse.quote(name, safe='')}",
                        auth=GUEST, timeout=10)


def test_one_exclusive_queue_for_several_bindings(client_factory, broker, unique):
    name = f"{unique}-watch"
    owner = client_factory("1.2")
    owner.subscribe("/exchange/amq.topic/a.*", "s1", **{"x-queue-name": name, "exclusive": "true",
                                                        "auto-delete": "true"})
    owner.subscribe("/exchange/amq.topic/*.b", "s2", **{"x-queue-name": name, "exclusive": "true",
                                                        "auto-delete": "true"})
    info = queue_status(broker, name).json()
    assert (info["exclusive"], info["auto_delete"], info["durable"]) == (True, True, False)

    with pika.BlockingConnection(pika.URLParameters(broker.amqp_url)) as conn:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish("amq.topic", "a.b", b"matches both bindings")
        ch.basic_publish("amq.topic", "a.c", b"matches one")
    bodies = [owner.recorder.message().body, owner.recorder.message().body]
    assert bodies == ["matches both bindings", "matches one"]
    owner.sync()
    assert owner.recorder.messages.empty()          # the first was not delivered twice

    other = client_factory("1.2", wait=True)
    other.conn.subscribe("/exchange/amq.topic/x", "s9",
                         headers={"x-queue-name": name, "exclusive": "true"})
    error = other.recorder.error()
    assert error.headers["message"] == "resource_locked", error.headers
    assert f"cannot obtain exclusive access to locked queue '{name}'" in error.body
    assert queue_status(broker, name).json()["consumers"] == 2     # the owner's two only

    owner.close()
    eventually(lambda: queue_status(broker, name).status_code == 404, "queue gone with its session")
    assert "Traceback" not in broker.log()
