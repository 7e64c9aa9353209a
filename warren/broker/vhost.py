"""A virtual host: its exchanges, queues and bindings, and routing between them.

Declaration rules and error texts follow RabbitMQ (``rabbit_channel`` / ``rabbit_exchange`` /
``rabbit_amqqueue``), so clients written against RabbitMQ see the same 404/405/406/403s.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

from ..exchange.exchange import Exchange
from ..exchange.interface import Binding
from ..exchange.sharded_map import grown
from ..store.interface import resource_key
from . import delayed  # noqa: F401  (adds x-delayed-message to the exchange types)
from .arguments import QUEUE_ARGUMENTS
from .deadletter import dead_letter_copy, is_cycle
from ..model.errors import AccessRefused, NotFound, PreconditionFailed
from .jsonvalue import jsonable
from ..model.message import OVERHEAD, Message, QueueEntry
from .queue import Queue
from .replyto import ReplySubscription
from .stats import new_counts
from .queue_types import new_queue
from ..turn_slices import TurnRange

_new = object.__new__

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("warren.vhost")

STANDARD_EXCHANGES = (
    ("amq.direct", "direct"), ("amq.fanout", "fanout"), ("amq.topic", "topic"),
    ("amq.headers", "headers"), ("amq.match", "headers"),
)


#: ``Routed.rejected`` of every publish no queue refused: one object, nothing allocated
NO_QUEUES: tuple[Queue, ...] = ()


@dataclass(slots=True)
class Routed:
    """Outcome of routing one publish."""

    # queues that took the message (a direct reply-to requester that took it counts as one);
    # read only: it may be the exchange's own cached answer
    queues: Sequence[Queue | ReplySubscription] = field(default_factory=list)
    # reject-publish queues that were full (the shared empty tuple when none)
    rejected: Sequence[Queue] = NO_QUEUES
    stored: bool = False                                  # written to the store (await sync)

    @property
    def unroutable(self) -> bool:
        """No queue took it and none refused it: a mandatory publisher gets it back (312)."""
        return not self.queues and not self.rejected


class VirtualHost:
    """One namespace of exchanges, queues and bindings, and the routing between them.

    Declarations, deletions and (un)binds check RabbitMQ's rules and raise its errors here, so
    every protocol and the console get the same answer; :meth:`route` follows
    exchange-to-exchange bindings and alternate exchanges and enqueues a message once on each
    queue it reaches."""

    def __init__(self, broker: "Broker", name: str) -> None:
        # the default exchange routes by looking the queue up by name (see ``route``); its
        # implicit bindings exist only as a listing (``bindings``), never in its type
        self.broker = broker
        self.name = name
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self.default_exchange = Exchange(name, "", "direct", durable=True)
        self.exchanges[""] = self.default_exchange
        for ex_name, ex_type in STANDARD_EXCHANGES:
            self.exchanges[ex_name] = Exchange(name, ex_name, ex_type, durable=True)
        self.tracing = False
        self.description = ""                   # set by Broker.add_vhost, as the API shows it
        self.tags: list[str] = []
        # queues that admit only some messages routed to them (durable subscriptions with a
        # selector, broker/subscriptions.py): while 0, publish skips the check
        self.filtered_queues = 0
        # the Publisher whose message is being routed now (``Publisher.route`` sets it), or
        # None: what a stream names the writer of a chunk by
        self.publishing: Any = None
        # RabbitMQ's message_stats of this vhost, counted as they happen (stats.py)
        self.message_totals = new_counts()
        # deleted queues whose bindings are still being removed (``delete_queue``): while
        # not 0, publish and the listings skip deleted queues
        self.stale_queues = 0
        # the store key of each binding this vhost wrote to the store (durable source and
        # destination, no exclusive owner), by the binding: an unbind deletes the definition
        # by the key it was saved under, and one never saved (an MQTT client's bindings, most
        # of a big unbind) costs a dict miss, not a JSON encoding of its key per unbind; split
        # into shards once large (``sharded_map.grown``): a persistent MQTT session's 50,000
        # bindings grew it through a resize of 1-2 ms at the same bind as the session's dicts
        self.stored_bindings: MutableMapping[Binding, str] = {}

    # ---------------------------------------------------------------- lookups
    def exchange(self, name: str) -> Exchange:
        ex = self.exchanges.get(name)
        if ex is None:
            raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
        return ex

    def queue(self, name: str) -> Queue:
        q = self.queues.get(name)
        if q is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
        return q

    # ---------------------------------------------------------------- exchanges
    def declare_exchange(self, name: str, type_name: str, *, durable: bool = False,
                         auto_delete: bool = False, internal: bool = False,
                         arguments: dict[str, Any] | None = None, passive: bool = False,
                         check_reserved: bool = True) -> Exchange:
        arguments = dict(arguments or {})
        existing = self.exchanges.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no exchange '{name}' in vhost '{self.name}'")
            return existing
        if check_reserved and name.startswith("amq.") and existing is None:
            raise AccessRefused(
                f"exchange name '{name}' contains reserved prefix 'amq.*'")
        if existing is not None:
            if name == "" or existing.equivalent(type_name, durable, auto_delete, internal,
                                                 arguments):
                return existing
            raise PreconditionFailed(self._inequivalent_exchange(existing, type_name, durable,
                                                                 auto_delete, internal,
                                                                 arguments))
        ex = Exchange(self.name, name, type_name, durable=durable, auto_delete=auto_delete,
                      internal=internal, arguments=arguments)
        self.exchanges[name] = ex
        attach = getattr(ex.impl, "attach", None)   # types that need the vhost (delayed)
        if attach is not None:
            attach(self, ex)
        self.broker.policies_apply_exchange(self, ex)
        if durable:
            self.broker.save_definition("exchange", self._key(name), ex.definition())
        self.broker.emit("exchange.created", vhost=self.name, name=name)
        return ex

    def _inequivalent_exchange(self, ex: Exchange, type_name, durable, auto_delete,
                               internal, arguments=None) -> str:
        arguments = arguments or {}
        old: object
        new: object
        if ex.type_name != type_name:
            field_, old, new = "type", ex.type_name, type_name
        elif ex.durable != durable:
            field_, old, new = "durable", ex.durable, durable
        elif ex.auto_delete != auto_delete:
            field_, old, new = "auto_delete", ex.auto_delete, auto_delete
        elif ex.internal != internal:
            field_, old, new = "internal", ex.internal, internal
        else:
            new_ae, old_ae = (_text(a.get("alternate-exchange"))
                              for a in (arguments, ex.arguments))
            return (f"inequivalent arg 'alternate-exchange' for exchange '{ex.name}' in vhost "
                    f"'{self.name}': received {_describe(new_ae)} but current is "
                    f"{_describe(old_ae)}")
        fmt = (lambda v: str(v).lower()) if isinstance(old, bool) else str
        return (f"inequivalent arg '{field_}' for exchange '{ex.name}' in vhost '{self.name}': "
                f"received '{fmt(new)}' but current is '{fmt(old)}'")

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        if name == "" or name.startswith("amq."):
            raise AccessRefused("operation not permitted on the default exchange"
                                if name == "" else
                                f"exchange name '{name}' contains reserved prefix 'amq.*'")
        ex = self.exchange(name)
        if if_unused and ex.bindings and (not self.stale_queues or any(
                not getattr(b.destination, "deleted", False) for b in ex.bindings)):
            raise PreconditionFailed(f"exchange '{name}' in vhost '{self.name}' in use")
        # out of the table first: removing its last binding must not auto-delete it again
        del self.exchanges[name]
        for b in list(ex.bindings):
            self._remove_binding(b)
            ex.remove_binding(b)
        for b in list(ex.inbound):
            self._remove_binding(b)
        cancel_all = getattr(ex.impl, "cancel_all", None)  # held delayed messages go too
        if cancel_all is not None:
            cancel_all()
        if ex.durable:
            self.broker.save_definition("exchange", self._key(name), None)
        self.broker.emit("exchange.deleted", vhost=self.name, name=name)

    # ---------------------------------------------------------------- queues
    def new_queue_name(self) -> str:
        while True:
            name = "amq.gen-" + secrets.token_urlsafe(16)
            if name not in self.queues:
                return name

    def declare_queue(self, name: str, *, durable: bool = False, exclusive_owner: Any = None,
                      auto_delete: bool = False, arguments: dict[str, Any] | None = None,
                      passive: bool = False, connection: Any = None,
                      check_reserved: bool = True) -> Queue:
        """``check_reserved=False`` for names the server made (``amq.gen-…``)."""
        existing = self.queues.get(name)
        if passive:
            if existing is None:
                raise NotFound(f"no queue '{name}' in vhost '{self.name}'")
            existing.check_access(connection)
            return existing
        if check_reserved and name.startswith("amq.") and existing is None:
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        arguments = dict(arguments or {})
        if existing is not None:
            # rabbit_amqqueue:assert_equivalence: ownership first (405), then the fields
            existing.check_access(connection)
            existing.check_owner(exclusive_owner)
            self._check_equivalent(existing, durable, exclusive_owner, auto_delete, arguments)
            existing._touch()
            return existing
        self.broker.limits.check_queue(self, name)
        q = new_queue(self, name, durable=durable, exclusive_owner=exclusive_owner,
                      auto_delete=auto_delete, arguments=arguments)
        self.queues[name] = q
        self.broker.policies_apply_queue(self, q)
        if durable and exclusive_owner is None:
            self.broker.save_definition("queue", self._key(name), q.definition())
        self.broker.emit("queue.created", vhost=self.name, name=name)
        return q

    def _check_equivalent(self, q: Queue, durable: bool, exclusive_owner: Any,
                          auto_delete: bool, arguments: dict[str, Any]) -> None:
        def fail(field_: str, new: Any, old: Any) -> None:
            fmt = (lambda v: str(v).lower()) if isinstance(old, bool) else str
            raise PreconditionFailed(
                f"inequivalent arg '{field_}' for queue '{q.name}' in vhost '{self.name}': "
                f"received '{fmt(new)}' but current is '{fmt(old)}'")
        if q.durable != durable:
            fail("durable", durable, q.durable)
        if q.auto_delete != auto_delete:
            fail("auto_delete", auto_delete, q.auto_delete)
        # RabbitMQ compares the x- arguments it knows about; others are ignored
        for key in QUEUE_ARGUMENTS:
            new, old = arguments.get(key), q.arguments.get(key)
            if isinstance(new, bytes):
                new = new.decode()
            if new != old and not (key == "x-queue-type" and {new, old} <= {None, "classic"}):
                raise PreconditionFailed(
                    f"inequivalent arg '{key}' for queue '{q.name}' in vhost '{self.name}': "
                    f"received {_describe(new)} but current is {_describe(old)}")

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False,
                     connection: Any = None, reason: str = "deleted") -> int:
        q = self.queue(name)
        if connection is not None:
            q.check_access(connection)
        if if_unused and q.consumers:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and q.message_count:
            raise PreconditionFailed(f"queue '{name}' in vhost '{self.name}' is not empty")
        # a queue's bindings are removed a turn's budget at a time (a clean-session MQTT
        # client with 50,000 subscriptions disconnecting: 0.8 s of CPU in one turn); the
        # queue is gone at once, and until its last binding is removed the routes that still
        # reach it are skipped (``stale_queues``) and a bind that finds one replaces it
        bindings: list[Binding | None] = list(q.bindings)
        left = self._unbind_slice(q, bindings, 0)
        del self.queues[name]
        count = q.on_deleted()
        if left < len(bindings):
            self.stale_queues += 1
            self.broker.clock.callLater(0, self._unbind_rest, q, bindings, left)
        if q.durable and q.exclusive_owner is None:
            self.broker.save_definition("queue", self._key(name), None)
        self.broker.emit("queue.deleted", vhost=self.name, name=name, reason=reason)
        return count

    def _unbind_slice(self, q: Queue, bindings: list[Binding | None], start: int) -> int:
        """Remove the bindings of ``q`` from ``start`` until the turn's deadline; the index
        the next slice starts at. One removed meanwhile (its exchange deleted, a bind that
        replaced it) is skipped. Each is let go of as it is reached: kept in the list until
        the last slice, 50,000 bindings were freed together in that one step (13-15 ms)."""
        # the clock read every 8: a binding's removal is 15-30 us, 64 of them ran a
        # millisecond or two past the deadline
        part = TurnRange(start, len(bindings), every=8)
        held = q.bindings
        for i in part:
            b, bindings[i] = bindings[i], None
            if b is not None and b in held:
                self._remove_binding(b)
        return part.next

    def _unbind_rest(self, q: Queue, bindings: list[Binding | None], start: int) -> None:
        left = self._unbind_slice(q, bindings, start)
        if left < len(bindings):
            self.broker.clock.callLater(0, self._unbind_rest, q, bindings, left)
        else:
            self.stale_queues -= 1

    # ---------------------------------------------------------------- bindings
    def bind(self, source: str, destination: Queue | Exchange, routing_key: str,
             arguments: dict[str, Any] | None = None) -> Binding:
        if source == "":
            raise AccessRefused(
                "operation not permitted on the default exchange")
        ex = self.exchange(source)
        binding = Binding(source, destination, routing_key, dict(arguments or {}))
        key = binding.key
        found = ex.find_binding(key)
        if found is not None:
            if found.destination is destination or not getattr(found.destination, "deleted",
                                                                 False):
                return found
            self._remove_binding(found)   # of a deleted queue of the same name, not yet gone
        ex.add_binding(binding, key)
        if isinstance(destination, Exchange):
            destination.inbound.add(binding, key)
        else:
            destination.bindings.add(binding, key)
        if ex.durable and destination.durable and not getattr(destination, "exclusive_owner",
                                                             None):
            skey = self.stored_bindings[binding] = self._binding_key(binding)
            self.stored_bindings = grown(self.stored_bindings)
            self.broker.save_definition("binding", skey, self._binding_definition(binding))
        self.broker.emit("binding.created", vhost=self.name, binding=binding)
        return binding

    def unbind(self, source: str, destination: Queue | Exchange, routing_key: str,
               arguments: dict[str, Any] | None = None) -> None:
        if source == "":
            raise AccessRefused("operation not permitted on the default exchange")
        ex = self.exchange(source)
        probe = Binding(source, destination, routing_key, dict(arguments or {}))
        found = ex.find_binding(probe.key)
        if found is not None:
            self._remove_binding(found)
        # RabbitMQ answers unbind-ok for a binding that does not exist

    def _remove_binding(self, b: Binding) -> None:
        ex = self.exchanges.get(b.source)
        if ex is not None:
            ex.remove_binding(b)
        dest = b.destination
        (dest.bindings if dest.kind == "queue" else dest.inbound).discard(b)
        skey = self.stored_bindings.pop(b, None)
        if skey is not None:
            self.broker.save_definition("binding", skey, None, only_if_known=True)
        self.broker.emit("binding.deleted", vhost=self.name, binding=b)
        if ex is not None and ex.auto_delete and not ex.bindings and ex.name in self.exchanges:
            self.delete_exchange(ex.name)

    def bindings(self) -> list[Binding]:
        out: list[Binding] = []
        for q in self.queues.values():
            out.append(Binding("", q, q.name))
        for ex in self.exchanges.values():
            if ex.name:
                out.extend(ex.bindings)
        if self.stale_queues:
            out = [b for b in out if not getattr(b.destination, "deleted", False)]
        return out

    # ---------------------------------------------------------------- routing
    def route(self, exchange: Exchange, message: Message) -> list[Queue]:
        """Queues for a message: through e2e bindings and alternate exchanges, no duplicates."""
        if message.cc is not None:
            return self._route_cc(exchange, message)
        if exchange is self.default_exchange:
            q = self.queues.get(message.routing_key)
            return [q] if q is not None else []
        dests = exchange.impl.route(message)   # Exchange.route without its extra frame
        if len(dests) == 1 and dests[0].kind == "queue":
            # the usual case: one binding to one queue. The exchange's answer is read, never
            # changed, by everyone after it (a binding change makes a new list)
            return dests
        return self._follow(exchange, dests, message)

    def _follow(self, exchange: Exchange, dests: list[Any], message: Message) -> list[Queue]:
        """``route`` past the exchange's own answer *dests*: exchange-to-exchange bindings
        and alternate exchanges, each queue once."""
        queues: dict[int, Queue] = {}
        visited = {id(exchange)}
        stack: list[Exchange] = []
        ex = exchange
        while True:
            matched = False
            for d in dests:
                matched = True
                if d.kind == "queue":
                    queues[id(d)] = d
                else:
                    stack.append(d)
            if not matched and ex.alternate is not None:
                ae = self.exchanges.get(ex.alternate)
                if ae is not None:
                    stack.append(ae)
            while stack:
                ex = stack.pop()
                if id(ex) not in visited:
                    break
            else:
                return list(queues.values())
            visited.add(id(ex))
            dests = ex.route(message)

    def _route_cc(self, exchange: Exchange, message: Message) -> list[Queue]:
        """RabbitMQ's sender-selected distribution: the queues of the routing key and of each
        key in ``message.cc``, each queue once. Each key routes a stand-in message (the rare
        case: the usual one pays one attribute test)."""
        queues: dict[int, Queue] = {}
        for key in (message.routing_key, *(message.cc or ())):
            for q in self.route(exchange, message.with_changes(routing_key=key)):
                queues.setdefault(id(q), q)
        return list(queues.values())

    def publish(self, exchange: Exchange, message: Message) -> Routed:
        """Route and enqueue one message; persistent messages go to the store first."""
        if message.cc is None and exchange is not self.default_exchange:
            # ``route``'s usual case read here: one Python call less per message
            queues = exchange.impl.route(message)
            if len(queues) != 1 or queues[0].kind != "queue":
                queues = self._follow(exchange, queues, message)
        else:
            queues = self.route(exchange, message)
        if self.stale_queues and queues:
            queues = [q for q in queues if not q.deleted]
        if self.filtered_queues and queues:
            queues = [q for q in queues if q.admits is None or q.admits(message)]
        if not queues:
            return Routed()
        for q in queues:
            if q.overflow != "drop-head":
                break
        else:
            # no queue can refuse it: no overflow checks, nothing rejected. The answer is
            # made bare (Routed's dataclass __init__ is one more Python call per message)
            routed = _new(Routed)
            routed.queues = queues
            routed.rejected = NO_QUEUES
            q = queues[0]
            if len(queues) == 1 and not q.own_log:
                # _enqueue's usual case in line (one queue keeping no log of its own): one
                # Python call less per message
                broker = self.broker
                if not message.id:
                    message.id = next(broker.message_ids)
                if message.persistent and q.journaled and broker.store is not None:
                    broker.store_publish(message, [q.store_key])
                    routed.stored = True
                else:
                    routed.stored = False
                # broker.track in line: the checks it makes only when memory passes a mark
                size = len(message.body)
                used = broker.memory_used + size + OVERHEAD
                broker.memory_used = used
                broker.body_bytes += size
                if used > broker.memory_high or used - broker.index_bytes > broker.pager.budget:
                    broker.after_growth()
                q.enqueue(message)
            else:
                routed.stored = self._enqueue(message, queues)
            return routed
        rejected: list[Queue] = []
        targets = []
        for q in queues:
            if q.would_overflow(message):
                rejected.append(q)
                if q.overflow == "reject-publish-dlx" and q.dlx is not None:
                    self.dead_letter(q, QueueEntry(message, 0), "maxlen")
            else:
                targets.append(q)
        if not targets:
            return Routed([], rejected)
        return Routed(targets, rejected, self._enqueue(message, targets))

    def _enqueue(self, message: Message, targets: list[Queue]) -> bool:
        """Store (when persistent and some target is durable), account, enqueue everywhere."""
        broker = self.broker
        if not message.id:
            message.id = next(broker.message_ids)
        stored = False
        if message.persistent and broker.store is not None:
            if len(targets) == 1:
                durable = [targets[0].store_key] if targets[0].journaled else None
            else:
                durable = [q.store_key for q in targets if q.journaled]
            if durable:
                broker.store_publish(message, durable)
                stored = True
        first = targets[0]
        if not (first.own_log and (len(targets) == 1 or all(q.own_log for q in targets))):
            broker.track(message)   # held in memory by a queue (streams keep their own logs)
        for q in targets:
            q.enqueue(message)
            if q.own_log:
                stored = True   # confirmed once the stream's log is synced
        return stored

    def dead_letter(self, queue: Queue, entry: QueueEntry, reason: str) -> None:
        ex = self.exchanges.get(queue.dlx)
        if ex is None:
            log.debug("dead-letter exchange %r of queue %r missing: dropped", queue.dlx,
                      queue.name)
            return
        copy = dead_letter_copy(queue, entry, reason)
        targets = [q for q in self.route(ex, copy) if not q.deleted and not is_cycle(copy, q)]
        if targets:
            self._enqueue(copy, targets)

    # ---------------------------------------------------------------- helpers
    def _key(self, name: str) -> str:
        return resource_key(self.name, name)

    def _binding_key(self, b: Binding) -> str:
        import json
        return json.dumps([self.name, b.source, b.destination.kind, b.destination.name,
                           b.routing_key, jsonable(b.arguments)], sort_keys=True)

    def _binding_definition(self, b: Binding) -> dict[str, Any]:
        return {"vhost": self.name, "source": b.source, "destination": b.destination.name,
                "destination_type": b.destination.kind, "routing_key": b.routing_key,
                "arguments": jsonable(b.arguments)}


def _text(v: Any) -> Any:
    return v.decode("utf-8", "replace") if isinstance(v, (bytes, bytearray)) else v


def _describe(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, str):
        return f"the value '{v}' of type 'longstr'"
    if isinstance(v, bool):
        return f"the value '{str(v).lower()}' of type 'bool'"
    if isinstance(v, int):
        return f"the value '{v}' of type 'signedint'"
    return f"the value '{v}'"

