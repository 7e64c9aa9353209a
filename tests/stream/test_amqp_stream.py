"""Stream queues over AMQP 0-9-1 with pika, as RabbitMQ defines them (``rabbit_stream_queue``).

Declaration rules and their 406 texts, consumption from ``first`` / ``last`` / ``next`` / an
offset / a timestamp / an age, the ``x-stream-offset`` header on every delivery, independent
consumers, acks that only give credit back, and the refusals (no prefetch, no-ack, global
qos, basic.get, bad offsets), each leaving the broker log free of tracebacks.
"""

from __future__ import annotations

import datetime
import decimal

import pika
import pytest
import requests
from pika.exceptions import ChannelClosedByBroker, ConnectionClosedByBroker

STREAM = {"x-queue-type": "stream"}


@pytest.fixture
def channel(connection):
    ch = connection.channel()
    ch.confirm_delivery()
    return ch


def declare_stream(channel, name, **arguments):
    return channel.queue_declare(name, durable=True, arguments={**STREAM, **arguments})


def publish(channel, name, bodies):
    for body in bodies:
        channel.basic_publish("", name, body)


def consume(connection, name, count, offset=None, prefetch=10, tag=None):
    """``count`` deliveries from ``name`` as (body, x-stream-offset), acking each."""
    ch = connection.channel()
    ch.basic_qos(prefetch_count=prefetch)
    args = {} if offset is None else {"x-stream-offset": offset}
    got = []
    for method, props, body in ch.consume(name, arguments=args, inactivity_timeout=30):
        assert method is not None, f"only {len(got)} of {count} deliveries"
        got.append((body, props.headers["x-stream-offset"]))
        ch.basic_ack(method.delivery_tag)
        if len(got) == count:
            break
    ch.cancel()
    ch.close()
    return got


def no_traceback(broker):
    assert "Traceback" not in broker.log()


# ---------------------------------------------------------------- declaration
def test_declare_reports_stream_and_counts_messages(broker, channel, unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"a", b"b", b"c"])
    ok = channel.queue_declare(unique, passive=True)
    assert ok.method.message_count == 3
    r = requests.get(f"{broker.http_url}/api/queues/%2F/{unique}", auth=("guest", "guest"),
                     timeout=30)
    info = r.json()
    assert info["type"] == "stream"
    assert info["messages"] == 3
    assert info["stream"]["first_offset"] == 0
    assert info["stream"]["last_offset"] == 2
    assert info["stream"]["segments"] == 1
    assert info["committed_offset"] == 2


@pytest.mark.parametrize("durable,exclusive,auto_delete,prop", [
    (False, False, False, "non-durable"),
    (True, True, False, "exclusive-owner"),
    (True, False, True, "auto-delete"),
    (False, True, True, "auto-delete"),
])
def test_declare_refuses_what_a_stream_cannot_be(broker, channel, unique, durable, exclusive,
                                                 auto_delete, prop):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, durable=durable, exclusive=exclusive,
                              auto_delete=auto_delete, arguments=STREAM)
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid property '{prop}' for queue '{unique}' in vhost '/'")
    no_traceback(broker)


@pytest.mark.parametrize("args,reason", [
    ({"x-max-age": "7X"}, "invalid_max_age"),
    ({"x-max-age": "0D"}, "invalid_max_age"),
    ({"x-max-age": "h"}, "invalid_max_age"),
    ({"x-max-age": 10}, "{unacceptable_type,long}"),
    ({"x-stream-max-segment-size-bytes": -1}, "{value_negative,-1}"),
])
def test_bad_retention_arguments_are_406(broker, channel, unique, args, reason):
    key = next(iter(args))
    with pytest.raises(ChannelClosedByBroker) as e:
        declare_stream(channel, unique, **args)
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{unique}' in vhost '/': {reason}")
    no_traceback(broker)


def test_segment_size_over_rabbitmq_ceiling_is_406(broker, channel, unique):
    with pytest.raises(ChannelClosedByBroker) as e:
        declare_stream(channel, unique, **{"x-stream-max-segment-size-bytes": 3_000_000_001})
    assert e.value.reply_text == (
        "PRECONDITION_FAILED - Exceeded max value for x-stream-max-segment-size-bytes")


