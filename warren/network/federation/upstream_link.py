"""What exchange and queue links share: one :class:`~warren.network.link.Link` to the
upstream, moving its deliveries into this broker, acking per ``ack-mode``.

A link sets up its upstream objects in ``on_ready`` (subclasses' ``_setup``), which any refusal
by the upstream ends by taking the connection down; the Link reconnects after
``reconnect-delay`` and the status says ``error`` with the reason meanwhile.

Moving a message, as ``rabbit_federation_link_util:forward``: its properties are kept (the
``user_id`` dropped unless ``trust-user-id``), an ``x-received-from`` entry is prepended to its
headers, and it is published into this broker in-process. With ``on-confirm`` (the default)
the upstream delivery is acked only once this broker's store has it (``Broker.sync``), so a
crash of either side loses nothing and only what was in flight may arrive twice;
``on-publish`` acks once it was routed, ``no-ack`` consumes without acks. The prefetch bounds
the messages in flight.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed

from ...broker.broker import Broker
from ...model.errors import BrokerError
from ...model.message import Message, Properties
from ..channel import LinkChannel
from ..link import Link, LinkState
from .definition import Upstream
from .status import LinkStatus

log = logging.getLogger("warren.network.federation")


class UpstreamLink:
    kind = ""          # exchange | queue

    def __init__(self, broker: Broker, node: str, vhost: str, local_name: str,
                 upstream: Upstream, reactor: Any) -> None:
        self.broker = broker
        self.vhost = vhost
        self.local_name = local_name
        self.upstream = upstream
        self.reactor = reactor
        self.channel: LinkChannel | None = None
        self.forwarded = 0
        self.status = LinkStatus(node, vhost, self.kind, local_name, upstream.name,
                                 self.upstream_object, upstream.uris[0].redacted)
        self.link = Link(list(upstream.uris), self, name=self.describe(),
                         reconnect_delay=upstream.reconnect_delay or 1.0, reactor=reactor,
                         on_state=self._link_state)
        self._stopped = False

    @property
    def upstream_object(self) -> str:
        return self.upstream.exchange if self.kind == "exchange" else self.upstream.queue

    def describe(self) -> str:
        return (f"federation {self.kind} '{self.local_name}' in vhost '{self.vhost}' "
                f"<- upstream '{self.upstream.name}'")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.link.start()

    def stop(self, cleanup: bool) -> Deferred:
        """Stop for good; ``cleanup`` deletes what the link made upstream (the policy, the
        upstream or the local object is gone), as RabbitMQ's ``resource-cleanup-mode``."""
        self._stopped = True
        channel = self.channel
        if cleanup and channel is not None and channel.alive:
            d = self._cleanup(channel)
            d.addErrback(lambda _failure: None)
            return d.addBoth(lambda _: self.link.close())
        return self.link.close()

    def _cleanup(self, channel: LinkChannel) -> Deferred:
        return succeed(None)

    def _link_state(self, state: LinkState, reason: str) -> None:
        if self.link.uri is not None:
            self.status.uri = self.link.uri.redacted
        if state is LinkState.STARTING and reason:
            self.status.set("error", reason)

    # ------------------------------------------------------------------ LinkUser
    def on_ready(self, channel: LinkChannel) -> None:
        self.channel = channel
        self.status.local_connection = self.link.name
        # a local object deleted meanwhile raises here: an error status, and the component
        # stops this link on the deletion's event
        d = maybeDeferred(self._setup, channel)
        d.addCallbacks(lambda _: self._running(channel), lambda f: self._setup_failed(f))

    def _running(self, channel: LinkChannel) -> None:
        if channel is self.channel:
            self.status.set("running")
            log.info("%s: running", self.describe())

    def _setup_failed(self, failure: Any) -> None:
        # the refused call closed the channel: on_down follows and the Link reconnects
        self.status.set("error", failure.getErrorMessage())

    def on_down(self, reason: str) -> None:
        self.channel = None
        if not self._stopped:
            self.status.set("error", reason)

    def _setup(self, channel: LinkChannel) -> Deferred:
        raise NotImplementedError

    # ------------------------------------------------------------------ moving messages
    def received_from(self, event: Any) -> dict[str, Any]:
        """This link's ``x-received-from`` entry for one delivery."""
        raise NotImplementedError

    def forward(self, channel: LinkChannel, event: Any, exchange: str, routing_key: str,
                headers: dict[str, Any]) -> None:
        """Publish a delivery into this broker with ``headers``; ack per ack-mode."""
        props = dict(event.properties)
        props["headers"] = headers
        if not self.upstream.trust_user_id:
            props.pop("user_id", None)
        broker = self.broker
        ack_mode = self.upstream.ack_mode
        try:
            vh = broker.vhost(self.vhost)
            ex = vh.exchanges.get(exchange)
            if ex is None:
                raise BrokerError(f"no exchange '{exchange}' in vhost '{self.vhost}'")
            msg = Message(exchange, routing_key, event.body, codec=broker.codec,
                          props=Properties(**props))
            routed = vh.publish(ex, msg)
        except (BrokerError, TypeError) as error:
            log.warning("%s: cannot publish a message here: %s", self.describe(), error)
            return   # left unacked: the upstream redelivers it after the next reconnect
        if routed.rejected:
            return
        self.forwarded += 1
        if ack_mode == "no-ack":
            return
        if ack_mode == "on-publish" or not routed.stored:
            channel.ack(event.delivery_tag)
            return
        broker.sync().addCallbacks(lambda _: channel.ack(event.delivery_tag),
                                   lambda failure: log.warning(
                                       "%s: store failed: %s", self.describe(),
                                       failure.getErrorMessage()))

    def as_json(self) -> dict[str, Any]:
        return self.status.as_json()
