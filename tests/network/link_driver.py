"""Runs a :class:`~warren.network.link.Link` on a real reactor in its own process, for tests.

Twisted's reactor cannot be restarted inside one pytest process, so each test starts this
module (``python -m tests.network.link_driver [--reconnect-delay S] URI...``), sends it JSON
commands on stdin, one per line, and reads JSON lines from stdout:

- events as they happen: ``{"event": "state", "state", "reason", "failures"}``,
  ``{"event": "ready", "connects", "uri"}``, ``{"event": "down", "reason"}``;
- one reply per command: ``{"reply": <cmd>, ...}``.

Commands (run on the channel of the current connection):

- ``declare_queue {queue, durable, passive}`` -> ``{ok, message_count}`` or ``{error}``;
- ``publish {routing_key, exchange, count, size, properties, via}`` -> publishes ``count``
  bodies (``size`` bytes, each starting with its index) on the ``on_ready`` channel (or the
  Link itself with ``via="link"``; ``then_close`` closes the link right after) and replies
  once all are settled: ``{confirmed, nacked, failed: [reasons]}``;
- ``consume {queue, prefetch, count}`` -> acks each delivery, replies after ``count``:
  ``{bodies: [sha256…], properties: [first delivery's], redelivered: n}``;
- ``status`` -> ``Link.status()``; ``close`` -> closes the link, replies, exits.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys

from twisted.internet import defer, reactor, stdio
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from warren.network.channel import PublishNacked
from warren.network.link import Link


def body_for(index: int, size: int) -> bytes:
    head = f"{index}:".encode()
    return (head + b"x" * max(0, size - len(head)))[:max(size, len(head))]


def emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


class Driver:
    def __init__(self, uris: list[str], reconnect_delay: float) -> None:
        self.channel = None
        self.link = Link(uris, self, reconnect_delay=reconnect_delay, name="driver",
                         on_state=self.on_state)

    # -- LinkUser
    def on_ready(self, channel) -> None:
        self.channel = channel
        emit({"event": "ready", "connects": self.link.counters.connects,
              "uri": self.link.uri.redacted})

    def on_down(self, reason: str) -> None:
        self.channel = None
        emit({"event": "down", "reason": reason})

    def on_state(self, state, reason: str) -> None:
        emit({"event": "state", "state": state.value, "reason": reason,
              "failures": self.link.counters.failures})

    # -- commands
    def run(self, cmd: dict) -> defer.Deferred:
        name = cmd.pop("cmd")
        handler = getattr(self, "cmd_" + name)
        d = defer.maybeDeferred(handler, **cmd)
        d.addErrback(lambda f: {"error": f"{f.type.__name__}: {f.getErrorMessage()}"})
        d.addCallback(lambda result: emit({"reply": name, **result}))
        return d

    def cmd_status(self) -> dict:
        return self.link.status()

    def cmd_declare_queue(self, queue: str, durable: bool = False,
                          passive: bool = False) -> defer.Deferred:
        d = self.channel.declare_queue(queue, durable=durable, passive=passive)
        return d.addCallback(lambda ok: {"ok": True, "message_count": ok.message_count})

    def cmd_publish(self, routing_key: str, count: int, size: int = 10, exchange: str = "",
                    properties: dict | None = None, via: str = "channel",
                    then_close: bool = False) -> defer.Deferred:
        channel = self.link if via == "link" else self.channel
        result = {"confirmed": 0, "nacked": 0, "failed": []}

        def settled(outcome) -> None:
            if not isinstance(outcome, Failure):
                result["confirmed"] += 1
            elif outcome.check(PublishNacked):
                result["nacked"] += 1
            else:
                result["failed"].append(outcome.getErrorMessage())

        ds = []
        for i in range(count):
            d = channel.publish(exchange, routing_key, properties, body_for(i, size))
            d.addBoth(settled)
            ds.append(d)
        if then_close:       # in the same reactor turn, before any confirm can arrive
            ds.append(self.link.close())
        return defer.DeferredList(ds).addCallback(lambda _: result)

    def cmd_consume(self, queue: str, count: int, prefetch: int = 10) -> defer.Deferred:
        channel = self.channel
        done = defer.Deferred()
        got = {"bodies": [], "properties": [], "redelivered": 0}

        def on_delivery(delivery) -> None:
            got["bodies"].append(hashlib.sha256(delivery.body).hexdigest())
            if not got["properties"]:
                got["properties"].append(delivery.properties)
            got["redelivered"] += delivery.redelivered
            channel.ack(delivery.delivery_tag)
            if len(got["bodies"]) == count and not done.called:
                done.callback(got)

        channel.consume(queue, prefetch, on_delivery).addErrback(done.errback)
        return done

    def cmd_close(self) -> defer.Deferred:
        d = self.link.close()
        d.addCallback(lambda _: reactor.callLater(0, reactor.stop))
        return d.addCallback(lambda _: {"ok": True, **self.link.status()})


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def lineReceived(self, line: bytes) -> None:
        if line.strip():
            self.driver.run(json.loads(line))

    def connectionLost(self, reason=None) -> None:
        if reactor.running:   # the test went away: do not linger
            reactor.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("uris", nargs="+")
    parser.add_argument("--reconnect-delay", type=float, default=0.1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    driver = Driver(args.uris, args.reconnect_delay)
    stdio.StandardIO(Commands(driver))
    reactor.callWhenRunning(driver.link.start)
    reactor.run()


if __name__ == "__main__":
    main()
