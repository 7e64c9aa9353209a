"""AMQP 1.0 addresses read as RabbitMQ 4 reads them (v2 percent-encoded, v1 as written; a v1
exchange or topic address gives a receiver a queue of its own, a bare name is a queue declared
when missing)."""

from __future__ import annotations

import pytest

from warren.amqp1.addresses import Address, BadAddress, parse_address


@pytest.mark.parametrize("address, parsed", [
    ("/queues/orders", Address(queue="orders")),
    ("/queues/a%2Fb", Address(queue="a/b")),
    ("/exchanges/amq.direct/k", Address(exchange="amq.direct", key="k")),
    ("/exchanges/x%20y/a%2Fb", Address(exchange="x y", key="a/b")),
    ("/exchanges/amq.fanout", Address(exchange="amq.fanout", key="")),
    ("/amq/queue/orders", Address(queue="orders")),
    ("/exchange/amq.direct/k", Address(exchange="amq.direct", key="k", own_queue=True)),
    ("/exchange/amq.direct", Address(exchange="amq.direct", key=None, own_queue=True)),
    ("/topic/a.b", Address(exchange="amq.topic", key="a.b", own_queue=True)),
    ("orders", Address(queue="orders", declare=True)),
])
def test_addresses(address, parsed):
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", [None, "", "/queues/", "/queues/a/b",
                                     "/exchanges/", "/exchanges/amq.default/k", "/topic/",
                                     "/amq/queue/", "/nowhere/x", 42])
def test_bad_addresses(address):
    with pytest.raises(BadAddress):
        parse_address(address)
