"""Fixtures the stream tests share."""

from __future__ import annotations

import pytest

from tests.broker_process import BrokerProcess


@pytest.fixture
def private(tmp_path):
    """A broker of the test's own, for the tests that restart it (the rest share the
    shared ``broker``, with a stream name each)."""
    proc = BrokerProcess(tmp_path / "data").start()
    yield proc
    proc.stop()
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()
