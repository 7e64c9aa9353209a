"""One broker for every AMQP 1.0 module that can share one (``broker``, package-scoped here
instead of per module): each test names its own queues (``unique``), and a broker start
costs more than most of these tests. Modules that need flags of their own (limits, time-outs,
a restart) still start a ``BrokerProcess`` of their own.

``amqp1`` is a python-qpid-proton blocking connection per test (a refused link's late events
must not reach another test); ``channel`` a pika channel per module, for setting up queues
and looking at them over 0-9-1 (a connection per test would cost more than the tests)."""

from __future__ import annotations

import pika
import pytest
from proton.utils import BlockingConnection

from tests.broker_process import BrokerProcess


@pytest.fixture(scope="package")
def broker(tmp_path_factory):
    with BrokerProcess(tmp_path_factory.mktemp("amqp1-broker")) as proc:
        yield proc


@pytest.fixture
def amqp1(broker):
    conn = BlockingConnection(f"amqp://guest:guest@127.0.0.1:{broker.amqp_port}",
                              allowed_mechs="PLAIN", timeout=30)
    yield conn
    conn.close()


@pytest.fixture(scope="module")
def channel(broker):
    conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
    yield conn.channel()
    conn.close()
