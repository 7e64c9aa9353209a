"""Dead-lettering (RabbitMQ dlx.html): rejects, expiry, length drops, x-death, cycles."""

from __future__ import annotations

import datetime

import pika

from .conftest import drain, message_count, wait_until


def _dlx_setup(channel, unique, **extra_args):
    """A work queue dead-lettering into fanout exchange ``unique.dlx`` bound to ``unique.dlq``."""
    channel.exchange_declare(f"{unique}.dlx", "fanout")
    channel.queue_declare(f"{unique}.dlq")
    channel.queue_bind(f"{unique}.dlq", f"{unique}.dlx")
    args = {"x-dead-letter-exchange": f"{unique}.dlx", **extra_args}
    channel.queue_declare(f"{unique}.work", arguments=args)
    return f"{unique}.work", f"{unique}.dlq"


def test_reject_without_requeue_dead_letters_with_x_death(channel, unique):
    work, dlq = _dlx_setup(channel, unique)
    channel.basic_publish("", work, b"m1", pika.BasicProperties(headers={"keep": "me"}))
    method, _, _ = channel.basic_get(work)
    channel.basic_reject(method.delivery_tag, requeue=False)
    [(m, props, body)] = wait_until(channel.connection, lambda: drain(channel, dlq), what="dlq")
    assert body == b"m1"
    assert m.exchange == f"{unique}.dlx" and m.routing_key == work
    h = props.headers
    assert h["keep"] == "me"
    [death] = h["x-death"]
    assert death["queue"] == work and death["reason"] == "rejected"
    assert death["count"] == 1 and isinstance(death["count"], int)
    assert death["exchange"] == "" and death["routing-keys"] == [work]
    assert isinstance(death["time"], datetime.datetime)
    assert "original-expiration" not in death
    assert h["x-first-death-reason"] == "rejected"
    assert h["x-first-death-queue"] == work
    assert h["x-first-death-exchange"] == ""


def test_x_death_routing_keys_hold_cc_but_not_bcc(channel, unique):
    # RabbitMQ 4 records the CC keys and keeps the BCC ones out (and drops the header)
    work, dlq = _dlx_setup(channel, unique)
    channel.basic_publish("", work, b"m1", pika.BasicProperties(
        headers={"CC": [f"{unique}.c"], "BCC": [f"{unique}.b"]}))
    method, _, _ = channel.basic_get(work)
    channel.basic_reject(method.delivery_tag, requeue=False)
    [(_m, props, _body)] = wait_until(channel.connection, lambda: drain(channel, dlq),
                                      what="dlq")
    assert props.headers["x-death"][0]["routing-keys"] == [work, f"{unique}.c"]
    assert props.headers["CC"] == [f"{unique}.c"] and "BCC" not in props.headers


def test_nack_without_requeue_dead_letters_but_requeue_does_not(channel, unique):
    work, dlq = _dlx_setup(channel, unique)
    channel.basic_publish("", work, b"a")
    method, _, _ = channel.basic_get(work)
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, _, _ = channel.basic_get(work)
    assert method.redelivered
    assert message_count(channel, dlq) == 0
    channel.basic_nack(method.delivery_tag, requeue=False)
    wait_until(channel.connection, lambda: message_count(channel, dlq) == 1)
    assert message_count(channel, work) == 0


def test_dead_letter_routing_key_replaces_the_key(channel, unique):
    channel.exchange_declare(f"{unique}.dlx", "direct")
    channel.queue_declare(f"{unique}.dlq")
    channel.queue_bind(f"{unique}.dlq", f"{unique}.dlx", routing_key="dead")
    channel.queue_declare(f"{unique}.work", arguments={
        "x-dead-letter-exchange": f"{unique}.dlx", "x-dead-letter-routing-key": "dead"})
    channel.basic_publish("", f"{unique}.work", b"x")
    method, _, _ = channel.basic_get(f"{unique}.work")
    channel.basic_reject(method.delivery_tag, requeue=False)
    [(m, props, _)] = wait_until(channel.connection, lambda: drain(channel, f"{unique}.dlq"))
    assert m.routing_key == "dead"
    # x-death keeps the routing keys the message was published with
    assert props.headers["x-death"][0]["routing-keys"] == [f"{unique}.work"]


def test_expired_message_dead_letters_with_original_expiration(channel, unique):
    work, dlq = _dlx_setup(channel, unique)
    channel.basic_publish("", work, b"ttl", pika.BasicProperties(expiration="50"))
    [(_, props, _)] = wait_until(channel.connection, lambda: drain(channel, dlq), what="dlq")
    [death] = props.headers["x-death"]
    assert death["reason"] == "expired"
    assert death["original-expiration"] == "50"
    assert props.expiration is None  # removed so it does not expire again


