"""A shovel inside one warren (``amqp://`` at both ends), for what needs no other broker."""

from __future__ import annotations

import pika
import pytest

from tests.network.test_shovel_rabbitmq import (
    PERSISTENT,
    connect,
    delete_shovel,
    depth,
    put_shovel,
    wait_until,
)
from tests.webconsole.conftest import ApiClient


@pytest.fixture(scope="module")
def warren_api(broker) -> ApiClient:
    return ApiClient(f"http://127.0.0.1:{broker.http_port}")


def status(api, name: str) -> dict:
    return next((s for s in api.get("/api/shovels").json() if s.get("name") == name), {})


def test_missing_destination_exchange_terminates_with_a_reason(broker, warren_api, unique):
    conn = connect(broker.amqp_port)
    ch = conn.channel()
    ch.queue_declare(unique, durable=True)
    put_shovel(warren_api, unique, {"src-uri": "amqp://", "src-queue": unique,
                                    "dest-uri": "amqp://", "dest-exchange": f"{unique}.none"})
    try:
        wait_until(lambda: status(warren_api, unique).get("state") == "running", 30, "running")
        ch.basic_publish("", unique, b"m", PERSISTENT)
        wait_until(lambda: status(warren_api, unique).get("state") == "terminated", 30,
                   "the shovel to stop on the refused message")
        assert "no exchange" in status(warren_api, unique)["reason"]
    finally:
        delete_shovel(warren_api, unique)
    assert depth(ch, unique) == 1    # not acked: back in its queue
    conn.close()
    assert not [line for line in broker.lines if "Traceback" in line or "NameError" in line]


def test_properties_pass_unchanged_through_a_local_shovel(broker, warren_api, unique):
    src, dst = f"{unique}.a", f"{unique}.b"
    conn = connect(broker.amqp_port)
    ch = conn.channel()
    ch.queue_declare(src, durable=True)
    ch.queue_declare(dst, durable=True)
    headers = {"zeta": 1, "alpha": 2**40, "nested": {"b": 1, "a": 2}}
    put_shovel(warren_api, unique, {"src-uri": "amqp://", "src-queue": src,
                                    "dest-uri": "amqp://", "dest-queue": dst})
    try:
        ch.basic_publish("", src, b"m", pika.BasicProperties(headers=headers, priority=3))

        def got():
            method, props, _body = ch.basic_get(dst, auto_ack=True)
            return props if method is not None else None
        props = wait_until(got, 30, "the message moved")
    finally:
        delete_shovel(warren_api, unique)
    assert list(props.headers) == list(headers) and props.headers == headers
    assert list(props.headers["nested"]) == ["b", "a"] and props.priority == 3
    conn.close()
