"""Bad queue and consumer arguments: 406 PRECONDITION_FAILED with RabbitMQ's texts."""

from __future__ import annotations

import pytest
from pika.exceptions import ChannelClosedByBroker

CASES = [
    ({"x-message-ttl": -1}, "x-message-ttl", "{value_negative,-1}"),
    ({"x-message-ttl": "60000"}, "x-message-ttl", '"expected integer, got longstr"'),
    ({"x-message-ttl": 4294967296}, "x-message-ttl", "{value_too_big,4294967296}"),
    ({"x-expires": 0}, "x-expires", "{value_zero,0}"),
    ({"x-expires": -10}, "x-expires", "{value_negative,-10}"),
    ({"x-max-length": -1}, "x-max-length", "{value_negative,-1}"),
    ({"x-max-length-bytes": "big"}, "x-max-length-bytes", '"expected integer, got longstr"'),
    ({"x-max-priority": 256}, "x-max-priority", "{max_value_exceeded,256}"),
    ({"x-max-priority": -3}, "x-max-priority", "{value_negative,-3}"),
    ({"x-overflow": "drop-tail"}, "x-overflow", "invalid_overflow"),
    ({"x-overflow": 1}, "x-overflow", "{unacceptable_type,long}"),
    ({"x-dead-letter-exchange": 5}, "x-dead-letter-exchange", "{unacceptable_type,long}"),
    ({"x-dead-letter-routing-key": "k"}, "x-dead-letter-routing-key",
     "routing_key_but_no_dlx_defined"),
    ({"x-single-active-consumer": "yes"}, "x-single-active-consumer",
     "{unacceptable_type,longstr}"),
    ({"x-queue-mode": "eager"}, "x-queue-mode", "\"unsupported queue mode 'eager'\""),
]


@pytest.mark.parametrize("args,key,reason", CASES, ids=[c[1] + ":" + c[2] for c in CASES])
def test_bad_queue_argument_is_406_naming_it(channel, unique, args, key, reason):
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.queue_declare(unique, arguments=args)
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg '{key}' for queue '{unique}' in vhost '/': {reason}")


def test_valid_arguments_are_accepted(channel, unique):
    channel.queue_declare(unique, arguments={
        "x-message-ttl": 0, "x-expires": 1000, "x-max-length": 0, "x-max-length-bytes": 0,
        "x-max-priority": 255, "x-overflow": "reject-publish-dlx",
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "k",
        "x-single-active-consumer": True, "x-queue-mode": "lazy", "x-custom": "kept"})


def test_bad_consumer_priority_is_406(channel, unique):
    channel.queue_declare(unique)
    with pytest.raises(ChannelClosedByBroker) as e:
        channel.basic_consume(unique, lambda *a: None, arguments={"x-priority": "high"})
    assert e.value.reply_code == 406
    assert e.value.reply_text == (
        f"PRECONDITION_FAILED - invalid arg 'x-priority' for queue '{unique}' in vhost '/': "
        '"expected integer, got longstr"')
