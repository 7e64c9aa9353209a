"""A test-only runtime-parameter component, as RabbitMQ's own test suites register
``rabbit_runtime_parameters_test`` into the node under test.

Shovels and federation do not exist yet, and no built-in RabbitMQ component is small enough to
stand in for them honestly (``vhost-limits`` would need enforcing), so tests register this one:
in-process for the registry's unit tests, and in a broker subprocess through
``tests/webconsole/param_broker.py``. It accepts a JSON object ``{"n": <integer>}``, refuses
anything else with one error per problem, records what it is told and logs it, so a test
talking to a subprocess can wait for the log line (an event) of a notification.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("warren.tests.component")


class Recorder:
    def __init__(self, name: str = "test") -> None:
        self.name = name
        self.calls: list[tuple] = []
        self.users: list[Any] = []

    def validate(self, vhost: str, name: str, value: Any, user: Any) -> list[str]:
        self.users.append(user)
        if not isinstance(value, dict):
            return ["value must be a JSON object"]
        errors = [f"unknown key: {k}" for k in value if k != "n"]
        if not isinstance(value.get("n"), int) or isinstance(value.get("n"), bool):
            errors.append("n must be an integer")
        return errors

    def notify(self, vhost: str, name: str, value: Any) -> None:
        self.calls.append(("set", vhost, name, value))
        log.info("component %s: set vhost=%s name=%s value=%r", self.name, vhost, name, value)

    def notify_clear(self, vhost: str, name: str) -> None:
        self.calls.append(("clear", vhost, name))
        log.info("component %s: cleared vhost=%s name=%s", self.name, vhost, name)