@pytest.mark.parametrize("age", ["7D", "1h", "30m", "10s", "1Y", "1M"])
def test_ages_as_rabbitmq_writes_them(channel, unique, age):
    declare_stream(channel, unique, **{"x-max-age": age})
    assert channel.queue_declare(unique, passive=True).method.message_count == 0


# ---------------------------------------------------------------- consumption
def test_first_reads_everything_with_offsets(connection, channel, unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"m%d" % i for i in range(25)])
    got = consume(connection, unique, 25, "first", prefetch=3)
    assert got == [(b"m%d" % i, i) for i in range(25)]


def test_offsets_are_read_again_by_every_consumer(connection, channel, unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"x", b"y"])
    assert consume(connection, unique, 2, "first") == [(b"x", 0), (b"y", 1)]
    assert consume(connection, unique, 2, "first") == [(b"x", 0), (b"y", 1)]
    assert channel.queue_declare(unique, passive=True).method.message_count == 2


def test_numeric_last_next_and_timestamp_offsets(connection, channel, unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"m%d" % i for i in range(10)])
    assert consume(connection, unique, 3, 7) == [(b"m7", 7), (b"m8", 8), (b"m9", 9)]
    assert consume(connection, unique, 1, "last") == [(b"m9", 9)]
    # an offset past the end waits at the end, like next
    ch = connection.channel()
    ch.basic_qos(prefetch_count=5)
    later = []
    ch.basic_consume(unique, lambda c, m, p, b: later.append((b, p.headers["x-stream-offset"])),
                     arguments={"x-stream-offset": "next"})
    publish(channel, unique, [b"new"])
    connection.process_data_events(time_limit=0)
    deadline = 300
    while not later and deadline:
        connection.process_data_events(time_limit=0.1)
        deadline -= 1
    assert later == [(b"new", 10)]
    # a timestamp before the first publish reads from the start; one in the future, nothing yet
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    assert consume(connection, unique, 11, past)[0] == (b"m0", 0)
    assert consume(connection, unique, 11, "1h")[-1] == (b"new", 10)


def test_consumers_read_independently(connection, channel, unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"m%d" % i for i in range(6)])
    a = connection.channel()
    b = connection.channel()
    for ch in (a, b):
        ch.basic_qos(prefetch_count=2)
    got_a, got_b = [], []

    def on_a(ch, m, p, body):
        got_a.append(p.headers["x-stream-offset"])
        ch.basic_ack(m.delivery_tag)

    def on_b(ch, m, p, body):
        got_b.append(p.headers["x-stream-offset"])   # never acked: stops at its prefetch

    a.basic_consume(unique, on_a, arguments={"x-stream-offset": "first"})
    b.basic_consume(unique, on_b, arguments={"x-stream-offset": 3})
    for _ in range(300):
        if len(got_a) == 6 and len(got_b) == 2:
            break
        connection.process_data_events(time_limit=0.1)
    assert got_a == [0, 1, 2, 3, 4, 5]
    assert got_b == [3, 4]   # prefetch 2 and no acks: credit, not data, is what acks move


# ---------------------------------------------------------------- refusals
def test_consume_without_prefetch_is_406(broker, connection, channel, unique):
    declare_stream(channel, unique)
    ch = connection.channel()
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume(unique, lambda *a: None)
    assert e.value.reply_code == 406
    assert e.value.reply_text == ("PRECONDITION_FAILED - consumer prefetch count is not set "
                                  f"for stream queue '{unique}' in vhost '/'")
    no_traceback(broker)


def test_auto_ack_is_540(broker, connection, channel, unique):
    declare_stream(channel, unique)
    ch = connection.channel()
    ch.basic_qos(prefetch_count=1)
    with pytest.raises(ConnectionClosedByBroker) as e:
        ch.basic_consume(unique, lambda *a: None, auto_ack=True)
    assert e.value.reply_code == 540
    assert e.value.reply_text == ("NOT_IMPLEMENTED - automatic acknowledgement not supported "
                                  f"by stream queue '{unique}' in vhost '/'")
    no_traceback(broker)


