"""pytest fixtures for suites that test their messaging code against a real warren.

Installed with warren as the ``pytest11`` entry point ``warren``, so a user's suite needs no
set-up beyond naming a fixture:

- ``warren_broker`` (session): one embedded ``Broker`` for the whole run, started the first
  time a test asks for it (a suite that never does starts nothing), stopped at the end.
- ``warren_vhost`` (per test): a fresh vhost on that broker with every permission for the
  broker's user, deleted after the test with whatever the test left in it: tests share one
  broker yet never see each other's queues, exchanges or messages.

The ini options ``warren_store`` (journal, sqlite, memory) and ``warren_args`` (more
``warren run`` flags) set up the session's broker. The fixtures' names start with ``warren_``
so that they never shadow a suite's own ``broker`` fixture (warren's own tests have one);
``-p no:warren`` turns the plugin off.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest

from warren.embedded import Broker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("warren_store", "store of the warren_broker fixture's broker: journal, "
                  "sqlite or memory", default="journal")
    parser.addini("warren_args", "more `warren run` flags for the warren_broker fixture's "
                  "broker", type="args", default=[])


@dataclass(frozen=True)
class Vhost:
    """The ``warren_vhost`` fixture's value: the vhost's ``name``, its ``amqp_url`` (the
    broker's user, %-encoded as RabbitMQ's URI rules say) and the ``broker`` it is on.

    STOMP clients name the vhost in CONNECT's ``host`` header (``stomp_host``); MQTT clients,
    having no such field, prefix the user name as RabbitMQ reads it (``mqtt_username``).
    """

    name: str
    amqp_url: str
    broker: Broker

    @property
    def username(self) -> str:
        return self.broker.username

    @property
    def password(self) -> str:
        return self.broker.password

    @property
    def stomp_host(self) -> str:
        return self.name

    @property
    def mqtt_username(self) -> str:
        return f"{self.name}:{self.broker.username}"


@pytest.fixture(scope="session")
def warren_broker(pytestconfig: pytest.Config) -> Iterator[Broker]:
    broker = Broker(store=pytestconfig.getini("warren_store"),
                    extra_args=pytestconfig.getini("warren_args"))
    with broker:
        yield broker


@pytest.fixture
def warren_vhost(warren_broker: Broker, request: pytest.FixtureRequest) -> Iterator[Vhost]:
    # the test's name makes the vhost recognisable in the console; the suffix makes it unique
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:40]
    name = f"test-{readable}-{uuid.uuid4().hex[:8]}"
    url = warren_broker.add_vhost(name)
    yield Vhost(name, url, warren_broker)
    warren_broker.delete_vhost(name, missing_ok=True)
