"""Bindings are listed in RabbitMQ's order, not in the order an exchange holds them (past
8,192 bindings that is its shards' order, ``exchange/sharded_map.py``, which changes with the
hash seed from one run to the next).

RabbitMQ 3.10.8, asked the same way: the management API sorts a binding list by vhost, source,
destination, routing key and properties key; a definitions export lists an exchange's
bindings by routing key, then destination.
"""

from __future__ import annotations

import random

N = 9_000      # past sharded_map.SPLIT_AT


def _bindings(unique: str) -> list[dict]:
    rows = [(f"{unique}-q{i % 3}", f"k{i}") for i in range(N)]
    random.Random(7).shuffle(rows)
    return [{"source": f"{unique}-x", "vhost": "/", "destination": q,
             "destination_type": "queue", "routing_key": k, "arguments": {}} for q, k in rows]


def test_bindings_are_listed_and_exported_in_rabbitmqs_order(api, unique):
    defs = {"exchanges": [{"name": f"{unique}-x", "vhost": "/", "type": "direct",
                           "durable": True, "auto_delete": False, "internal": False,
                           "arguments": {}}],
            "queues": [{"name": f"{unique}-q{i}", "vhost": "/", "durable": True,
                        "auto_delete": False, "arguments": {}} for i in range(3)],
            "bindings": _bindings(unique)}
    r = api.post("/api/definitions", defs, timeout=120)
    assert r.status_code == 204, r.text

    listed = api.get(f"/api/exchanges/%2F/{unique}-x/bindings/source", timeout=60).json()
    pairs = [(b["destination"], b["routing_key"]) for b in listed]
    assert len(pairs) == N and pairs == sorted(pairs)

    everything = api.get("/api/bindings/%2F", timeout=60).json()
    mine = [(b["destination"], b["routing_key"]) for b in everything
            if b["source"] == f"{unique}-x"]
    assert mine == pairs
    sources = [b["source"] for b in everything]
    assert sources == sorted(sources)

    queue = api.get(f"/api/queues/%2F/{unique}-q1/bindings", timeout=60).json()
    assert queue[0]["source"] == ""          # the default exchange's binding first
    keys = [b["routing_key"] for b in queue[1:]]
    assert keys == sorted(keys) and len(keys) == N // 3

    exported = api.get("/api/definitions", timeout=60).json()["bindings"]
    order = [(b["routing_key"], b["destination"]) for b in exported
             if b["source"] == f"{unique}-x"]
    assert len(order) == N and order == sorted(order)
