"""Many bindings made and half of them unbound, on each store: the API lists exactly the ones
left, messages reach only what is still bound, and after a restart the store gives back the
same bindings, no more (an unbind deletes a stored binding by the key it was saved under;
one that was never stored, of a non-durable queue, writes nothing), no fewer."""

from __future__ import annotations

import urllib.parse

import pika

from tests.durability.test_restart import api

N = 100


def _bindings(broker, exchange: str) -> set[tuple[str, str]]:
    status, listed = api(broker, "GET",
                         f"/api/exchanges/%2F/{urllib.parse.quote(exchange, safe='')}"
                         "/bindings/source")
    assert status == 200
    assert isinstance(listed, list)
    return {(b["destination"], b["routing_key"]) for b in listed}


def _routed(broker, ex: str, tx: str, queues: list[str]) -> dict[str, int]:
    """Publish one message per key of each exchange (confirmed); the queues' depths."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.confirm_delivery()
    for q in queues:
        ch.queue_purge(q)
    for i in range(N):
        ch.basic_publish(ex, f"k{i}", b"d")
        ch.basic_publish(tx, f"t.{i}.x", b"t")
    depths = {q: ch.queue_declare(q, passive=True).method.message_count for q in queues}
    conn.close()
    return depths


def test_mass_unbind_is_exact_and_survives_a_restart(make_broker, unique):
    broker = make_broker().start()
    ex, tx = f"{unique}.direct", f"{unique}.topic"
    dq, nq, gone = f"{unique}.dq", f"{unique}.nq", f"{unique}.gone"
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    ch = conn.channel()
    ch.exchange_declare(ex, "direct", durable=True)
    ch.exchange_declare(tx, "topic", durable=True)
    ch.queue_declare(dq, durable=True)
    ch.queue_declare(nq, durable=False)
    ch.queue_declare(gone, durable=True)
    for i in range(N):
        for q in (dq, nq, gone):
            ch.queue_bind(q, ex, f"k{i}")
        ch.queue_bind(dq, tx, f"t.{i}.#")
        ch.queue_bind(nq, tx, f"t.{i}.#")
    for i in range(0, N, 2):
        for q in (dq, nq):
            ch.queue_unbind(q, ex, f"k{i}")
            ch.queue_unbind(q, tx, f"t.{i}.#")
        ch.queue_unbind(dq, ex, f"k{i}")      # twice: unbind-ok, nothing changes
    ch.queue_delete(gone)                      # its bindings go with it
    conn.close()

    odd = range(1, N, 2)
    want_direct = {(q, f"k{i}") for q in (dq, nq) for i in odd}
    want_topic = {(q, f"t.{i}.#") for q in (dq, nq) for i in odd}
    assert _bindings(broker, ex) == want_direct
    assert _bindings(broker, tx) == want_topic
    assert _routed(broker, ex, tx, [dq, nq]) == {dq: N, nq: N}   # N/2 keys of each exchange

    broker.restart()
    assert _bindings(broker, ex) == {(dq, f"k{i}") for i in odd}
    assert _bindings(broker, tx) == {(dq, f"t.{i}.#") for i in odd}
    assert _routed(broker, ex, tx, [dq]) == {dq: N}
    assert not [line for line in broker.lines if "Traceback" in line]
