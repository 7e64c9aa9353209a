"""One broker for every AMQP 1.0 module that can share one (``broker``, package-scoped here
instead of per module): each test names its own queues (``unique``), and a broker start
costs more than most of these tests. Modules that need flags of their own (limits, time-outs,
a restart) still start a ``BrokerProcess`` of their own."""

from __future__ import annotations

import pytest

from tests.broker_process import BrokerProcess


@pytest.fixture(scope="package")
def broker(tmp_path_factory):
    with BrokerProcess(tmp_path_factory.mktemp("amqp1-broker")) as proc:
        yield proc