def test_purge_is_540(broker, connection, channel, unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"kept"])
    with pytest.raises(ConnectionClosedByBroker) as e:
        channel.queue_purge(unique)
    assert e.value.reply_code == 540
    assert e.value.reply_text == ("NOT_IMPLEMENTED - queue.purge not supported by stream "
                                  f"queues queue '{unique}' in vhost '/'")
    again = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    assert consume(again, unique, 1, "first") == [(b"kept", 0)]   # nothing was purged
    again.close()
    no_traceback(broker)


def test_negative_offset_reads_from_the_first(connection, channel, unique):
    """RabbitMQ 3.10.8 takes a negative x-stream-offset; it is before the log's start."""
    declare_stream(channel, unique)
    publish(channel, unique, [b"a", b"b"])
    assert consume(connection, unique, 2, -1) == [(b"a", 0), (b"b", 1)]


def test_basic_get_is_540(broker, connection, channel, unique):
    declare_stream(channel, unique)
    with pytest.raises(ConnectionClosedByBroker) as e:
        channel.basic_get(unique)
    assert e.value.reply_code == 540
    assert e.value.reply_text == ("NOT_IMPLEMENTED - basic.get not supported by stream queues "
                                  f"queue '{unique}' in vhost '/'")
    no_traceback(broker)


# RabbitMQ takes any typed value other than a string or timestamp as an offset and leaves
# osiris to fail on it; warren refuses what is not a non-negative integer at consume time.
@pytest.mark.parametrize("offset,reason", [
    ("yesterday", "invalid_max_age"),
    (decimal.Decimal("1.5"), "{invalid_offset_arg,decimal}"),
    ({"a": 1}, "{invalid_offset_arg,table}"),
    (True, "{invalid_offset_arg,bool}"),
])
def test_bad_offsets_are_406(broker, connection, channel, unique, offset, reason):
    declare_stream(channel, unique)
    publish(channel, unique, [b"kept"])
    ch = connection.channel()
    ch.basic_qos(prefetch_count=1)
    with pytest.raises(ChannelClosedByBroker) as e:
        ch.basic_consume(unique, lambda *a: None, arguments={"x-stream-offset": offset})
    assert e.value.reply_code == 406
    assert e.value.reply_text == ("PRECONDITION_FAILED - failed consuming from stream queue "
                                  f"'{unique}' in vhost '/': {reason}")
    assert consume(connection, unique, 1, "first") == [(b"kept", 0)]
    no_traceback(broker)


def test_per_object_metrics_show_offsets_size_and_consumer_lag(broker, connection, channel,
                                                              unique):
    declare_stream(channel, unique)
    publish(channel, unique, [b"m%d" % i for i in range(5)])
    ch = connection.channel()
    ch.basic_qos(prefetch_count=2)
    got = []
    ch.basic_consume(unique, lambda c, m, p, b: got.append(m), consumer_tag="lagging",
                     arguments={"x-stream-offset": "first"})
    while len(got) < 2:
        connection.process_data_events(time_limit=0.1)
    text = requests.get(f"{broker.http_url}/metrics/per-object", timeout=30).text
    # the exposition sorts labels by name
    where = f'queue="{unique}",vhost="/"'

    def value(name, consumer=None):
        labels = where if consumer is None else f'consumer="{consumer}",{where}'
        line = next(x for x in text.splitlines() if x.startswith(f"{name}{{{labels}}} "))
        return float(line.split()[-1])

    assert value("warren_stream_first_offset") == 0
    assert value("warren_stream_last_offset") == 4
    assert value("warren_stream_segments") == 1
    assert value("warren_stream_size_bytes") > 5 * 2
    assert value("warren_stream_consumer_offset", "lagging") == 2   # 2 delivered, none acked
    assert value("warren_stream_consumer_lag", "lagging") == 3
