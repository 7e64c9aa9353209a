"""ActiveMQ-style network connectors (``[[network]]`` in the config file), on the same
machinery as shovels and federation: one :class:`~warren.network.link.Link` per connector,
core consumers of this broker's queues, publisher confirms on the far side.

Design: **push over the connector's own connection**, not "the peer pulls". A connector is
configured on A only, and a warren (or RabbitMQ) peer B has no way to be told, over AMQP 0-9-1,
to open a federation link back to A (it would need A's address and credentials, and a server
cannot open channels on a connection it accepted). So A does both halves itself, and the
connection A opened carries everything, which is also what ``duplex`` asks for:

- **topics out** (A to B): a durable queue ``network: <name> topics`` on A bound to
  ``amq.topic`` (so a persistent message waits on disk for B, across restarts) is consumed
  in-process; each message is published to B's ``amq.topic`` with its routing key, in
  confirm mode, and acked here only once B confirmed it (a message leaves A only once B has
  it). One queue per connector: one copy per peer however many subscriptions match
  (ActiveMQ's conduit subscriptions); B routes the copy to its own subscribers and
  connectors. The queue is bound only to what B is subscribed to (ActiveMQ's demand, which it
  learns from advisory topics): A declares on B an exclusive queue with the argument
  ``x-network-demand``, and every warren broker's connector component fills such a queue
  with a JSON list of ``{"key", "path"}``, again on every change: B's own ``amq.topic``
  subscriptions and other peers' duplex queues (path ``[B]``), plus exactly what the peers
  of B's other connectors asked B for (path ``[B, C, ...]``, the brokers the subscription is
  behind), so demand is exact however many hops away the subscriber is. A demand never goes
  to a broker in its path nor beyond the asking connector's ``network_ttl``, so it never
  circles a ring, and it goes away with its subscription (each broker recomputes it).
  The include and exclude patterns are applied to every message. A peer that is not warren
  (RabbitMQ) fills no demand queue: it gets every included topic.
- **queues out**: every included queue of A has a core consumer of priority -1 (-2 with
  ``decrease_network_consumer_priority``), so A's own consumers are served first
  (with ``conduit_subscriptions = false`` it is one consumer per consumer B has, so several
  peers share by their consumers, ActiveMQ's load balancing; topics keep one copy per peer
  either way, where ActiveMQ would send one per subscription, each a duplicate); it has
  credit only while B's queue of the same name (declared on B with the same attributes) has
  consumers and fewer than ``prefetch`` messages waiting, which the connector samples with a
  ``queue.declare`` every :data:`SAMPLE_INTERVAL`. Confirmed messages are acked here; a refused
  or lost publish goes back to A's queue.
- **duplex**: the same connection also brings B's messages here: an exclusive queue on B bound
  to B's ``amq.topic`` with this broker's demand (its subscriptions, and the includes of its
  connectors to other brokers, kept up to date as bindings change here), and, for each
  included queue, a consumer of B's queue (``x-priority`` -1) while this queue has idle
  consumers and no messages, as a federated queue. Deliveries are published into this
  broker and acked on B once stored here.

**No loops** (ActiveMQ's ``NetworkBridgeFilter``): every forwarded message carries the header
``x-network-path``, the names (``node_name``) of the brokers it left, oldest first. A message
is never sent to a broker in its path, and crosses at most ``network_ttl`` connectors. The
peer's name is its ``cluster_name`` from Connection.Start. Queue messages move (never copy), so
the path only keeps a message from going back to a broker it came from.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, FirstError, succeed
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from ..broker.broker import Broker
from ..broker.queue import Queue
from ..broker.vhost import VirtualHost
from ..config import Config
from ..model.errors import BrokerError
from ..model.message import Message, Properties, QueueEntry
from .channel import LinkChannel, LinkDown
from .connector_config import ConnectorDef, parse_connectors
from .link import Link, LinkState
from .shovel.local import properties_of

log = logging.getLogger("warren.network.connector")

COMPONENT = "network-connector"
PATH_HEADER = "x-network-path"
DEMAND_ARG = "x-network-demand"   # on a peer's demand queue: the asking broker's name
INTERNAL = {"x-internal-purpose": "network-connector"}
SAMPLE_INTERVAL = 0.2     # seconds between samples of the peer's queues and local demand
DEFAULT_VHOST = "/"


def demand_entries(items: list[Any], sender: str) -> dict[str, list[str]]:
    """A demand message's items: ``{"key": k, "path": [brokers]}``, or a bare key (its
    sender's own subscription)."""
    out: dict[str, list[str]] = {}
    for item in items:
        if isinstance(item, str):
            out[item] = [sender]
        elif isinstance(item, dict) and isinstance(item.get("key"), str):
            path = item.get("path")
            if isinstance(path, list) and path and all(isinstance(p, str) for p in path):
                out[item["key"]] = path
    return out


