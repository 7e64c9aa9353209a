"""Shared fixtures: a real broker per test module (journal store in a temp dir).

``broker`` is module-scoped to keep the suite fast; tests that need a private broker (crash,
restart, special limits) build their own ``BrokerProcess``. Every test uses unique queue and
exchange names (``unique``) so a shared broker never leaks state between tests.
"""

from __future__ import annotations

import uuid

import pytest

from tests.broker_process import BrokerProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    proc = BrokerProcess(tmp_path_factory.mktemp("broker"))
    proc.start()
    yield proc
    proc.stop()
    if proc.proc is not None and proc.proc.poll() is None:
        proc.kill()


@pytest.fixture
def unique(request):
    """A short unique name prefix for this test's queues and exchanges."""
    return f"t.{request.node.name[:40]}.{uuid.uuid4().hex[:8]}"
