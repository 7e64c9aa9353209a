"""A federated exchange's link to one upstream (``rabbit_federation_exchange_link``).

For local exchange X federated from upstream U, the link declares on U what RabbitMQ's does,
under RabbitMQ's names, so either broker can be RabbitMQ:

- U's exchange X (the upstream's ``exchange`` key, default X's name), of X's type and
  attributes; an existing one is used as it is (a passive declare on a spare channel comes
  first, as RabbitMQ's ``ensure_upstream_exchange``, so the link runs on its first
  connection whatever X is there);
- the queue ``federation: X -> <this cluster name>`` (``:<vhost>:<X>`` appended when the
  vhost or the exchange name differs), durable, with ``x-expires`` / ``x-message-ttl`` from
  ``expires`` / ``message-ttl`` and ``x-internal-purpose: federation``;
- the internal exchange ``<that queue name> A`` or ``... B`` (the suffix alternates on every
  connection: the new one is bound before the other one is deleted, so bindings of an
  earlier connection never linger and the queue is never without a route; a link's first
  connection completes "A" as it is before swapping, as an earlier run of this broker may
  have left either one active, and swaps at once when "A" is of another type), of type
  ``x-federation-upstream`` with ``x-max-hops``, ``x-downstream-name`` (this cluster name),
  ``x-downstream-vhost`` and ``x-internal-purpose``, bound to the queue (a ``fanout`` when
  the upstream refuses that type, and the link filters what arrives);
- one exchange-to-exchange binding from U's X to the internal exchange per distinct
  (routing key, arguments) that X has bindings for here, added and removed as X's bindings
  come and go. Each carries ``x-bound-from`` (cluster name, vhost, exchange, hops) so bindings
  propagate through a chain of federated exchanges only as far as messages can travel.

Only what someone here is bound for crosses the link. Deliveries are republished into X with
an ``x-received-from`` entry: ``uri`` (no credentials), ``exchange``, ``redelivered``,
``cluster-name`` (the upstream's, from its Connection.Start) and ``vhost``.
"""

from __future__ import annotations

import copy
from typing import Any

from twisted.internet.defer import Deferred, DeferredList

from ...exchange.federation_upstream import ROUTING_HEADER, already_seen, should_forward
from ...exchange.interface import freeze
from ..channel import LinkChannel, RemoteClosed
from ..client import Long
from ..link import closed_reason
from .upstream_link import UpstreamLink, log

BINDING_HEADER = "x-bound-from"


