"""A federated queue's link to one upstream (``rabbit_federation_queue_link``).

Local queue Q federated from upstream U consumes U's queue (the upstream's ``queue`` key,
default Q's name, declared there with Q's attributes) only while Q has demand: a consumer
with credit and no message ready for it. Messages therefore move to where consumers are, and
local consumers are always served first (Q's own messages go before any pulled from U). The
upstream consumer has ``x-priority: -1`` and RabbitMQ's tag ``federation-link-<upstream>``, so
consumers on U itself are preferred there too.

Demand is sampled every :data:`DEMAND_INTERVAL` seconds: the core has no "queue went idle"
event, and a sample costs two attribute reads. Consuming starts with ``basic.consume`` and
stops with ``basic.cancel``; the prefetch bounds what arrives after demand ends (those
messages wait in Q for its consumers).

Each moved message is published to Q through the default exchange, with an
``x-received-from`` entry (``uri``, ``queue``, ``redelivered``, ``visit-count``) and, the first
time it moves, ``x-original-exchange`` / ``x-original-routing-key``.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall

from ...exchange.federation_upstream import ROUTING_HEADER
from ..channel import LinkChannel
from .upstream_link import UpstreamLink, log

DEMAND_INTERVAL = 0.1   # seconds


class QueueLink(UpstreamLink):
    kind = "queue"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consuming = False       # basic.consume sent (and not cancelled)
        self._changing = False       # a consume or cancel waits for its reply
        self._sampler = LoopingCall(self._sample)
        self._sampler.clock = self.reactor
        self._ready_channel: LinkChannel | None = None

    def _setup(self, channel: LinkChannel) -> Deferred:
        self._ready_channel = None
        self.consuming = self._changing = False
        q = self.broker.vhost(self.vhost).queue(self.local_name)
        d = channel.declare_queue(self.upstream.queue, durable=q.durable,
                                  auto_delete=q.auto_delete,
                                  arguments=dict(q.arguments) or None)
        d.addCallback(lambda _: self._armed(channel))
        return d

    def _armed(self, channel: LinkChannel) -> None:
        self._ready_channel = channel
        if not self._sampler.running:
            self._sampler.start(DEMAND_INTERVAL, now=True)

    def stop(self, cleanup: bool) -> Deferred:
        if self._sampler.running:
            self._sampler.stop()
        # the upstream queue is the users' own: never deleted
        return super().stop(cleanup=False)

    def on_down(self, reason: str) -> None:
        self._ready_channel = None
        self.consuming = self._changing = False
        super().on_down(reason)

    # ------------------------------------------------------------------ demand
    def has_demand(self) -> bool:
        vh = self.broker.vhosts.get(self.vhost)
        q = vh.queues.get(self.local_name) if vh is not None else None
        return q is not None and not q.ready and q.consumers.any_credit()

    def _sample(self) -> None:
        channel = self._ready_channel
        if channel is None or channel is not self.channel or not channel.alive \
                or self._changing:
            return
        demand = self.has_demand()
        if demand and not self.consuming:
            self._changing = True
            d = channel.consume(self.upstream.queue, self.upstream.prefetch,
                                lambda event: self._delivered(channel, event),
                                no_ack=self.upstream.ack_mode == "no-ack",
                                consumer_tag=self.upstream.consumer_tag,
                                arguments={"x-priority": -1})
            d.addCallbacks(lambda _: self._changed(channel, True), self._failed)
        elif not demand and self.consuming:
            self._changing = True
            d = channel.cancel(self.upstream.consumer_tag)
            d.addCallbacks(lambda _: self._changed(channel, False), self._failed)

    def _changed(self, channel: LinkChannel, consuming: bool) -> None:
        if channel is self.channel:
            self.consuming = consuming
            self._changing = False

    def _failed(self, failure: Any) -> None:
        log.debug("%s: consume/cancel failed: %s", self.describe(), failure.getErrorMessage())

    # ------------------------------------------------------------------ messages
    def _delivered(self, channel: LinkChannel, event: Any) -> None:
        if channel is not self.channel:
            return
        headers = copy.copy(event.properties.get("headers") or {})
        trail = headers.get(ROUTING_HEADER)
        entry = self.received_from(event)
        if not isinstance(trail, list):
            headers["x-original-exchange"] = event.exchange
            headers["x-original-routing-key"] = event.routing_key
            count, rest = 0, []
        else:
            count, rest = 0, []
            for visit in trail:
                if isinstance(visit, dict) and visit.get("uri") == entry["uri"] \
                        and visit.get("queue") == entry["queue"]:
                    value = visit.get("visit-count")
                    count = value if isinstance(value, int) else 0
                else:
                    rest.append(visit)
        if "CC" in headers:
            headers["x-original-cc"] = headers.pop("CC")
        entry["visit-count"] = count + 1
        headers[ROUTING_HEADER] = [entry] + rest
        self.forward(channel, event, "", self.local_name, headers)

    def received_from(self, event: Any) -> dict[str, Any]:
        return {"uri": self.status.uri, "queue": self.local_name,
                "redelivered": bool(event.redelivered)}

    def as_json(self) -> dict[str, Any]:
        return self.status.as_json({"consumer_tag": self.upstream.consumer_tag})
