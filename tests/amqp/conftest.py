"""pika connection and channel on the module's broker, closed after each test."""

from __future__ import annotations

import pika
import pytest


@pytest.fixture
def conn(broker):
    c = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    yield c
    if c.is_open:
        c.close()


@pytest.fixture
def channel(conn):
    return conn.channel()
