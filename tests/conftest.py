"""Shared fixtures: a real broker per test module (journal store in a temp dir).

``broker`` is module-scoped to keep the suite fast; tests that need a private broker (crash,
restart, special limits) build their own ``BrokerProcess``. Every test uses unique queue and
exchange names (``unique``) so a shared broker never leaks state between tests.
``connection`` and ``channel`` are a pika connection to that broker and a channel on it, closed
after each test.
"""

from __future__ import annotations

import uuid

import pika
import pytest

from tests.broker_process import BrokerProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    with BrokerProcess(tmp_path_factory.mktemp("broker")) as proc:
        yield proc


@pytest.fixture
def unique(request):
    """A short unique name prefix for this test's queues and exchanges."""
    return f"t.{request.node.name[:40]}.{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    yield conn
    if conn.is_open:
        conn.close()


@pytest.fixture
def channel(connection):
    return connection.channel()
