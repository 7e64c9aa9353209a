"""The AMQP tests' short name for the test's pika connection (``tests/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture
def conn(connection):
    return connection
