"""The shovel worker on its own, with fake ends and a fake clock (no brokers)."""

from __future__ import annotations

import logging

from twisted.internet.defer import succeed
from twisted.internet.task import Clock

from warren.network.shovel.definition import ShovelDefinition
from warren.network.shovel.endpoint import Carried
from warren.network.shovel.worker import Shovel


class FakeSource:
    uri = "amqp://"

    def __init__(self, opened: list) -> None:
        self.opened = opened

    def open(self, deliver, lost):
        self.opened.append(deliver)
        return succeed(0)

    def consume(self):
        return succeed(None)

    def ack(self, tag) -> None: ...

    def requeue(self, tag) -> None: ...

    def close(self):
        return succeed(None)


class BrokenDestination:
    uri = "amqp://"
    writable = True

    def open(self, lost):
        return succeed(None)

    def publish(self, exchange, routing_key, properties, body, amqp1_sections=None):
        raise RuntimeError("boom")

    def close(self):
        return succeed(None)


def test_a_failing_publish_terminates_the_shovel_with_one_traceback_not_one_per_restart(
        caplog):
    clock = Clock()
    definition = ShovelDefinition.parse("/", "s", {
        "src-uri": "amqp://", "src-queue": "q", "dest-uri": "amqp://", "dest-queue": "d",
        "reconnect-delay": 1})
    opened: list = []
    shovel = Shovel(definition, node="n", reactor=clock,
                    make_source=lambda _s: FakeSource(opened),
                    make_destination=lambda _s: BrokenDestination(),
                    on_finished=lambda _s: None)
    caplog.set_level(logging.INFO, logger="warren.network.shovel")
    shovel.start()
    for round_ in range(3):
        assert shovel.state == "running"
        # the source's deliver callback must not raise into the source (a link, the core)
        opened[-1](Carried("", "q", {}, b"m", round_))
        assert (shovel.state, shovel.reason) == \
            ("terminated", "shovel failed: RuntimeError('boom')")
        clock.advance(1)     # reconnect-delay: it starts again
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]
    shovel.stop()