def test_queue_ttl_expiry_dead_letters_without_original_expiration(channel, unique):
    work, dlq = _dlx_setup(channel, unique, **{"x-message-ttl": 50})
    channel.basic_publish("", work, b"ttl")
    [(_, props, _)] = wait_until(channel.connection, lambda: drain(channel, dlq), what="dlq")
    [death] = props.headers["x-death"]
    assert death["reason"] == "expired" and "original-expiration" not in death


def test_max_length_drop_head_dead_letters_the_oldest(channel, unique):
    work, dlq = _dlx_setup(channel, unique, **{"x-max-length": 2})
    for body in (b"1", b"2", b"3", b"4"):
        channel.basic_publish("", work, body)
    got = wait_until(channel.connection,
                     lambda: message_count(channel, dlq) == 2 and drain(channel, dlq))
    assert [b for _, _, b in got] == [b"1", b"2"]
    assert {p.headers["x-death"][0]["reason"] for _, p, _ in got} == {"maxlen"}
    assert [b for _, _, b in drain(channel, work)] == [b"3", b"4"]


def test_repeated_dead_lettering_merges_counts_most_recent_first(channel, unique):
    """work -> (reject) -> retry queue with TTL -> (expired) -> work, twice around."""
    ex = f"{unique}.ex"
    channel.exchange_declare(ex, "direct")
    work, retry = f"{unique}.work", f"{unique}.retry"
    channel.queue_declare(work, arguments={"x-dead-letter-exchange": ex,
                                           "x-dead-letter-routing-key": "retry"})
    channel.queue_declare(retry, arguments={"x-dead-letter-exchange": ex,
                                            "x-dead-letter-routing-key": "work",
                                            "x-message-ttl": 30})
    channel.queue_bind(work, ex, routing_key="work")
    channel.queue_bind(retry, ex, routing_key="retry")
    channel.basic_publish("", work, b"job")
    deaths = None
    for round_ in (1, 2):
        method = wait_until(channel.connection, lambda: channel.basic_get(work)[0],
                            what=f"round {round_}")
        channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = wait_until(channel.connection, lambda: _get(channel, work))
    deaths = props.headers["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        (retry, "expired", 2), (work, "rejected", 2)]
    assert deaths[0]["exchange"] == ex and deaths[0]["routing-keys"] == ["retry"]
    assert deaths[1]["exchange"] == "" and deaths[1]["routing-keys"] == [work]
    assert all(isinstance(d["time"], datetime.datetime) for d in deaths)
    assert all(type(d["count"]) is int for d in deaths)
    h = props.headers
    assert (h["x-first-death-queue"], h["x-first-death-reason"]) == (work, "rejected")


def _get(channel, queue):
    method, props, body = channel.basic_get(queue, auto_ack=True)
    return (method, props, body) if method else None


def test_automatic_cycle_is_broken(channel, unique):
    """A queue dead-lettering expired messages to itself drops them (no endless loop)."""
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-message-ttl": 30})
    channel.basic_publish("", unique, b"loop")
    wait_until(channel.connection, lambda: message_count(channel, unique) == 0)
    # stays gone: a dead-lettered copy would reappear within one TTL
    channel.queue_declare(f"{unique}.probe", arguments={"x-message-ttl": 120})
    channel.basic_publish("", f"{unique}.probe", b"tick")
    wait_until(channel.connection, lambda: message_count(channel, f"{unique}.probe") == 0)
    assert message_count(channel, unique) == 0


def test_cycle_with_a_rejection_is_allowed(channel, unique):
    """Rejected messages may loop back to their queue: a client decided each round."""
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": "",
                                             "x-dead-letter-routing-key": unique})
    channel.basic_publish("", unique, b"again")
    for n in (1, 2, 3):
        method = wait_until(channel.connection, lambda: channel.basic_get(unique)[0])
        channel.basic_reject(method.delivery_tag, requeue=False)
    method, props, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    assert props.headers["x-death"][0]["count"] == 3


def test_missing_dead_letter_exchange_drops(channel, unique):
    channel.queue_declare(unique, arguments={"x-dead-letter-exchange": f"{unique}.nope"})
    channel.basic_publish("", unique, b"x")
    method, _, _ = channel.basic_get(unique)
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert message_count(channel, unique) == 0


def test_persistent_dead_lettered_message_stays_persistent(channel, unique):
    work, dlq = _dlx_setup(channel, unique)
    channel.basic_publish("", work, b"p", pika.BasicProperties(delivery_mode=2, priority=4,
                                                              correlation_id="c"))
    method, _, _ = channel.basic_get(work)
    channel.basic_reject(method.delivery_tag, requeue=False)
    [(_, props, _)] = wait_until(channel.connection, lambda: drain(channel, dlq))
    assert props.delivery_mode == 2 and props.priority == 4 and props.correlation_id == "c"