class ExchangeLink(UpstreamLink):
    kind = "exchange"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster_name = self.broker.node_name
        self.queue = self.upstream_queue_name()
        self.suffix = "A"          # the active internal exchange's suffix
        self._suffix_known = False  # False: an earlier run's may be active upstream
        self.upstream_cluster: str | None = None
        self._bindings: dict[Any, set[int]] = {}   # (key, args) -> ids of destinations
        self._ready_channel: LinkChannel | None = None
        self._fanout = False       # U lacks x-federation-upstream: internal exchange is fanout

    def upstream_queue_name(self) -> str:
        """``upstream_queue_name/3``: ``federation: <U's X> -> <cluster>[:<vhost>]:<X>``."""
        up_x = self.upstream.exchange
        up_vhost = self.upstream.uris[0].vhost
        if up_vhost == self.vhost:
            down = "" if up_x == self.local_name else f":{self.local_name}"
        else:
            down = f":{self.vhost}:{self.local_name}"
        return f"federation: {up_x} -> {self.cluster_name}{down}"

    @property
    def internal_exchange(self) -> str:
        return f"{self.queue} {self.suffix}"

    # ------------------------------------------------------------------ setup
    def _setup(self, channel: LinkChannel) -> Deferred:
        self._ready_channel = None
        self._bindings = {}
        cluster = channel.server_properties.get("cluster_name")
        self.upstream_cluster = cluster.decode() if isinstance(cluster, bytes) else cluster
        local = self.broker.vhost(self.vhost).exchange(self.local_name)
        up = self.upstream
        queue_args: dict[str, Any] = {}
        if up.expires is not None:
            queue_args["x-expires"] = up.expires
        if up.message_ttl is not None:
            queue_args["x-message-ttl"] = up.message_ttl
        queue_args["x-internal-purpose"] = "federation"
        no_ack = up.ack_mode == "no-ack"

        d = channel.declare_queue(self.queue, durable=True, arguments=queue_args)
        d.addCallback(lambda _: channel.consume(
            self.queue, up.prefetch, lambda event: self._delivered(channel, event),
            no_ack=no_ack))
        # ensure_upstream_exchange: U's X is looked up on a spare channel and declared only
        # when missing, so an X of another type or arguments there is used as it is
        d.addCallback(lambda _: self.link.declare_unless_found(
            lambda spare: spare.declare_exchange(up.exchange, local.type_name, passive=True),
            lambda: channel.declare_exchange(
                up.exchange, local.type_name, durable=local.durable,
                auto_delete=local.auto_delete, internal=local.internal,
                arguments=dict(local.arguments) or None)))
        if not self._suffix_known and not self._fanout:
            # this link's first connection: an earlier run of this broker may have left
            # either internal exchange active upstream, carrying messages right now.
            # Deleting it first would drop what is published meanwhile, so "A" is taken
            # as it is and completed, "B" dropped, and only then the usual swap (which
            # also clears bindings "A" kept of bindings gone while this link was down)
            self.suffix = "A"
            d.addCallback(lambda _: self._complete_first(channel))
        d.addCallback(lambda _: self._swap(channel))
        return d

    def _swap(self, channel: LinkChannel) -> Deferred:
        """Bind the other internal exchange afresh to X's bindings, then delete the active
        one: the queue is bound to one or both at every moment."""
        self._ready_channel = None      # binding events meanwhile: listed by _bind_all
        self._bindings = {}
        old_suffix, self.suffix = self.suffix, "B" if self.suffix == "A" else "A"
        ix = self.internal_exchange
        d = channel.delete_exchange(ix)
        d.addCallback(lambda _: self._declare_internal(channel))
        d.addCallback(lambda _: channel.bind(self.queue, ix))
        d.addCallback(lambda _: self._bind_all(channel))
        d.addCallback(lambda _: channel.delete_exchange(f"{self.queue} {old_suffix}"))
        d.addCallback(lambda _: setattr(self, "_suffix_known", True))
        return d

    def _declare_internal(self, channel: LinkChannel) -> Deferred:
        up = self.upstream
        if self._fanout:
            return channel.declare_exchange(
                self.internal_exchange, "fanout", durable=True, internal=True,
                auto_delete=True, arguments={"x-internal-purpose": "federation"})
        return channel.declare_exchange(
            self.internal_exchange, "x-federation-upstream", durable=True, internal=True,
            auto_delete=True, arguments={"x-max-hops": Long(up.max_hops),
                                         "x-downstream-name": self.cluster_name,
                                         "x-downstream-vhost": self.vhost,
                                         "x-internal-purpose": "federation"}
        ).addErrback(self._refused_type)

    def _complete_first(self, channel: LinkChannel) -> Deferred:
        """Take "A" as it is and bind it, dropping "B". "A" is declared on a spare channel:
        one of another type or attributes (a fanout left by a run whose upstream lacked the
        x-federation-upstream type) refuses it with PRECONDITION_FAILED without taking the
        link down, and the swap that follows makes a fresh "B" on this same connection."""
        def declared(_: Any) -> Deferred:
            d = channel.bind(self.queue, self.internal_exchange)
            d.addCallback(lambda _: self._bind_all(channel))
            return d.addCallback(lambda _: channel.delete_exchange(f"{self.queue} B"))

        def refused(failure: Any) -> Any:
            failure.trap(RemoteClosed)
            if failure.value.reply_code != 406:
                self.link.drop(closed_reason(failure.value))
                return failure
            self._suffix_known = True   # "A" cannot be taken as it is: swap at once
            return None
        return self.link.probe(self._declare_internal).addCallbacks(declared, refused)

    def _refused_type(self, failure: Any) -> Any:
        # an upstream without the type (RabbitMQ without its federation plugin) closes the
        # connection with COMMAND_INVALID; as RabbitMQ's link, fall back to a fanout and
        # filter here (should_forward in _delivered) from the next connection on
        if "COMMAND_INVALID" in failure.getErrorMessage():
            log.info("%s: the upstream has no x-federation-upstream type: using a fanout",
                     self.describe())
            self._fanout = True
        return failure

    def _bind_all(self, channel: LinkChannel) -> Deferred:
        vh = self.broker.vhost(self.vhost)
        ex = vh.exchanges.get(self.local_name)
        self._ready_channel = channel
        if ex is None:
            return DeferredList([])
        return DeferredList([d for b in list(ex.bindings)
                             if (d := self._binding_op(channel, b, add=True)) is not None],
                            fireOnOneErrback=True, consumeErrors=True)

    # ------------------------------------------------------------------ bindings
    def binding_changed(self, binding: Any, added: bool) -> None:
        """X got or lost a binding here (the component forwards the core's events)."""
        channel = self._ready_channel
        if channel is None or channel is not self.channel or not channel.alive:
            return      # not set up yet: the next setup lists X's bindings afresh
        d = self._binding_op(channel, binding, add=added)
        if d is not None:
            d.addErrback(lambda f: log.warning("%s: %s failed: %s", self.describe(),
                                               "bind" if added else "unbind",
                                               f.getErrorMessage()))

    def _binding_op(self, channel: LinkChannel, binding: Any, add: bool) -> Deferred | None:
        """``binding_op``: one upstream bind per distinct (key, args); bindings that carry
        ``x-bound-from`` (another link's) are passed on with one more entry."""
        args = binding.arguments or {}
        trail = args.get(BINDING_HEADER)
        if not isinstance(trail, list):
            key = (binding.routing_key, freeze(args))
            dests = self._bindings.setdefault(key, set())
            first = not dests
            if add:
                if id(binding.destination) in dests:
                    return None
                dests.add(id(binding.destination))
                if not first:
                    return None
            else:
                dests.discard(id(binding.destination))
                if dests:
                    return None
                self._bindings.pop(key, None)
                if first:
                    return None
        new_args = self._update_binding(args)
        if new_args is None:
            return None
        up_x = self.upstream.exchange
        if add:
            return channel.bind_exchange(self.internal_exchange, up_x, binding.routing_key,
                                         new_args)
        return channel.unbind_exchange(self.internal_exchange, up_x, binding.routing_key,
                                       new_args)

    def _update_binding(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """``update_binding``: count hops down from the most restrictive max-hops passed;
        at 0 (or back at the upstream it came from) the binding goes no further."""
        trail = args.get(BINDING_HEADER)
        max_hops = self.upstream.max_hops
        if isinstance(trail, list) and trail:
            prev = trail[0] if isinstance(trail[0], dict) else {}
            if self.upstream_cluster is not None and already_seen(
                    self.upstream_cluster, self.upstream.uris[0].vhost, trail):
                hops = 0
            else:
                hops = min(int(prev.get("hops", 0)) - 1, max_hops)
        else:
            hops = max_hops
        if hops <= 0:
            return None
        entry = {"cluster-name": self.cluster_name, "vhost": self.vhost,
                 "exchange": f"{self.vhost}:{self.local_name} {self.suffix}", "hops": hops}
        out = dict(args)
        out[BINDING_HEADER] = [entry] + (list(trail) if isinstance(trail, list) else [])
        return out

    # ------------------------------------------------------------------ messages
    def _delivered(self, channel: LinkChannel, event: Any) -> None:
        if channel is not self.channel:
            return
        headers = copy.copy(event.properties.get("headers") or {})
        # an upstream without federation (a fanout internal exchange) filters nothing
        if not should_forward(headers, self.upstream.max_hops, self.cluster_name, self.vhost):
            if self.upstream.ack_mode != "no-ack":
                channel.ack(event.delivery_tag)
            return
        previous = headers.get(ROUTING_HEADER)
        headers[ROUTING_HEADER] = [self.received_from(event)] + (
            list(previous) if isinstance(previous, list) else [])
        self.forward(channel, event, self.local_name, event.routing_key, headers)

    def received_from(self, event: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"uri": self.status.uri, "exchange": self.local_name,
                                 "redelivered": bool(event.redelivered)}
        if self.upstream_cluster is not None:
            entry["cluster-name"] = self.upstream_cluster
        entry["vhost"] = self.upstream.uris[0].vhost
        return entry

    # ------------------------------------------------------------------ stop
    def _cleanup(self, channel: LinkChannel) -> Deferred:
        d = channel.delete_queue(self.queue)
        d.addCallback(lambda _: channel.delete_exchange(self.internal_exchange))
        return d

    def as_json(self) -> dict[str, Any]:
        return self.status.as_json()
