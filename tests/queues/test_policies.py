"""Policies (RabbitMQ parameters.html) through ``warren ctl set_policy``: applied live."""

from __future__ import annotations

import json
import subprocess
import sys

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker, NackError

from .conftest import drain, message_count, wait_until


def ctl(broker, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "warren", "ctl", "--url", broker.http_url,
                           *args], capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctl {args} failed: {proc.stdout}{proc.stderr}")
    return proc


@pytest.fixture
def policy(broker, unique):
    """set_policy(pattern-suffix, definition, **opts); every policy made is cleared after."""
    made = []

    def set_policy(name, pattern, definition, priority=0, apply_to="all"):
        full = f"{unique}.{name}"
        ctl(broker, "set_policy", full, pattern, json.dumps(definition),
            "--priority", str(priority), "--apply-to", apply_to)
        made.append(full)
        return full
    yield set_policy
    for name in made:
        ctl(broker, "clear_policy", name, check=False)


def _rx(name):
    return "^" + name.replace(".", r"\.") + "$"


def test_dead_letter_exchange_by_policy(channel, policy, unique):
    channel.exchange_declare(f"{unique}.dlx", "fanout")
    channel.queue_declare(f"{unique}.dlq")
    channel.queue_bind(f"{unique}.dlq", f"{unique}.dlx")
    channel.queue_declare(f"{unique}.work")
    policy("dlx", _rx(f"{unique}.work"), {"dead-letter-exchange": f"{unique}.dlx"},
           apply_to="queues")
    channel.basic_publish("", f"{unique}.work", b"x")
    method, _, _ = channel.basic_get(f"{unique}.work")
    channel.basic_reject(method.delivery_tag, requeue=False)
    [(_, props, _)] = drain(channel, f"{unique}.dlq")
    assert props.headers["x-death"][0]["reason"] == "rejected"


def test_argument_dead_letter_exchange_wins_over_policy(channel, policy, unique):
    for name in ("arg", "pol"):
        channel.exchange_declare(f"{unique}.{name}", "fanout")
        channel.queue_declare(f"{unique}.{name}.q")
        channel.queue_bind(f"{unique}.{name}.q", f"{unique}.{name}")
    channel.queue_declare(f"{unique}.work", arguments={"x-dead-letter-exchange": f"{unique}.arg"})
    policy("dlx", _rx(f"{unique}.work"), {"dead-letter-exchange": f"{unique}.pol"})
    channel.basic_publish("", f"{unique}.work", b"x")
    method, _, _ = channel.basic_get(f"{unique}.work")
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert message_count(channel, f"{unique}.arg.q") == 1
    assert message_count(channel, f"{unique}.pol.q") == 0


def test_message_ttl_by_policy_applies_to_new_messages(channel, policy, unique):
    channel.queue_declare(unique)
    policy("ttl", _rx(unique), {"message-ttl": 60})
    channel.basic_publish("", unique, b"x")
    wait_until(channel.connection, lambda: message_count(channel, unique) == 0)


def test_max_length_by_policy_truncates_live_and_clearing_lifts_it(broker, channel, policy,
                                                                    unique):
    channel.queue_declare(unique)
    for i in range(5):
        channel.basic_publish("", unique, str(i).encode())
    name = policy("len", _rx(unique), {"max-length": 2})
    assert message_count(channel, unique) == 2
    ctl(broker, "clear_policy", name)
    for i in range(5, 8):
        channel.basic_publish("", unique, str(i).encode())
    assert [b for _, _, b in drain(channel, unique)] == [b"3", b"4", b"5", b"6", b"7"]


def test_stricter_of_argument_and_policy_limit(channel, policy, unique):
    channel.queue_declare(unique, arguments={"x-max-length": 3})
    policy("len", _rx(unique), {"max-length": 10})
    for i in range(5):
        channel.basic_publish("", unique, str(i).encode())
    assert message_count(channel, unique) == 3


def test_overflow_reject_publish_by_policy(channel, policy, unique):
    channel.queue_declare(unique)
    policy("ovf", _rx(unique), {"max-length-bytes": 4, "overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", unique, b"1234")
    with pytest.raises(NackError):
        channel.basic_publish("", unique, b"5")


def test_expires_by_policy_deletes_unused_queue(channel, policy, unique):
    channel.queue_declare(unique)
    policy("exp", _rx(unique), {"expires": 100})
    probe = [channel]

    def gone():
        try:
            probe[0].queue_declare(unique, passive=True)
            return False
        except ChannelClosedByBroker as e:
            assert e.reply_code == 404
            return True
    wait_until(channel.connection, gone)


def test_alternate_exchange_by_policy(channel, policy, unique):
    channel.exchange_declare(f"{unique}.ae", "fanout")
    channel.queue_declare(f"{unique}.stray")
    channel.queue_bind(f"{unique}.stray", f"{unique}.ae")
    channel.exchange_declare(f"{unique}.main", "direct")
    policy("ae", _rx(f"{unique}.main"), {"alternate-exchange": f"{unique}.ae"},
           apply_to="exchanges")
    channel.basic_publish(f"{unique}.main", "nobody", b"x")
    assert message_count(channel, f"{unique}.stray") == 1


def test_max_priority_by_policy(channel, policy, unique):
    channel.queue_declare(unique)
    policy("prio", _rx(unique), {"max-priority": 5})
    for p in (1, 5, 3):
        channel.basic_publish("", unique, str(p).encode(), pika.BasicProperties(priority=p))
    assert [b for _, _, b in drain(channel, unique)] == [b"5", b"3", b"1"]


def test_higher_priority_policy_wins(channel, policy, unique):
    channel.queue_declare(unique)
    policy("low", _rx(unique), {"max-length": 1}, priority=1)
    policy("high", _rx(unique), {"max-length": 3}, priority=5)
    for i in range(5):
        channel.basic_publish("", unique, str(i).encode())
    assert message_count(channel, unique) == 3


def test_policy_applies_to_queues_declared_later(channel, policy, unique):
    policy("len", "^" + unique.replace(".", r"\.") + r"\.later", {"max-length": 1})
    channel.queue_declare(f"{unique}.later")
    channel.basic_publish("", f"{unique}.later", b"1")
    channel.basic_publish("", f"{unique}.later", b"2")
    assert [b for _, _, b in drain(channel, f"{unique}.later")] == [b"2"]


def test_bad_policy_definition_is_refused(broker, unique):
    proc = ctl(broker, "set_policy", f"{unique}.bad", ".*", json.dumps({"message-ttl": -5}),
               check=False)
    assert proc.returncode != 0
    assert "message-ttl" in proc.stdout + proc.stderr
