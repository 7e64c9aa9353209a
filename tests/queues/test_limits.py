"""Length limits (RabbitMQ maxlength.html): x-max-length, x-max-length-bytes, x-overflow."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import NackError, UnroutableError

from .conftest import drain, message_count, wait_until


def test_max_length_drop_head_keeps_the_newest(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 3})
    for i in range(6):
        channel.basic_publish("", unique, str(i).encode())
    assert [b for _, _, b in drain(channel, unique)] == [b"3", b"4", b"5"]


def test_max_length_zero_keeps_nothing(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 0})
    channel.basic_publish("", unique, b"x")
    assert message_count(channel, unique) == 0


def test_max_length_bytes_counts_bodies(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc"):
        channel.basic_publish("", unique, body)
    assert [b for _, _, b in drain(channel, unique)] == [b"bbbb", b"cccc"]


def test_unacked_messages_do_not_count(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"1")
    method, _, _ = channel.basic_get(unique)
    channel.basic_publish("", unique, b"2")   # queue has 0 ready: accepted
    with pytest.raises(NackError):
        channel.basic_publish("", unique, b"3")


def test_reject_publish_nacks_confirming_publisher_without_return(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"1", mandatory=True)
    channel.basic_publish("", unique, b"2", mandatory=True)
    with pytest.raises(NackError) as e:
        channel.basic_publish("", unique, b"3", mandatory=True)
    # a nack, not a basic.return (UnroutableError would carry returned messages)
    assert not isinstance(e.value, UnroutableError)
    assert [b for _, _, b in drain(channel, unique)] == [b"1", b"2"]


def test_reject_publish_nacks_when_any_target_queue_rejects(channel, unique):
    ex = f"{unique}.fan"
    channel.exchange_declare(ex, "fanout")
    channel.queue_declare(f"{unique}.full", arguments={"x-max-length": 0,
                                                       "x-overflow": "reject-publish"})
    channel.queue_declare(f"{unique}.open")
    channel.queue_bind(f"{unique}.full", ex)
    channel.queue_bind(f"{unique}.open", ex)
    channel.confirm_delivery()
    with pytest.raises(NackError):
        channel.basic_publish(ex, "", b"m")
    assert message_count(channel, f"{unique}.open") == 1


def test_reject_publish_bytes_limit(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length-bytes": 5,
                                             "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"12345")
    with pytest.raises(NackError):
        channel.basic_publish("", unique, b"6")


def test_reject_publish_dlx_dead_letters_the_rejected(channel, unique):
    channel.exchange_declare(f"{unique}.dlx", "fanout")
    channel.queue_declare(f"{unique}.dlq")
    channel.queue_bind(f"{unique}.dlq", f"{unique}.dlx")
    channel.queue_declare(unique, arguments={"x-max-length": 1,
                                             "x-overflow": "reject-publish-dlx",
                                             "x-dead-letter-exchange": f"{unique}.dlx"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"kept")
    with pytest.raises(NackError):
        channel.basic_publish("", unique, b"refused")
    [(_, props, body)] = drain(channel, f"{unique}.dlq")
    assert body == b"refused"
    [death] = props.headers["x-death"]
    assert death["reason"] == "maxlen" and death["queue"] == unique
    assert [b for _, _, b in drain(channel, unique)] == [b"kept"]


def test_reject_publish_without_confirms_drops_silently(channel, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.basic_publish("", unique, b"1")
    channel.basic_publish("", unique, b"2")
    assert [b for _, _, b in drain(channel, unique)] == [b"1"]