def topic_queue_name(connector: str) -> str:
    return f"network: {connector} topics"


def path_of(headers: Any) -> list[str]:
    raw = headers.get(PATH_HEADER) if isinstance(headers, dict) else None
    if not isinstance(raw, list):
        return []
    return [p.decode() if isinstance(p, bytes) else str(p) for p in raw]


def may_forward(path: list[str], here: str, peer: str | None, ttl: int) -> bool:
    """``NetworkBridgeFilter``: not to a broker it passed, and not beyond ``ttl`` hops."""
    if peer is None or peer in path or peer == here:
        return False
    return len(path) + 1 <= ttl


class _Forwarder:
    """A core consumer of one local queue that publishes what it gets to the peer."""

    no_ack = False
    exclusive = False

    def __init__(self, connector: NetworkConnector, queue: Queue, kind: str) -> None:
        self.connector = connector
        self.queue = queue
        self.kind = kind                     # topic | queue
        self.tag = f"network connector {connector.definition.name}"
        self.priority = -2 if connector.definition.decrease_network_consumer_priority else -1
        self.arguments: dict[str, Any] = {}
        self.in_flight = 0
        self.demand = kind == "topic"        # queues: the peer has consumers (sampled)
        self.remote_consumers = 0
        self.samples = 0                     # answers of the peer to the demand probe
        self.attached = False                # a consumer of the queue (queues: on demand)
        self.subscriptions: list[_Subscription] = []   # conduit_subscriptions = false
        if kind == "queue":
            self.accepts = self._accepts

    # -- core Consumer
    def has_credit(self) -> bool:
        c = self.connector
        # publishes the link holds (blocked, or a full socket buffer) count as in flight
        return (self.demand and c.ready_channel is not None
                and self.in_flight < c.definition.prefetch)

    def _accepts(self, queue: Queue, entry: QueueEntry) -> bool:
        c = self.connector
        return may_forward(path_of(entry.message.properties.headers), c.node, c.peer,
                           c.definition.network_ttl)

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        c = self.connector
        channel = c.ready_channel
        m = entry.message
        path = path_of(m.properties.headers)
        forward = may_forward(path, c.node, c.peer, c.definition.network_ttl)
        if self.kind == "topic" and not (forward and c.definition.wants("topic",
                                                                         m.routing_key)):
            queue.ack([entry])               # a topic copy that goes no further here
            return
        if channel is None or not forward:   # (has_credit and accepts keep this away)
            queue.requeue([entry])
            return
        props = dict(properties_of(m))
        headers = dict(props.get("headers") or {})
        headers[PATH_HEADER] = path + [c.node]
        props["headers"] = headers
        if self.kind == "topic":
            exchange, key = "amq.topic", m.routing_key
        else:
            exchange, key = "", queue.name
        self.in_flight += 1
        d = channel.publish(exchange, key, props, m.body)
        d.addCallbacks(lambda _: self._confirmed(queue, entry),
                       lambda f: self._refused(queue, entry, f))

    def _confirmed(self, queue: Queue, entry: QueueEntry) -> None:
        self.in_flight -= 1
        self.connector.forwarded_out += 1
        if not queue.deleted:
            queue.ack([entry])
            queue.dispatch()

    def _refused(self, queue: Queue, entry: QueueEntry, failure: Any) -> None:
        self.in_flight -= 1
        log.debug("%s: publish failed: %s", self.connector.describe(),
                  failure.getErrorMessage())
        if not queue.deleted:
            queue.requeue([entry])

    def cancelled(self, queue: Queue) -> None:
        self.connector.forwarders.pop((self.kind, queue.name), None)


