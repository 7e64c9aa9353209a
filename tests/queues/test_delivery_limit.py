"""Poison messages (pika): ``x-delivery-limit`` with RabbitMQ's quorum-queue semantics on
classic queues, the ``x-delivery-count`` header, and the redelivery back-off.

RabbitMQ is the reference for the count, checked against Debian's rabbitmq-server 3.10.8 with
``tests/compat/poison_messages.py``: each return to the queue adds one; a quorum queue's
deliveries carry ``x-delivery-count`` from the first one on (0, then 1 on the first
redelivery), here those of a queue declared quorum or with a limit, while other queues carry it
once a message came back; past the limit the message is dead-lettered with reason
``delivery_limit``. The back-off is ActiveMQ's redelivery policy as queue arguments.
"""

from __future__ import annotations

from decimal import Decimal

import pika
import pytest
import requests
from pika.exceptions import ChannelClosedByBroker

from tests.polling import eventually
from tests.webconsole.test_metrics import scrape, value

from .conftest import drain, message_count, wait_until


@pytest.fixture
def policy(broker, unique):
    """policy(name, pattern, definition) through the HTTP API; cleared after the test."""
    made = []

    def set_policy(name, pattern, definition):
        url = f"{broker.http_url}/api/policies/%2F/{unique}.{name}"
        r = requests.put(url, auth=("guest", "guest"), timeout=30,
                         json={"pattern": pattern, "definition": definition})
        assert r.status_code in (201, 204), r.text
        made.append(url)
    yield set_policy
    for url in made:
        requests.delete(url, auth=("guest", "guest"), timeout=30)


def _get(channel, queue):
    method, props, body = channel.basic_get(queue)
    return (method, props, body) if method is not None else None


def _count(props):
    return (props.headers or {}).get("x-delivery-count")


def _dlx_setup(channel, unique, **args):
    channel.exchange_declare(f"{unique}.dlx", "fanout")
    channel.queue_declare(f"{unique}.dlq")
    channel.queue_bind(f"{unique}.dlq", f"{unique}.dlx")
    channel.queue_declare(f"{unique}.work", arguments={
        "x-dead-letter-exchange": f"{unique}.dlx", **args})
    return f"{unique}.work", f"{unique}.dlq"


def test_delivery_count_header_from_the_first_redelivery(channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"m", pika.BasicProperties(headers={"keep": 1}))
    method, props, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    assert not method.redelivered and _count(props) is None and props.headers == {"keep": 1}
    for expected in (1, 2, 3):
        channel.basic_nack(method.delivery_tag, requeue=True)
        method, props, _ = wait_until(channel.connection, lambda: _get(channel, unique))
        assert method.redelivered and _count(props) == expected
        assert props.headers["keep"] == 1
    channel.basic_ack(method.delivery_tag)


def test_delivery_limit_dead_letters_with_reason_delivery_limit(channel, unique):
    work, dlq = _dlx_setup(channel, unique, **{"x-delivery-limit": 2})
    channel.basic_publish("", work, b"poison", pika.BasicProperties(delivery_mode=2))
    channel.basic_publish("", work, b"fine")
    seen = []
    for _ in range(3):   # limit 2: the first delivery and two redeliveries
        method, props, body = wait_until(channel.connection, lambda: _get(channel, work))
        assert body == b"poison"
        seen.append(_count(props))
        channel.basic_reject(method.delivery_tag, requeue=True)
    assert seen == [0, 1, 2]
    [(_, props, body)] = wait_until(channel.connection, lambda: drain(channel, dlq), what="dlq")
    assert body == b"poison"
    [death] = props.headers["x-death"]
    assert death["reason"] == "delivery_limit" and death["queue"] == work
    assert death["count"] == 1
    assert props.headers["x-first-death-reason"] == "delivery_limit"
    assert props.headers["x-last-death-reason"] == "delivery_limit"
    # the message behind it was never held up
    [(_, _, body)] = drain(channel, work)
    assert body == b"fine"


def test_delivery_limit_zero_without_dlx_drops_on_the_first_return(channel, unique):
    channel.queue_declare(unique, arguments={"x-delivery-limit": 0})
    channel.basic_publish("", unique, b"once")
    method, _, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    channel.basic_nack(method.delivery_tag, requeue=True)
    assert message_count(channel, unique) == 0


def test_a_closed_channel_with_the_message_unacked_is_a_return(connection, channel, unique):
    channel.queue_declare(unique, arguments={"x-delivery-limit": 5})
    channel.basic_publish("", unique, b"m")
    other = connection.channel()
    wait_until(connection, lambda: _get(other, unique))
    other.close()
    method, props, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    assert method.redelivered and _count(props) == 1
    channel.basic_ack(method.delivery_tag)


def test_a_quorum_queue_counts_from_the_first_delivery(channel, unique):
    channel.queue_declare(unique, durable=True, arguments={"x-queue-type": "quorum"})
    channel.basic_publish("", unique, b"m")
    method, props, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    assert _count(props) == 0
    channel.basic_nack(method.delivery_tag, requeue=True)
    method, props, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    assert _count(props) == 1
    channel.basic_ack(method.delivery_tag)
    channel.queue_delete(unique)


def test_consumer_deliveries_carry_the_count(channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"m")
    got = []

    def on_message(ch, method, props, body):
        got.append(_count(props))
        ch.basic_nack(method.delivery_tag, requeue=len(got) < 3)
    channel.basic_consume(unique, on_message)
    wait_until(channel.connection, lambda: len(got) == 3, what="three deliveries")
    assert got == [None, 1, 2]


