"""One running shovel: take from the source, publish to the destination, ack per ack mode.

Ack modes, as RabbitMQ's shovel defines them:

``on-confirm`` (default)
    the source message is acked only after the destination confirmed it: nothing is lost
    when either end dies, and only messages in flight then can arrive twice.
``on-publish``
    acked as soon as it was handed to the destination.
``no-ack``
    consumed without acks: fastest, and what was in flight is lost with a failure.

The source's prefetch bounds the messages in flight, so a slow or blocked destination slows
the shovel and never grows memory: unconfirmed publishes hold source credit.

``delete-after`` (``queue-length`` = the messages in the source queue when the shovel
started, or a number) stops taking messages after that many and, once all of them are acked,
deletes the shovel's own parameter, as RabbitMQ does.

When either end is lost the whole shovel stops (the source takes its unacked messages back)
and starts again after ``reconnect-delay`` seconds; its status says ``terminated`` with the
reason meanwhile. A forward-headers shovel adds RabbitMQ's ``x-shovelled`` table (prepended to
any a previous shovel added) and ``x-shovelled-timestamp``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Callable

from twisted.internet.defer import Deferred, DeferredList

from ..channel import LinkDown
from ..properties import (
    MalformedProperties,
    RawProperties,
    decode_properties,
    with_forward_headers,
)
from .definition import ShovelDefinition
from .endpoint import Carried, Destination, Source

log = logging.getLogger("warren.network.shovel")


class Shovel:
    """The worker behind one ``shovel`` parameter; ``status()`` is RabbitMQ's status entry."""

    def __init__(self, definition: ShovelDefinition, *, node: str, reactor: Any,
                 make_source: Callable[["Shovel"], Source],
                 make_destination: Callable[["Shovel"], Destination],
                 on_finished: Callable[["Shovel"], None]) -> None:
        self.definition = definition
        self.node = node
        self.reactor = reactor
        self._make_source = make_source
        self._make_destination = make_destination
        self._on_finished = on_finished
        self.state = "starting"          # starting | running | terminated
        self.blocked_status = "running"  # running | blocked (destination pushes back)
        self.reason = ""
        self.timestamp = time.localtime()
        self.source: Source | None = None
        self.destination: Destination | None = None
        self.src_uri = definition.src_uris[0].redacted    # no credentials
        self.dest_uri = definition.dest_uris[0].redacted
        # counters (RabbitMQ 3.13's status fields, plus ours)
        self.forwarded = 0               # confirmed (or, without confirms, published) moves
        self.pending = 0                 # published, not yet confirmed
        # delete-after: messages still to take / still to move (None: no limit)
        self.remaining: int | None = None
        self.remaining_unacked: int | None = None
        self.restarts = 0
        self._generation = 0             # bumped by every stop: stale callbacks do nothing
        self._restart_call: Any = None
        self._stopped = False
        self.finished = False            # delete-after reached: the parameter is being cleared
        # one log line per change, not per retry: the last failure logged, "running" logged
        self._logged_reason = ""
        self._announced = False
        self._logged_error = ""          # the last failure logged with its traceback

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._stopped:
            return
        self._generation += 1
        generation = self._generation
        self._set_state("starting", "")
        self.pending = 0
        source = self.source = self._make_source(self)
        self.destination = self._make_destination(self)
        if hasattr(source, "may_take"):
            source.may_take = self._may_take
        lost = lambda reason: self._lost(generation, reason)  # noqa: E731
        # the source opens (and starts delivering) only once the destination is there
        d = self.destination.open(lost)
        d.addCallback(lambda _: self._open_source(generation, lost))
        d.addErrback(lambda failure: self._failed(generation, failure))

    def _open_source(self, generation: int, lost: Callable[[str], None]) -> Any:
        if generation != self._generation or self.source is None:
            return None
        d = self.source.open(lambda carried: self._deliver(generation, carried), lost)
        d.addCallback(lambda count: self._running(generation, count))
        return d

    def _running(self, generation: int, count: int) -> None:
        if generation != self._generation or self.source is None:   # as _open_source
            return
        after = self.definition.delete_after
        if after != "never":
            if self.remaining_unacked is None:
                self.remaining_unacked = count if after == "queue-length" else int(after)
            # what was taken but never moved went back to the source: take it again
            self.remaining = self.remaining_unacked
            if hasattr(self.source, "budget"):
                self.source.budget = self.remaining
        self._set_state("running", "")
        if not self._announced:
            self._announced = True
            log.info("shovel '%s' in vhost '%s' running: %s -> %s", self.definition.name,
                     self.definition.vhost, self.src_uri, self.dest_uri)
        # a local source may deliver (and a delivery fail) before consume() returns
        self.source.consume().addErrback(lambda failure: self._failed(generation, failure))
        if generation == self._generation:
            self._check_finished()

    def stop(self) -> Deferred:
        """Stop for good (parameter cleared): both ends closed, unacked messages returned."""
        self._stopped = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._restart_call = None
        return self._close_ends()

    def restart(self) -> None:
        """Stop and start again now (``DELETE /api/shovels/vhost/{vhost}/{name}/restart``)."""
        if self._stopped:
            return
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        self._restart_call = None
        self.restarts += 1
        self._close_ends().addCallback(lambda _: self.start())

    def _close_ends(self) -> Deferred:
        self._generation += 1
        ends = [e for e in (self.source, self.destination) if e is not None]
        self.source = self.destination = None
        closing = []
        for end in ends:
            try:
                closing.append(end.close())
            except Exception:  # one end failing to close must not keep the other open
                log.exception("closing a shovel end failed")
        return DeferredList(closing, consumeErrors=True)

    def _lost(self, generation: int, reason: str) -> None:
        if generation != self._generation or self._stopped:
            return
        self._terminate(reason)

    def _failed(self, generation: int, failure: Any) -> None:
        if generation != self._generation or self._stopped:
            return
        self._terminate(failure.getErrorMessage() or failure.type.__name__)

    def _terminate(self, reason: str) -> None:
        if self._logged_reason != reason:  # once per reason, not once per retry
            self._logged_reason, self._announced = reason, False
            log.warning("shovel '%s' in vhost '%s' terminated: %s; restarting every %gs",
                        self.definition.name, self.definition.vhost, reason,
                        self.definition.reconnect_delay)
        self._set_state("terminated", reason)
        self._close_ends()
        if not self._stopped:
            self.restarts += 1
            self._restart_call = self.reactor.callLater(self.definition.reconnect_delay,
                                                        self._restart_now)

    def _restart_now(self) -> None:
        self._restart_call = None
        self.start()

    def link_state(self, state: str, reason: str) -> None:
        """An end's link changed state (connecting failed, blocked by the server ...)."""
        if self._stopped:
            return
        if state == "blocked":
            self.blocked_status = "blocked"
        elif state == "running":
            self.blocked_status = "running"
            resume = getattr(self.source, "resume", None)
            if resume is not None:
                resume()  # a destination that unblocked takes messages again
        if reason and state == "starting" and self.state in ("starting", "terminated"):
            # a failed attempt (refused connection or login, a missing queue ...): as in
            # RabbitMQ, a shovel that cannot connect is terminated, with why, until it can
            self._set_state("terminated", reason)

    # ------------------------------------------------------------------ moving messages
    def _may_take(self) -> bool:
        """Flow control for an in-process source: at most a prefetch of publishes unconfirmed
        (also without acks, ``no-ack``), none while the destination pushes back."""
        dest = self.destination
        return (dest is not None and dest.writable
                and self.pending < self.definition.prefetch)

    def _deliver(self, generation: int, carried: Carried) -> None:
        """Called by the source (a link's delivery callback, or the core's queue dispatch):
        a failure here must stop this shovel only, and be logged once, not per restart."""
        try:
            self._forward(generation, carried)
        except Exception as error:
            reason = f"shovel failed: {error!r}"
            if reason != self._logged_error:
                self._logged_error = reason
                log.exception("shovel '%s' in vhost '%s' failed", self.definition.name,
                              self.definition.vhost)
            if generation == self._generation and not self._stopped:
                self._terminate(reason)

    def _forward(self, generation: int, carried: Carried) -> None:
        if generation != self._generation or self.destination is None:
            return
        d = self.definition
        if self.remaining is not None:
            if self.remaining <= 0:  # past delete-after (a prefetch's worth may come)
                if self.source is not None:
                    self.source.requeue(carried.tag)
                return
            self.remaining -= 1
        exchange, routing_key = d.dest_address(carried.exchange, carried.routing_key)
        props = self._outgoing_properties(carried.properties)
        source = self.source
        self.pending += 1
        # on-publish acks now, unless the destination pushes back: then the ack waits for the
        # confirm, so the source's prefetch bounds what piles up in front of a slow destination
        acked_now = d.ack_mode == "on-publish" and self.destination.writable
        published = self.destination.publish(exchange, routing_key, props, carried.body,
                                             carried.amqp1_sections)
        if acked_now and source is not None:
            source.ack(carried.tag)
            self._moved()
        published.addCallbacks(
            lambda _: self._confirmed(generation, source, carried.tag, acked_now),
            lambda failure: self._refused(generation, failure))

    def _confirmed(self, generation: int, source: Source | None, tag: Any,
                   acked: bool) -> None:
        self.pending = max(0, self.pending - 1)
        if generation != self._generation:
            return  # that connection is gone: the source takes the message back
        if self.definition.ack_mode != "no-ack" and not acked and source is not None:
            source.ack(tag)
            self._moved()
        elif self.definition.ack_mode == "no-ack":
            self._moved()
        resume = getattr(source, "resume", None)
        if resume is not None:
            resume()

    def _moved(self) -> None:
        self.forwarded += 1
        if self.remaining_unacked is not None:
            self.remaining_unacked -= 1
            self._check_finished()

    def _refused(self, generation: int, failure: Any) -> None:
        self.pending = max(0, self.pending - 1)
        if generation != self._generation or self._stopped:
            return
        if failure.check(LinkDown):   # the connection went: say why, it refused nothing
            self._terminate(failure.getErrorMessage())
            return
        self._terminate(f"destination refused a message: {failure.getErrorMessage()}")

    def _check_finished(self) -> None:
        if self.remaining_unacked is not None and self.remaining_unacked <= 0 \
                and not self._stopped and not self.finished:
            self.finished = True
            log.info("shovel '%s' in vhost '%s' moved what delete-after asked: deleting it",
                     self.definition.name, self.definition.vhost)
            self.reactor.callLater(0, self._on_finished, self)

    def _outgoing_properties(self, properties: dict[str, Any]) -> dict[str, Any]:
        d = self.definition
        if not (d.publish_properties or d.add_forward_headers or d.add_timestamp_header):
            return properties
        entry = None
        if d.add_forward_headers:
            entry = {"shovelled-by": self.node, "shovel-type": "dynamic",
                     "shovel-name": d.name, "shovel-vhost": d.vhost,
                     "src-uri": self.src_uri, "dest-uri": self.dest_uri,
                     **d.source_details(), **d.dest_details()}
        raw = properties.raw if isinstance(properties, RawProperties) else None
        if raw is not None and not d.publish_properties:
            # splice into the bytes received: other headers keep their exact encoding
            try:
                return decode_properties(with_forward_headers(
                    raw, entry, int(time.time()) if d.add_timestamp_header else None))
            except MalformedProperties:
                pass   # fall back to re-encoding the decoded properties
        props = dict(properties)
        props.update(d.publish_properties)
        if d.add_forward_headers or d.add_timestamp_header:
            headers = copy.copy(props.get("headers") or {})
            if entry is not None:
                previous = headers.get("x-shovelled")
                headers["x-shovelled"] = [entry] + (list(previous)
                                                    if isinstance(previous, list) else [])
            if d.add_timestamp_header:
                headers["x-shovelled-timestamp"] = int(time.time())
            props["headers"] = headers
        return props

    # ------------------------------------------------------------------ status
    def _set_state(self, state: str, reason: str) -> None:
        if (state, reason) != (self.state, self.reason):
            self.timestamp = time.localtime()
        self.state, self.reason = state, reason

    def status(self) -> dict[str, Any]:
        """One entry of ``GET /api/shovels`` (rabbit_shovel_mgmt_util's format)."""
        d = self.definition
        out: dict[str, Any] = {
            "node": self.node,
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", self.timestamp),
            "name": d.name, "vhost": d.vhost, "type": "dynamic",
        }
        # the ends are known before the shovel connects: the console's network picture
        # draws a shovel that cannot reach its peer too (an addition to RabbitMQ's fields)
        out.update(src_uri=self.src_uri, dest_uri=self.dest_uri)
        if self.state == "starting":
            out["state"] = "starting"
            if self.reason:
                out["reason"] = self.reason
            return out
        if self.state == "terminated":
            out.update(state="terminated", reason=self.reason)
            return out
        out["state"] = self.blocked_status
        out.update({
            "src_uri": self.src_uri, "src_protocol": "amqp091",
            "dest_protocol": "amqp091", "dest_uri": self.dest_uri,
            **{k.replace("-", "_"): v for k, v in d.source_details().items()},
            **{k.replace("-", "_"): v for k, v in d.dest_details().items()},
            "blocked_status": self.blocked_status,
            "forwarded": self.forwarded, "pending": self.pending,
        })
        if self.remaining is not None:
            out["remaining"] = self.remaining
            out["remaining_unacked"] = self.remaining_unacked
        return out