class _Subscription:
    """One more remote consumer of a forwarded queue, with ``conduit_subscriptions =
    false``: ActiveMQ then gives every consumer behind the peer its own network
    subscription, so the queue's round robin counts each of them (a peer with two consumers
    gets twice the share of a peer with one) instead of the whole peer as one consumer.
    Deliveries go through the queue's forwarder, which bounds what is in flight."""

    no_ack = False
    exclusive = False

    def __init__(self, fwd: _Forwarder) -> None:
        self.fwd = fwd
        self.tag, self.priority = fwd.tag, fwd.priority
        self.arguments: dict[str, Any] = {}
        self.accepts = fwd.accepts

    def has_credit(self) -> bool:
        return self.fwd.has_credit()

    def deliver(self, queue: Queue, entry: QueueEntry) -> None:
        self.fwd.deliver(queue, entry)

    def cancelled(self, queue: Queue) -> None:
        pass


class NetworkConnector:
    """One ``[[network]]`` table: a Link to the peer and what moves over it."""

    def __init__(self, broker: Broker, node: str, definition: ConnectorDef, reactor: Any) -> None:
        self.broker = broker
        self.node = node
        self.definition = definition
        self.reactor = reactor
        self.peer: str | None = None
        self.channel: LinkChannel | None = None
        self.ready_channel: LinkChannel | None = None
        self.forwarders: dict[tuple[str, str], _Forwarder] = {}
        self.pulling: dict[str, bool] = {}      # duplex: queue -> consuming on the peer
        self._changing: set[str] = set()
        self.demand: set[str] = set()           # amq.topic keys the topic forwarder is bound to
        # what the peer asked for: key -> the brokers its subscription is behind (peer first)
        self.remote_demand: dict[str, list[str]] = {}
        self.pull_keys: set[str] = set()        # duplex: keys the peer's queue is bound to
        self.forwarded_out = 0
        self.forwarded_in = 0
        self.vhost_seen = False                 # its vhost existed when last looked for
        self.state = "starting"
        self.error = ""
        self.timestamp = time.localtime()
        self._stopped = False
        self.link = Link(list(definition.uris), self, name=self.describe(),
                         reconnect_delay=definition.reconnect_delay, reactor=reactor,
                         on_state=self._link_state)
        self._sampler = LoopingCall(self._sample)
        self._sampler.clock = reactor
        self.component: NetworkConnectors | None = None

    def describe(self) -> str:
        return f"network connector '{self.definition.name}'"

    def _set(self, state: str, error: str = "") -> None:
        if (state, error) != (self.state, self.error):
            self.timestamp = time.localtime()
        self.state, self.error = state, error

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._attach_all()
        self.link.start()
        self._sampler.start(SAMPLE_INTERVAL, now=False)

    def stop(self) -> Deferred:
        self._stopped = True
        if self._sampler.running:
            self._sampler.stop()
        for fwd in list(self.forwarders.values()):
            self._detach(fwd)
        self.forwarders.clear()
        return self.link.close()

    def _attach_all(self) -> None:
        vh = self.broker.vhosts.get(self.definition.vhost)
        if vh is None:
            log.warning("%s: no vhost '%s' here (yet): nothing to forward", self.describe(),
                        self.definition.vhost)
            return
        self.vhost_seen = True
        if self.definition.topic_keys() and ("topic", "") not in self.forwarders:
            # durable, under a name that outlives a restart: a persistent message confirmed
            # to its publisher here waits on disk for the peer, even across a kill -9
            queue = vh.queues.get(self.topic_queue)
            if queue is None:
                queue = vh.declare_queue(self.topic_queue, durable=True, auto_delete=False,
                                         check_reserved=False, arguments=dict(INTERNAL))
            # bound (again) to what the peer says it has subscriptions for (set_demand)
            self.demand = {b.routing_key for b in queue.bindings if b.source == "amq.topic"}
            self._attach(_Forwarder(self, queue, "topic"), ("topic", ""))
            if self.remote_demand:      # the peer spoke before the vhost was here
                self.set_demand(dict(self.remote_demand))
        for q in list(vh.queues.values()):
            self.queue_appeared(q)

    def queue_appeared(self, q: Queue) -> None:
        """Follow an included queue. Exclusive and auto-delete queues are left alone: a
        network consumer would keep one from being deleted with its last consumer."""
        old = self.forwarders.get(("queue", q.name))
        if (q.exclusive_owner is not None or q.auto_delete
                or "x-internal-purpose" in q.arguments
                or (old is not None and not old.queue.deleted)
                or not self.definition.wants("queue", q.name)):
            return
        self._attach(_Forwarder(self, q, "queue"), ("queue", q.name))

    def _attach(self, fwd: _Forwarder, key: tuple[str, str]) -> None:
        """Topics consume from the start; a queue only while the peer has consumers (so an
        exclusive consumer can have the queue meanwhile)."""
        self.forwarders[key] = fwd
        if fwd.kind == "topic":
            self._consume(fwd)

    def _consume(self, fwd: _Forwarder) -> bool:
        try:
            fwd.queue.add_consumer(fwd)
        except BrokerError as error:      # an exclusive consumer has it
            log.debug("%s: %s", self.describe(), error)
            return False
        fwd.attached = True
        return True

    @property
    def topic_queue(self) -> str:
        """This broker's queue of topic messages for the peer."""
        return topic_queue_name(self.definition.name)

    def _detach(self, fwd: _Forwarder) -> None:
        """Stop consuming; the topic queue stays with what it holds for the next start."""
        q = fwd.queue
        if q.deleted:
            return
        if fwd.attached:
            fwd.attached = False
            self._subscribe(fwd, 0)
            q.remove_consumer(fwd)

    def _link_state(self, state: LinkState, reason: str) -> None:
        if state is LinkState.STARTING and reason:
            self._set("error", reason)

    # ------------------------------------------------------------------ LinkUser
    def on_ready(self, channel: LinkChannel) -> None:
        self.channel = channel
        self.pulling = {}
        self._changing = set()
        peer = channel.server_properties.get("cluster_name")
        self.peer = peer.decode() if isinstance(peer, bytes) else peer
        if self.peer == self.node:
            self._set("error", f"the peer's node name is this broker's ({self.node}): the "
                               f"peer is this broker itself, or give each broker its own "
                               f"node_name")
            return
        d = self._setup_demand(channel)
        if self.definition.duplex:
            d.addCallback(lambda _: self._setup_duplex(channel))
        d.addCallbacks(lambda _: self._running(channel),
                       lambda f: self._set("error", f.getErrorMessage()))

    def _running(self, channel: LinkChannel) -> None:
        if channel is not self.channel:
            return
        self.ready_channel = channel
        self._set("running")
        if self.component is not None:
            self.component.send_demand()
        log.info("%s: running, peer %s", self.describe(), self.peer)
        for fwd in list(self.forwarders.values()):
            if not fwd.queue.deleted:
                fwd.queue.dispatch()

    def on_down(self, reason: str) -> None:
        self.channel = self.ready_channel = None
        self.pulling = {}
        if not self._stopped:
            self._set("error", reason)

    # ------------------------------------------------------------------ topic demand
    def _setup_demand(self, channel: LinkChannel) -> Deferred:
        """Ask a warren peer for its subscriptions: it fills the exclusive queue declared
        here with ``x-network-demand`` with the list of its ``amq.topic`` binding keys, again
        whenever they change. Another broker (RabbitMQ) gets every included topic."""
        if not self.definition.topic_keys():
            return succeed(None)
        product = channel.server_properties.get("product")
        if (product.decode() if isinstance(product, bytes) else product) != "warren":
            self.set_demand(self.definition.topic_keys())
            return succeed(None)
        name = f"network: {self.definition.name} demand -> {self.node}"
        d = channel.declare_queue(name, exclusive=True, auto_delete=True,
                                  arguments={**INTERNAL, DEMAND_ARG: self.node})
        d.addCallback(lambda _: channel.consume(
            name, 10, lambda event: self._demand_received(channel, event), no_ack=True))
        return d

    def _demand_received(self, channel: LinkChannel, event: Any) -> None:
        if channel is not self.channel:
            return
        try:
            items = json.loads(event.body)
        except ValueError:
            log.warning("%s: a demand message that is not JSON", self.describe())
            return
        if isinstance(items, list):
            self.set_demand(demand_entries(items, self.peer or ""))

    def set_demand(self, entries: list[str] | dict[str, list[str]]) -> None:
        """Bind the topic forwarder to exactly the keys the peer asks for (deliver() still
        applies include / exclude, so a wider key costs no wrong copy). ``entries``: key ->
        the brokers the subscription is behind, the peer first; only those within this
        connector's ``network_ttl`` count. Other peers hear of a change (send_demand)."""
        if not isinstance(entries, dict):
            entries = {k: [self.peer or ""] for k in entries}
        ttl = self.definition.network_ttl
        remote = {k: path for k, path in entries.items()
                  if len(path) <= ttl and self.node not in path}
        if remote != self.remote_demand and self.component is not None:
            self.component.send_demand()
        self.remote_demand = remote
        fwd = self.forwarders.get(("topic", ""))
        if fwd is None or fwd.queue.deleted:
            return
        wanted = set(remote)
        vh = fwd.queue.vhost
        for key in sorted(wanted - self.demand):
            vh.bind("amq.topic", fwd.queue, key)
        for key in sorted(self.demand - wanted):
            try:
                vh.unbind("amq.topic", fwd.queue, key)
            except BrokerError:
                pass
        self.demand = wanted

    # ------------------------------------------------------------------ duplex: peer to here
    def _setup_duplex(self, channel: LinkChannel) -> Deferred:
        """The queue on the peer that brings its topics here, bound to what this broker is
        subscribed to (the demand it would tell the peer if the peer had the connector)."""
        self.pull_keys = set()
        if not self.definition.topic_keys():
            return succeed(None)
        name = self.pull_queue
        d = channel.declare_queue(name, exclusive=True, auto_delete=True,
                                  arguments=dict(INTERNAL))
        d.addCallback(lambda _: self.refresh_pull(channel))
        d.addCallback(lambda _: channel.consume(
            name, self.definition.prefetch,
            lambda event: self._pulled(channel, event, "amq.topic", event.routing_key)))
        return d

    @property
    def pull_queue(self) -> str:
        return f"network: {self.definition.name} -> {self.node}"

    def refresh_pull(self, channel: LinkChannel | None = None) -> Deferred:
        """Bind the duplex queue on the peer to exactly this broker's current demand."""
        channel = channel or self.ready_channel
        if channel is None or not channel.alive or self.component is None \
                or not self.definition.duplex or not self.definition.topic_keys():
            return succeed(None)
        wanted = set(self.component.demand_keys(self.peer or "", self.definition.vhost))
        calls = [channel.bind(self.pull_queue, "amq.topic", k)
                 for k in sorted(wanted - self.pull_keys)]
        calls += [channel.unbind(self.pull_queue, "amq.topic", k)
                  for k in sorted(self.pull_keys - wanted)]
        self.pull_keys = wanted
        return DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)

    def _pulled(self, channel: LinkChannel, event: Any, exchange: str, key: str) -> None:
        if channel is not self.channel:
            return
        headers = dict(event.properties.get("headers") or {})
        path = path_of(headers)
        if exchange == "amq.topic" and (not may_forward(
                path, self.peer or "", self.node, self.definition.network_ttl)
                or not self.definition.wants("topic", key)):
            channel.ack(event.delivery_tag)   # a copy that came from here, or too far
            return
        headers[PATH_HEADER] = path + [self.peer]
        props = dict(event.properties)
        props["headers"] = headers
        broker = self.broker
        try:
            publisher = broker.publisher(self.definition.vhost, None)
            msg = Message(exchange, key, event.body, codec=broker.codec,
                          props=Properties(**props))
            routed = publisher.publish(publisher.exchange(exchange), msg)
        except (BrokerError, TypeError) as error:
            log.warning("%s: cannot publish here: %s", self.describe(), error)
            return   # unacked: the peer redelivers it after the next reconnect
        if routed.rejected:
            return
        self.forwarded_in += 1
        if not routed.stored:
            channel.ack(event.delivery_tag)
            return
        broker.sync().addCallback(lambda _: channel.ack(event.delivery_tag))

    # ------------------------------------------------------------------ sampling
    def _sample(self) -> None:
        channel = self.ready_channel
        if channel is None or channel is not self.channel or not channel.alive:
            return
        for fwd in list(self.forwarders.values()):
            # credit that came back without an ack of ours (a requeue): dispatch again
            if fwd.attached and not fwd.queue.deleted and fwd.queue.ready \
                    and fwd.has_credit():
                fwd.queue.dispatch()
        for (kind, name), fwd in list(self.forwarders.items()):
            if kind != "queue" or name in self._changing:
                continue
            if fwd.queue.deleted:
                self.forwarders.pop((kind, name), None)
                continue
            self._changing.add(name)
            q = fwd.queue
            d = channel.declare_queue(name, durable=q.durable, auto_delete=q.auto_delete,
                                      arguments=dict(q.arguments) or None)
            d.addCallbacks(lambda ok, f=fwd: self._sampled(channel, f, ok),
                           lambda failure, n=name: self._changing.discard(n))

    def _sampled(self, channel: LinkChannel, fwd: _Forwarder, ok: Any) -> None:
        name = fwd.queue.name
        self._changing.discard(name)
        if channel is not self.channel:
            return
        fwd.remote_consumers = ok.consumer_count
        fwd.samples += 1
        demand = ok.consumer_count > 0 and ok.message_count < self.definition.prefetch
        if demand and not fwd.attached and not fwd.queue.deleted:
            demand = self._consume(fwd)
        elif not demand and fwd.attached and fwd.in_flight == 0 and not fwd.queue.deleted:
            fwd.attached = False
            self._subscribe(fwd, 0)
            fwd.queue.remove_consumer(fwd)
        if fwd.attached and not self.definition.conduit_subscriptions:
            self._subscribe(fwd, max(0, ok.consumer_count - 1))
        if demand != fwd.demand:
            fwd.demand = demand
            if demand and not fwd.queue.deleted:
                fwd.queue.dispatch()
        if self.definition.duplex:
            self._pull_queue(channel, fwd)

    @staticmethod
    def _subscribe(fwd: _Forwarder, extra: int) -> None:
        """Keep ``extra`` subscriptions besides the forwarder itself on its queue."""
        q = fwd.queue
        while len(fwd.subscriptions) > extra:
            sub = fwd.subscriptions.pop()
            if not q.deleted:
                q.remove_consumer(sub)
        while len(fwd.subscriptions) < extra and not q.deleted:
            sub = _Subscription(fwd)
            try:
                q.add_consumer(sub)
            except BrokerError:     # an exclusive consumer came first
                return
            fwd.subscriptions.append(sub)

    def _local_demand(self, q: Queue) -> bool:
        if q.deleted or q.ready:
            return False
        return any(c.has_credit() for c in q.consumers
                   if not isinstance(c, (_Forwarder, _Subscription)))

    def _pull_queue(self, channel: LinkChannel, fwd: _Forwarder) -> None:
        name = fwd.queue.name
        want = self._local_demand(fwd.queue)
        consuming = self.pulling.get(name, False)
        tag = f"network-{self.definition.name}-{name}"
        if want and not consuming:
            self.pulling[name] = True
            channel.consume(name, self.definition.prefetch,
                            lambda event: self._pulled(channel, event, "", name),
                            consumer_tag=tag,
                            arguments={"x-priority": fwd.priority}
                            ).addErrback(lambda _f: self.pulling.pop(name, None))
        elif not want and consuming:
            self.pulling[name] = False
            channel.cancel(tag).addErrback(lambda _f: None)

    # ------------------------------------------------------------------ status
    def as_json(self) -> dict[str, Any]:
        d = self.definition
        out: dict[str, Any] = {
            "node": self.node, "vhost": d.vhost, "type": "connector", "name": d.name,
            "uri": (self.link.uri or d.uris[0]).redacted, "peer": self.peer,
            "duplex": d.duplex, "network_ttl": d.network_ttl,
            "conduit_subscriptions": d.conduit_subscriptions,
            "include": [p.text for p in d.include], "exclude": [p.text for p in d.exclude],
            "status": self.state, "forwarded_out": self.forwarded_out,
            "forwarded_in": self.forwarded_in,
            "demand": sorted(self.demand),
            "pull_demand": sorted(self.pull_keys),
            "queues": [{"name": n, "remote_consumers": f.remote_consumers,
                        "forwarding": f.demand, "samples": f.samples,
                        "subscriptions": (1 + len(f.subscriptions)) if f.attached else 0,
                        "in_flight": f.in_flight, "pulling": self.pulling.get(n, False)}
                       for (k, n), f in sorted(self.forwarders.items()) if k == "queue"],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S", self.timestamp),
        }
        if self.state == "error":
            out["error"] = self.error
        return out


