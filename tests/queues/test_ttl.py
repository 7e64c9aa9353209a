"""TTL (RabbitMQ ttl.html): per-queue x-message-ttl, per-message expiration, x-expires."""

from __future__ import annotations

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from .conftest import drain, message_count, wait_until


def test_queue_ttl_expires_messages(channel, unique):
    channel.queue_declare(unique, arguments={"x-message-ttl": 80})
    channel.basic_publish("", unique, b"a")
    assert message_count(channel, unique) == 1
    wait_until(channel.connection, lambda: message_count(channel, unique) == 0)
    assert drain(channel, unique) == []


def test_per_message_expiration(channel, unique):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"short", pika.BasicProperties(expiration="60"))
    channel.basic_publish("", unique, b"forever")
    wait_until(channel.connection, lambda: message_count(channel, unique) == 1)
    assert [b for _, _, b in drain(channel, unique)] == [b"forever"]


def test_short_ttl_behind_long_ttl_leaves_promptly(channel, unique):
    """Expiry is not only at the head: the 60 ms message behind a 1 h one goes on time."""
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"long", pika.BasicProperties(expiration="3600000"))
    channel.basic_publish("", unique, b"short", pika.BasicProperties(expiration="60"))
    channel.basic_publish("", unique, b"long2", pika.BasicProperties(expiration="3600000"))
    assert message_count(channel, unique) == 3
    wait_until(channel.connection, lambda: message_count(channel, unique) == 2, timeout=3)
    assert [b for _, _, b in drain(channel, unique)] == [b"long", b"long2"]


def test_lower_of_queue_and_message_ttl_applies(channel, unique):
    channel.queue_declare(unique, arguments={"x-message-ttl": 3600000})
    channel.basic_publish("", unique, b"m", pika.BasicProperties(expiration="50"))
    wait_until(channel.connection, lambda: message_count(channel, unique) == 0)


def test_expired_message_is_never_delivered_to_a_late_consumer(channel, unique):
    channel.queue_declare(unique, arguments={"x-message-ttl": 50})
    channel.basic_publish("", unique, b"old")
    wait_until(channel.connection, lambda: message_count(channel, unique) == 0)
    got = []
    channel.basic_consume(unique, lambda c, m, p, b: got.append(b), auto_ack=True)
    channel.basic_publish("", unique, b"new")
    wait_until(channel.connection, lambda: got)
    assert got == [b"new"]


def test_ttl_zero_reaches_a_waiting_consumer_only(channel, unique):
    channel.queue_declare(unique, arguments={"x-message-ttl": 0})
    channel.basic_publish("", unique, b"nobody")
    assert message_count(channel, unique) == 0
    got = []
    channel.basic_consume(unique, lambda c, m, p, b: got.append(b), auto_ack=True)
    channel.basic_publish("", unique, b"someone")
    wait_until(channel.connection, lambda: got)
    assert got == [b"someone"]


def test_requeued_message_past_its_ttl_expires(channel, unique):
    channel.queue_declare(unique, arguments={"x-message-ttl": 100})
    channel.basic_publish("", unique, b"m")
    method, _, _ = channel.basic_get(unique)
    # hold it past its TTL, then give it back: it must not come back to life
    channel.queue_declare(f"{unique}.clock", arguments={"x-message-ttl": 150})
    channel.basic_publish("", f"{unique}.clock", b"tick")
    wait_until(channel.connection, lambda: message_count(channel, f"{unique}.clock") == 0)
    channel.basic_nack(method.delivery_tag, requeue=True)
    wait_until(channel.connection, lambda: message_count(channel, unique) == 0)


def test_x_expires_deletes_an_unused_queue(channel, unique):
    channel.queue_declare(unique, arguments={"x-expires": 100})

    def gone():
        try:
            channel.queue_declare(unique, passive=True)
            return False
        except ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return True
    ch = channel
    deadline_channel = [ch]

    def probe():
        try:
            deadline_channel[0].queue_declare(unique, passive=True)
            return False
        except ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return True
        finally:
            if not deadline_channel[0].is_open:
                deadline_channel[0] = channel.connection.channel()
    wait_until(channel.connection, probe)


def test_x_expires_waits_while_a_consumer_exists(channel, unique):
    channel.queue_declare(unique, arguments={"x-expires": 60})
    tag = channel.basic_consume(unique, lambda *a: None, auto_ack=True)
    channel.queue_declare(f"{unique}.clock", arguments={"x-message-ttl": 150})
    channel.basic_publish("", f"{unique}.clock", b"tick")
    wait_until(channel.connection, lambda: message_count(channel, f"{unique}.clock") == 0)
    assert channel.queue_declare(unique, passive=True).method.consumer_count == 1
    channel.basic_cancel(tag)
    probe_ch = [channel]

    def gone():
        try:
            probe_ch[0].queue_declare(unique, passive=True)
            return False
        except ChannelClosedByBroker:
            probe_ch[0] = channel.connection.channel()
            return True
    wait_until(channel.connection, gone)


@pytest.mark.parametrize("expiration", ["abc", "-5"])
def test_invalid_expiration_is_a_406(channel, unique, expiration):
    channel.queue_declare(unique)
    channel.basic_publish("", unique, b"m", pika.BasicProperties(expiration=expiration))
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, passive=True)
    assert e.value.reply_code == 406
