"""A federated queue's link to one upstream (``rabbit_federation_queue_link``).

Local queue Q federated from upstream U consumes U's queue (the upstream's ``queue`` key,
default Q's name, declared there with Q's attributes) only while Q has demand: a consumer
with credit and no message ready for it. Messages therefore move to where consumers are, and
local consumers are always served first (Q's own messages go before any pulled from U). The
upstream consumer has ``x-priority: -1`` and RabbitMQ's tag ``federation-link-<upstream>``, so
consumers on U itself are preferred there too.

Demand is followed by event: the link is one of Q's ``demand_watchers``, which the core calls
after every dispatch (a consumer came or went, took messages, or got credit back), and looks
again on the next reactor turn (one look per turn however many dispatches). Consuming starts
with ``basic.consume`` and stops with ``basic.cancel``; the prefetch bounds what arrives after
demand ends (those messages wait in Q for its consumers).

Each moved message is published to Q through the default exchange, with an
``x-received-from`` entry (``uri``, ``queue``, ``redelivered``, ``visit-count``) and, the first
time it moves, ``x-original-exchange`` / ``x-original-routing-key``.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.internet.defer import Deferred

from ...broker.queue import Queue
from ...exchange.federation_upstream import ROUTING_HEADER
from ..channel import LinkChannel
from .upstream_link import UpstreamLink, log


class QueueLink(UpstreamLink):
    kind = "queue"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.consuming = False       # basic.consume sent (and not cancelled)
        self._changing = False       # a consume or cancel waits for its reply
        self._look_pending = False   # a look at the demand is scheduled for the next turn
        self._watched: Any = None    # the local queue whose demand_watchers has us
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
        q = self.broker.vhost(self.vhost).queue(self.local_name)
        if self._watched is not q:
            self._unwatch()
            q.demand_watchers.append(self._demand_changed)
            self._watched = q
        self._sample()

    def _unwatch(self) -> None:
        q, self._watched = self._watched, None
        if q is not None and self._demand_changed in q.demand_watchers:
            q.demand_watchers.remove(self._demand_changed)

    def stop(self, cleanup: bool) -> Deferred:
        self._unwatch()
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

    def _demand_changed(self, queue: Queue) -> None:
        """The core's call from inside a dispatch: look on the next turn, once."""
        if not self._look_pending:
            self._look_pending = True
            self.reactor.callLater(0, self._sample)

    def _sample(self) -> None:
        self._look_pending = False
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
            self._sample()    # demand may have changed while the reply was on its way

    def _failed(self, failure: Any) -> None:
        log.debug("%s: consume/cancel failed: %s", self.describe(), failure.getErrorMessage())

    # ------------------------------------------------------------------ messages
    def _delivered(self, channel: LinkChannel, event: Any) -> None:
        if channel is not self.channel:
            return
        headers = copy.copy(event.properties.get("headers") or {})
        trail = headers.get(ROUTING_HEADER)
        entry = self.received_from(event)
        rest: list[object]   # the trail's other visits, as the header array holds them
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
