"""Alternate exchanges (RabbitMQ ae.html) and exchange-to-exchange chains (e2e.html)."""

from __future__ import annotations

import pytest
from pika.exceptions import UnroutableError

from .conftest import drain


def test_unroutable_message_goes_to_the_alternate_exchange(channel, unique):
    channel.exchange_declare(f"{unique}.ae", "fanout")
    channel.queue_declare(f"{unique}.unrouted")
    channel.queue_bind(f"{unique}.unrouted", f"{unique}.ae")
    channel.exchange_declare(f"{unique}.main", "direct",
                             arguments={"alternate-exchange": f"{unique}.ae"})
    channel.queue_declare(f"{unique}.q")
    channel.queue_bind(f"{unique}.q", f"{unique}.main", routing_key="known")
    channel.basic_publish(f"{unique}.main", "known", b"routed")
    channel.basic_publish(f"{unique}.main", "other", b"stray")
    assert [b for _, _, b in drain(channel, f"{unique}.q")] == [b"routed"]
    [(m, _, body)] = drain(channel, f"{unique}.unrouted")
    assert body == b"stray" and m.exchange == f"{unique}.main" and m.routing_key == "other"


def test_mandatory_message_taken_by_alternate_is_not_returned(channel, unique):
    channel.exchange_declare(f"{unique}.ae", "fanout")
    channel.queue_declare(f"{unique}.unrouted")
    channel.queue_bind(f"{unique}.unrouted", f"{unique}.ae")
    channel.exchange_declare(f"{unique}.main", "direct",
                             arguments={"alternate-exchange": f"{unique}.ae"})
    channel.confirm_delivery()
    channel.basic_publish(f"{unique}.main", "nobody", b"m", mandatory=True)  # no raise


def test_alternate_that_routes_nowhere_returns_mandatory(channel, unique):
    channel.exchange_declare(f"{unique}.ae", "fanout")
    channel.exchange_declare(f"{unique}.main", "direct",
                             arguments={"alternate-exchange": f"{unique}.ae"})
    channel.confirm_delivery()
    with pytest.raises(UnroutableError):
        channel.basic_publish(f"{unique}.main", "nobody", b"m", mandatory=True)


def test_missing_alternate_exchange_is_ignored(channel, unique):
    channel.exchange_declare(f"{unique}.main", "direct",
                             arguments={"alternate-exchange": f"{unique}.missing"})
    channel.basic_publish(f"{unique}.main", "x", b"m")


def test_alternate_exchange_chain(channel, unique):
    """main -> ae1 (routes nothing) -> ae2 -> queue."""
    channel.exchange_declare(f"{unique}.ae2", "fanout")
    channel.exchange_declare(f"{unique}.ae1", "direct",
                             arguments={"alternate-exchange": f"{unique}.ae2"})
    channel.exchange_declare(f"{unique}.main", "direct",
                             arguments={"alternate-exchange": f"{unique}.ae1"})
    channel.queue_declare(f"{unique}.end")
    channel.queue_bind(f"{unique}.end", f"{unique}.ae2")
    channel.basic_publish(f"{unique}.main", "k", b"far")
    assert [b for _, _, b in drain(channel, f"{unique}.end")] == [b"far"]


def test_exchange_to_exchange_bindings_deliver_once_per_queue(channel, unique):
    channel.exchange_declare(f"{unique}.top", "topic")
    channel.exchange_declare(f"{unique}.fan", "fanout")
    channel.exchange_declare(f"{unique}.direct", "direct")
    channel.exchange_bind(f"{unique}.fan", f"{unique}.top", routing_key="a.*")
    channel.exchange_bind(f"{unique}.direct", f"{unique}.top", routing_key="#")
    channel.queue_declare(f"{unique}.q")
    channel.queue_bind(f"{unique}.q", f"{unique}.fan")
    channel.queue_bind(f"{unique}.q", f"{unique}.direct", routing_key="a.b")
    channel.queue_bind(f"{unique}.q", f"{unique}.top", routing_key="a.b")
    channel.basic_publish(f"{unique}.top", "a.b", b"once")
    channel.basic_publish(f"{unique}.top", "z", b"none")
    assert [b for _, _, b in drain(channel, f"{unique}.q")] == [b"once"]


def test_exchange_binding_cycle_terminates(channel, unique):
    channel.exchange_declare(f"{unique}.x1", "fanout")
    channel.exchange_declare(f"{unique}.x2", "fanout")
    channel.exchange_bind(f"{unique}.x2", f"{unique}.x1")
    channel.exchange_bind(f"{unique}.x1", f"{unique}.x2")
    channel.queue_declare(f"{unique}.q")
    channel.queue_bind(f"{unique}.q", f"{unique}.x2")
    channel.basic_publish(f"{unique}.x1", "", b"loop")
    assert [b for _, _, b in drain(channel, f"{unique}.q")] == [b"loop"]


def test_exchange_unbind_stops_the_chain(channel, unique):
    channel.exchange_declare(f"{unique}.src", "fanout")
    channel.exchange_declare(f"{unique}.dst", "fanout")
    channel.exchange_bind(f"{unique}.dst", f"{unique}.src")
    channel.queue_declare(f"{unique}.q")
    channel.queue_bind(f"{unique}.q", f"{unique}.dst")
    channel.basic_publish(f"{unique}.src", "", b"1")
    channel.exchange_unbind(f"{unique}.dst", f"{unique}.src")
    channel.basic_publish(f"{unique}.src", "", b"2")
    assert [b for _, _, b in drain(channel, f"{unique}.q")] == [b"1"]