def test_delivery_limit_as_a_policy_and_the_stricter_wins(channel, unique, policy):
    work, dlq = _dlx_setup(channel, unique, **{"x-delivery-limit": 5})
    policy("dl", f"^{work}$", {"delivery-limit": 1, "dead-letter-exchange": f"{unique}.dlx"})
    channel.basic_publish("", work, b"p")
    counts = []
    for _ in range(2):
        method, props, _ = wait_until(channel.connection, lambda: _get(channel, work))
        counts.append(_count(props))
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert counts == [0, 1]
    [(_, props, _)] = wait_until(channel.connection, lambda: drain(channel, dlq), what="dlq")
    assert props.headers["x-first-death-reason"] == "delivery_limit"


@pytest.mark.parametrize("arg,value,reason", [
    ("x-delivery-limit", "three", '"expected integer, got longstr"'),
    ("x-delivery-limit", -1, "{value_negative,-1}"),
    ("x-delivery-limit", Decimal("1.5"), '"expected integer, got decimal"'),
    ("x-redelivery-initial-delay", -5, "{value_negative,-5}"),
    ("x-redelivery-initial-delay", "1s", '"expected integer, got longstr"'),
    ("x-redelivery-multiplier", -2, "{value_negative,-2}"),
    ("x-redelivery-multiplier", "x", '"expected number, got longstr"'),
    ("x-redelivery-max-delay", True, '"expected integer, got bool"'),
])
def test_bad_arguments_are_precondition_failed(broker, connection, unique, arg, value, reason):
    channel = connection.channel()
    channel.queue_declare(f"{unique}.stays", durable=True)
    channel.basic_publish("", f"{unique}.stays", b"kept", pika.BasicProperties(delivery_mode=2))
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, arguments={arg: value})
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{arg}' for queue '{unique}' in vhost '/': {reason}")
    channel = connection.channel()
    assert message_count(channel, f"{unique}.stays") == 1
    channel.queue_delete(f"{unique}.stays")
    assert "Traceback" not in broker.log()


@pytest.mark.parametrize("key,value,text", [
    ("delivery-limit", -1, "-1 is not a valid delivery limit"),
    ("delivery-limit", "5", "&lt;&lt;\"5\"&gt;&gt; is not a valid delivery limit"),
    ("redelivery-initial-delay", -1, "-1 is not a valid redelivery initial delay"),
    ("redelivery-multiplier", "2", "&lt;&lt;\"2\"&gt;&gt; is not a valid redelivery multiplier"),
    ("redelivery-max-delay", 1.5, "1.5 is not a valid redelivery max delay"),
])
def test_bad_policy_values_are_400(broker, unique, key, value, text):
    r = requests.put(f"{broker.http_url}/api/policies/%2F/{unique}", auth=("guest", "guest"),
                     json={"pattern": "^x$", "definition": {key: value}}, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "bad_request", "reason": f"Validation failed\n\n{text}\n"}
    assert requests.get(f"{broker.http_url}/api/policies/%2F/{unique}", auth=("guest", "guest"),
                        timeout=30).status_code == 404


def test_back_off_holds_a_returned_message_without_blocking_the_rest(channel, unique):
    # 1 s is far longer than handing over the message behind it takes
    channel.queue_declare(unique, arguments={"x-redelivery-initial-delay": 1000})
    channel.basic_publish("", unique, b"first")
    channel.basic_publish("", unique, b"second")
    got = []

    def on_message(ch, method, props, body):
        got.append((body, _count(props)))
        if body == b"first" and _count(props) is None:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)
    channel.basic_consume(unique, on_message)
    wait_until(channel.connection, lambda: len(got) == 3, timeout=30, what="three deliveries")
    assert got == [(b"first", None), (b"second", None), (b"first", 1)]


def test_held_messages_are_counted_and_purged(broker, channel, unique):
    channel.queue_declare(unique, arguments={"x-redelivery-initial-delay": 600000,
                                             "x-delivery-limit": 3})
    channel.basic_publish("", unique, b"held")
    method, _, _ = wait_until(channel.connection, lambda: _get(channel, unique))
    channel.basic_nack(method.delivery_tag, requeue=True)
    assert message_count(channel, unique) == 1
    assert channel.basic_get(unique)[0] is None     # held: not deliverable
    url = f"{broker.http_url}/api/queues/%2F/{unique}"
    q = requests.get(url, auth=("guest", "guest"), timeout=30).json()
    assert q["messages_redelivery_held"] == 1 and q["messages"] == 1
    assert q["arguments"]["x-redelivery-initial-delay"] == 600000
    assert q["delivery_limit"] == 3
    assert q["redelivery_back_off"] == {"initial_delay": 600000, "multiplier": 1,
                                        "max_delay": None}
    held = "rabbitmq_queue_messages_redelivery_held"
    per_queue = scrape(broker, "/metrics/per-object")[held]
    assert value(per_queue, held, vhost="/", queue=unique) == 1
    # the aggregated total comes from a sweep every few seconds
    eventually(lambda: value(scrape(broker)[held], held) >= 1, "the held total on /metrics")
    assert channel.queue_purge(unique).method.message_count == 1
    assert message_count(channel, unique) == 0
    eventually(lambda: requests.get(url, auth=("guest", "guest"), timeout=30).json()[
        "messages_redelivery_held"] == 0, "held count back to 0")