class NetworkConnectors:
    """The ``network-connector`` component: every connector of the config file.

    Registered as a runtime-parameter component only so that the console and ``/metrics`` find
    it by name as they find federation; connectors are not runtime parameters and setting one
    is refused."""

    name = COMPONENT

    def __init__(self, broker: Broker, config: Config | None = None, reactor: Any = None) -> None:
        self.broker = broker
        self.reactor = reactor if reactor is not None else broker.clock
        self.node = getattr(config, "node_name", None) or broker.node_name
        self.connectors = [NetworkConnector(broker, self.node, d, self.reactor)
                           for d in parse_connectors(getattr(config, "network", []))]
        for c in self.connectors:
            c.component = self
        #: (vhost, queue) -> the name of the broker whose connector asks for this demand
        self.demand_queues: dict[tuple[str, str], str] = {}
        self._send_pending = False
        broker.subscribe(self._event)
        if self.connectors:
            self.reactor.callLater(0, self._start)

    def _start(self) -> None:
        self._drop_unconfigured()
        for connector in self.connectors:
            log.info("%s: starting (%s)", connector.describe(),
                     ", ".join(u.redacted for u in connector.definition.uris))
            connector.start()

    def _drop_unconfigured(self) -> None:
        """Delete the topic queues of connectors no longer in the config file: bound to
        ``amq.topic``, they would fill up for a peer nobody forwards to."""
        own = {(c.definition.vhost, c.topic_queue) for c in self.connectors}
        for vh in list(self.broker.vhosts.values()):
            self._drop_unconfigured_in(vh, own)

    @staticmethod
    def _drop_unconfigured_in(vh: VirtualHost, own: set[tuple[str, str]]) -> None:
        for q in list(vh.queues.values()):
            if (q.arguments.get("x-internal-purpose") == "network-connector"
                    and q.durable and q.name.startswith("network: ")
                    and q.name.endswith(" topics") and (vh.name, q.name) not in own):
                log.info("network connectors: deleting queue '%s' of a connector no longer "
                         "configured (%d messages)", q.name, q.message_count)
                vh.delete_queue(q.name)

    def _event(self, event: str, **info: Any) -> None:
        vhost: str = info.get("vhost", "")
        for connector in self.connectors:
            # its vhost was made after the start: the first thing done in it sets it up
            if connector.definition.vhost == vhost and not connector.vhost_seen \
                    and not connector._stopped:
                connector._attach_all()
        if event == "queue.created":
            vh = self.broker.vhosts.get(vhost)
            q = vh.queues.get(info["name"]) if vh is not None else None
            if q is None:
                return
            asking = q.arguments.get(DEMAND_ARG)
            if isinstance(asking, (str, bytes)):
                # a peer's connector asks what this vhost is subscribed to
                self.demand_queues[(vhost, q.name)] = asking.decode() \
                    if isinstance(asking, bytes) else asking
                self.send_demand()
                return
            for connector in self.connectors:
                if not connector._stopped and connector.definition.vhost == vhost:
                    connector.queue_appeared(q)
        elif event == "queue.deleted":
            self.demand_queues.pop((vhost, info["name"]), None)
            self.send_demand()      # its bindings leave the demand now (``_local_keys``)
        elif event in ("binding.created", "binding.deleted") \
                and info["binding"].source == "amq.topic":
            self.send_demand()

    # ------------------------------------------------------------------ demand for peers
    def demand_keys(self, asking: str, vhost: str = DEFAULT_VHOST) -> list[str]:
        return sorted(self.demand_of(asking, vhost))

    def demand_of(self, asking: str, vhost: str = DEFAULT_VHOST) -> dict[str, list[str]]:
        """What this broker wants of ``amq.topic`` messages of ``vhost``, for the peer
        ``asking``, as key -> the brokers the subscription is behind (this one first): the
        keys of its own subscriptions (and of other peers' duplex queues here), plus, in the
        connectors' vhost, what the peers of its other connectors asked for (messages it
        would pass on), exactly, however many hops away. A demand never goes to a broker it
        passed and never further than the asking connector's ``network_ttl`` (the asker
        drops longer paths), so in a ring it does not go round, and it goes away with its
        subscription: every broker recomputes it from what it has now."""
        out = {k: [self.node] for k in self._local_keys(asking, vhost)}
        for connector in self.connectors:
            if connector.peer is None or connector.peer == asking \
                    or connector.definition.vhost != vhost:
                continue
            for key, path in connector.remote_demand.items():
                if asking in path or (key in out and len(out[key]) <= len(path) + 1):
                    continue
                out[key] = [self.node] + path
        return out

    def _local_keys(self, asking: str, vhost: str) -> set[str]:
        vh = self.broker.vhosts.get(vhost)
        ex = vh.exchanges.get("amq.topic") if vh is not None else None
        keys: set[str] = set()
        own = {c.topic_queue for c in self.connectors}
        for binding in (ex.bindings if ex is not None else []):
            dest = binding.destination
            if getattr(dest, "deleted", False):
                # a deleted queue's bindings are removed a slice per turn after it is gone
                # (``VirtualHost.delete_queue``): its keys leave the demand at once
                continue
            args = getattr(dest, "arguments", None) or {}
            if args.get("x-internal-purpose") == "network-connector":
                if getattr(dest, "name", "") in own or \
                        getattr(dest, "name", "").endswith(f"-> {asking}"):
                    continue
            keys.add(binding.routing_key)
        return keys

    def send_demand(self) -> None:
        """Refresh every peer's demand queue on the next reactor turn (one message each)."""
        if self._send_pending:
            return
        if self.demand_queues or any(c.definition.duplex for c in self.connectors):
            self._send_pending = True
            self.reactor.callLater(0, self._send_demand)

    @staticmethod
    def _rebinding_failed(failure: Failure, connector: NetworkConnector) -> None:
        """Log why the duplex queue could not be rebound, in one line.

        A link that went down mid-rebind is no fault: the next link sets the queue up again
        from scratch (``pull_keys`` starts empty), so that case is silent.
        """
        if isinstance(failure.value, FirstError):
            failure = failure.value.subFailure
        if failure.check(LinkDown) or connector._stopped:
            return
        log.warning("%s: rebinding failed: %s", connector.describe(), failure.getErrorMessage())

    def _send_demand(self) -> None:
        self._send_pending = False
        for connector in self.connectors:
            if connector.definition.duplex and not connector._stopped:
                connector.refresh_pull().addErrback(self._rebinding_failed, connector)
        broker = self.broker
        for (vhost, queue), asking in list(self.demand_queues.items()):
            try:
                publisher = broker.publisher(vhost, None)
                body = json.dumps([{"key": k, "path": path} for k, path in
                                   sorted(self.demand_of(asking, vhost).items())]).encode()
                publisher.publish(publisher.exchange(""), Message(
                    "", queue, body, codec=broker.codec,
                    props=Properties(content_type="application/json")))
            except BrokerError as error:
                log.warning("network connectors: cannot send demand: %s", error)

    # ------------------------------------------------------------------ ParameterComponent
    def validate(self, vhost: str, name: str, value: Any, user: Any | None) -> list[str]:
        return ["network connectors are set in the config file ([[network]] tables)"]

    def notify(self, vhost: str, name: str, value: Any) -> None:
        pass

    def notify_clear(self, vhost: str, name: str) -> None:
        pass

    # ------------------------------------------------------------------ operations
    def status(self, vhost: str | None = None) -> list[dict[str, Any]]:
        return [c.as_json() for c in self.connectors
                if vhost is None or vhost == c.definition.vhost]

    def counters(self) -> list[dict[str, Any]]:
        return [{"name": c.definition.name, "peer": c.peer or "", "status": c.state,
                 "forwarded_out": c.forwarded_out, "forwarded_in": c.forwarded_in,
                 "failures": c.link.counters.failures} for c in self.connectors]

    def stop_all(self) -> Deferred:
        return DeferredList([c.stop() for c in self.connectors], consumeErrors=True)
