"""A deleted queue's ``amq.topic`` keys leave the demand a broker tells its network peers at
once, although its bindings are removed a slice per reactor turn after it is gone
(``VirtualHost.delete_queue``).

The test is the peer: it declares the queue a peer's connector declares to be told this
broker's demand (``x-network-demand``) and reads the demand messages itself. A queue with many
bindings is deleted, and once the client has its delete-ok it binds another queue; the first
demand that has that new key must not have any key of the deleted queue. Before, the demand
was read from the exchange's bindings as they were, so it still had the keys of the bindings
the later slices had not removed yet.
"""

from __future__ import annotations

import json

import pika
import requests

from tests.polling import eventually

BINDINGS = 30_000      # some turns of slices, however fast the machine


def test_a_deleted_queues_keys_leave_the_demand_at_once(broker, unique):
    big, other, demand = f"{unique}.big", f"{unique}.other", f"{unique}.demand"
    defs = {"queues": [{"name": big, "vhost": "/", "durable": False, "auto_delete": False,
                        "arguments": {}}],
            "bindings": [{"source": "amq.topic", "vhost": "/", "destination": big,
                          "destination_type": "queue", "routing_key": f"{unique}.big.{i}",
                          "arguments": {}} for i in range(BINDINGS)]}
    r = requests.post(f"{broker.http_url}/api/definitions", json=defs, auth=("guest", "guest"),
                      timeout=120)
    assert r.status_code == 204, r.text

    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    try:
        ch = conn.channel()
        ch.queue_declare(demand, arguments={"x-network-demand": "warren@peer"})
        ch.queue_declare(other)

        def keys_of_next() -> list[str] | None:
            method, _props, body = ch.basic_get(demand, auto_ack=True)
            return None if method is None else [item["key"] for item in json.loads(body)]

        eventually(lambda: (keys := keys_of_next()) is not None and f"{unique}.big.0" in keys,
                   "a demand with the big queue's keys")
        ch.queue_delete(big)
        ch.queue_bind(other, "amq.topic", f"{unique}.after")

        def demand_with_the_new_key() -> list[str] | None:
            while (keys := keys_of_next()) is not None:
                if f"{unique}.after" in keys:
                    return keys
            return None

        keys = eventually(demand_with_the_new_key, "a demand with the key bound after")
        left = [k for k in keys if k.startswith(f"{unique}.big.")]
        assert left == [], f"{len(left)} keys of the deleted queue still in the demand"
    finally:
        conn.close()
