"""A queue's semantics, apart from storage and protocols (``rabbit_amqqueue_process``).

The queue owns its ready entries, its consumers, and the rules: TTL, length limits and
overflow, priorities, dead-lettering hand-off, auto-delete and expiry. Unacked entries live with
whoever received them (a channel or session) and come back through :meth:`ack` /
:meth:`requeue`. Durable messages are mirrored into the store by key; the store never decides
anything here.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet.defer import Deferred

from ..exchange.interface import BindingSet
from ..store.interface import resource_key
from .arguments import validate_queue_arguments
from .consumers import Consumer, ConsumerSet
from .paging import STORE_RETRY_S, UNREAD_KEPT, PageIn
from ..model.errors import AccessRefused, ResourceLocked
from ..model.message import Message, QueueEntry
from .compact import TTL_UNKNOWN, Row
from .ready import ReadyByPriority, ReadyFifo
from .redelivery import BackOff, HeldForRedelivery
from .subscriptions import subscription_filter
from .stats import new_counts

_new = object.__new__

if TYPE_CHECKING:
    from .vhost import VirtualHost

log = logging.getLogger("warren.queue")

#: ``Queue._take``'s answer while the head's body is being read for a waiting get.
_WAIT = object()

#: ActiveMQ's ``prioritizedMessages`` as a queue argument: JMS's ten priority levels (0-9)
#: without ``x-max-priority``, which RabbitMQ's redeclare checks and this one is not; STOMP
#: sets it on the queues its clients create (``stomp/jms.py``)
PRIORITIZED_ARGUMENT = "x-prioritized-messages"
JMS_MAX_PRIORITY = 9


class Queue:
    """One queue's ready messages, its consumers and its rules (see the module docstring).

    Entries handed to a consumer leave the queue: the receiver (a channel, a session) holds
    them until it acks, rejects or requeues them through this object."""

    kind = "queue"
    #: a queue type keeping its messages in its own log (streams): the vhost writes nothing
    #: of it to the store, and a publish into it waits for ``Broker.sync`` like a stored one
    own_log = False

    def __init__(self, vhost: "VirtualHost", name: str, *, durable: bool = False,
                 exclusive_owner: Any = None, auto_delete: bool = False,
                 arguments: dict[str, Any] | None = None) -> None:
        self.vhost = vhost                   # owner: broker services, dead-letter routing
        self.name = name
        self.durable = durable
        self.journaled = durable              # its messages go to the store (own_log: no)
        self.exclusive_owner = exclusive_owner  # connection object, or None
        self.auto_delete = auto_delete
        self.arguments = validate_queue_arguments(vhost.name, name, dict(arguments or {}))
        self.store_key = resource_key(vhost.name, name)
        # its messages with a lower id may have been delivered before an unclean stop
        # (``possibly_delivered.py``; set by recovery)
        self.possibly_delivered_below = 0
        self.policy: dict[str, Any] | None = None  # the applied policy's definition, if any
        self.policy_name: str | None = None        # the policy it is under (the API shows it)
        self.bindings = BindingSet()          # bindings with this queue as destination
        self.consumers = ConsumerSet()
        self.unacked = 0                      # entries delivered and not yet settled
        self.unacked_bytes = 0
        self.deleted = False
        self.had_consumer = False             # auto-delete fires only after a first consumer
        self._seq = 0                         # next entry position
        self._dispatching = False             # re-entrancy guard for dispatch()
        self._expiry_call = None              # pending message-TTL timer
        self._idle_call = None                # pending x-expires timer
        self._dispatch_call = None            # deferred dispatch (after acks of a whole read)
        self._arriving: QueueEntry | None = None  # a TTL-0 entry that may go to a consumer now
        # basic.gets waiting for a paged-out head to be read (``get_later``): (no_ack, Deferred)
        self._getters: deque[tuple[bool, Deferred]] = deque()
        # entries to dead-letter once their paged-out bodies are read (``_dead_letter``)
        self._dying: deque[tuple[QueueEntry, str]] = deque()
        self._dying_call: Any = None
        self._message_ttls = False            # some ready entry may have a per-message TTL
        # the read-ahead (``Pager.read_ahead``): the stubs the head restored whose bodies
        # nobody asked for yet, in queue order; at which count of ``delivered()`` it reads
        # the next batch (None: none due); where what it asked for so far ends
        self.unread: deque[QueueEntry] = deque(maxlen=UNREAD_KEPT)
        self.read_ahead_at: int | None = None
        self.read_upto = 0
        # called with the queue after every dispatch: consumers came or went, took
        # entries, or got credit back (every such change dispatches). Whoever moves
        # messages here on demand (a federated queue's link) watches this instead of
        # polling; a watcher must not dispatch or deliver from inside the call
        self.demand_watchers: list[Callable[[Queue], None]] = []
        # counters for the management API and metrics (stats.py): this queue's, and the
        # broker's totals they are added to as they happen
        self.stats = new_counts()
        self._totals = vhost.message_totals
        self.ready: ReadyFifo | ReadyByPriority = ReadyFifo(self._restore)
        # returned entries waiting out their redelivery back-off (``redelivery.py``)
        self.held = HeldForRedelivery(vhost.broker.clock, self._redeliver)
        self.page_file: Any = None   # transient messages paged out (``pagefile.py``), if any
        # a durable subscription's selector: what it does not admit is never enqueued here
        self.admits = subscription_filter(self.arguments)
        if self.admits is not None:
            vhost.filtered_queues += 1
        self.apply_settings()

    # ---------------------------------------------------------------- settings
    def setting(self, key: str) -> Any:
        """Effective value of a queue setting: argument ``x-key``, else policy ``key``.

        For numeric limits RabbitMQ applies the stricter of argument and policy.
        """
        arg = self.arguments.get("x-" + key)
        pol = (self.policy or {}).get(key)
        if arg is None:
            return pol
        if pol is None:
            return arg
        if key in ("message-ttl", "expires", "max-length", "max-length-bytes", "delivery-limit"):
            return min(arg, pol)
        return arg

    def apply_settings(self) -> None:
        """(Re)read settings after declare or a policy change."""
        self.message_ttl = self.setting("message-ttl")
        self.max_length = self.setting("max-length")
        self.max_length_bytes = self.setting("max-length-bytes")
        # some length limit applies: every enqueue checks it
        self._limited = self.max_length is not None or self.max_length_bytes is not None
        self.overflow = self.setting("overflow") or "drop-head"
        self.dlx = self.setting("dead-letter-exchange")
        self.dlx_routing_key = self.setting("dead-letter-routing-key")
        self.expires = self.setting("expires")
        self.delivery_limit = self.setting("delivery-limit")
        # RabbitMQ's quorum queues put x-delivery-count on every delivery, 0 on the first;
        # warren's queues of that kind (declared quorum, or with a limit) do too, the others
        # only once a message came back (RabbitMQ's classic queues never count)
        self.counts_every_delivery = (self.arguments.get("x-queue-type") == "quorum"
                                      or self.delivery_limit is not None)
        initial = self.setting("redelivery-initial-delay")
        self.back_off = None if not initial else BackOff(
            initial, self.setting("redelivery-multiplier") or 1.0,
            self.setting("redelivery-max-delay"))
        max_priority = self.arguments.get("x-max-priority", (self.policy or {}).get("max-priority"))
        if max_priority is None and self.arguments.get(PRIORITIZED_ARGUMENT) in (True, "true"):
            max_priority = JMS_MAX_PRIORITY
        if max_priority != getattr(self, "max_priority", None):
            # a policy may add, change or remove priorities live: re-sort what is ready
            old = self.ready.clear()
            self.ready = (ReadyFifo(self._restore) if max_priority is None
                          else ReadyByPriority(max_priority, self._restore))
            self.ready.requeue(old)
        self.max_priority = max_priority
        self.consumers.single_active = bool(self.setting("single-active-consumer"))
        if self.ready and self.overflow == "drop-head" and (
                self.max_length is not None or self.max_length_bytes is not None):
            # a limit set or lowered by a policy applies at once (RabbitMQ drops the head;
            # reject-publish queues only refuse new messages)
            self._drop_head_over_limit()
        self._touch()

    @property
    def clock(self):
        return self.vhost.broker.clock

    # ---------------------------------------------------------------- counts
    @property
    def message_count(self) -> int:
        """Messages in the queue and not out with a consumer: ready, held for back-off, or
        waiting for their bodies to be dead-lettered."""
        return len(self.ready) + len(self.held) + len(self._dying)

    @property
    def consumer_count(self) -> int:
        return len(self.consumers)

    # ---------------------------------------------------------------- exclusivity
    def check_access(self, connection: Any) -> None:
        """rabbit_amqqueue:check_exclusive_access (lax): another connection's exclusive queue
        is locked."""
        if self.exclusive_owner is not None and self.exclusive_owner is not connection:
            raise self._locked()

    def check_owner(self, exclusive_owner: Any) -> None:
        """The strict check of a redeclare: the declare's owner (None when not exclusive) must
        be the queue's, so exclusive=false on the owning connection is locked too."""
        if self.exclusive_owner is not exclusive_owner:
            raise self._locked()

    def _locked(self) -> ResourceLocked:
        return ResourceLocked(
            f"cannot obtain exclusive access to locked queue '{self.name}' in vhost "
            f"'{self.vhost.name}'. It could be originally declared on another connection "
            "or the exclusive property value does not match that of the original declaration.")

    # ---------------------------------------------------------------- enqueue
    def would_overflow(self, message: Message) -> bool:
        """True when a reject-publish queue is full (the publisher gets a nack)."""
        if self.overflow == "drop-head":
            return False
        if self.max_length is not None and len(self.ready) >= self.max_length:
            return True
        if (self.max_length_bytes is not None
                and self.ready.bytes + len(message.body) > self.max_length_bytes):
            return True
        return False

    def enqueue(self, message: Message) -> QueueEntry:
        """Add a routed message; the vhost has already checked overflow and written the store."""
        self._seq += 1
        # made bare, its fields assigned here: QueueEntry's dataclass __init__ is one more
        # Python call per message (about a thousand instructions, callgrind)
        entry = _new(QueueEntry)
        entry.message = message
        entry.seq = self._seq
        entry.redelivered = False
        entry.delivery_count = 0
        ttl = self.message_ttl
        if message.ttl is not None:
            ttl = message.ttl if ttl is None else min(ttl, message.ttl)
        expires_at = None if ttl is None else self.clock.seconds() + ttl / 1000.0
        entry.expires_at = expires_at
        if expires_at is not None:
            if message.ttl is not None:
                self._message_ttls = True   # cleared when a full scan empties the queue
        message.refs += 1
        self.stats["publish"] += 1
        consumers = self.consumers
        if expires_at is None and consumers.members and not self._limited \
                and not self.ready.count and not self._dispatching and not self.deleted:
            # nothing waits ahead of it: straight to a consumer with room, as dispatch would
            # hand it over the moment it was appended (RabbitMQ's attempt_delivery). What
            # ``dispatch`` does with the one entry, in line (a Python call per message less),
            # without it passing through ``ready`` (it goes there when no consumer takes it
            # now). While a dispatch is under way it is appended below, and that one takes it.
            self._dispatching = True
            try:
                sole = consumers.sole
                if consumers.selective:
                    consumer = consumers.next_accepting(self, entry)[0]
                elif sole is not None:
                    consumer = sole if sole.has_credit() else None
                else:
                    consumer = consumers.next_with_credit()
                if consumer is None:
                    self.ready.append(entry)
                elif consumer.no_ack:
                    # _hand_over's no-ack delivery in line (an MQTT QoS 0 subscriber's, an
                    # auto-ack consumer's; an arriving entry is never a redelivery)
                    self.stats["deliver_no_ack"] += 1
                    self._totals["deliver_no_ack"] += 1
                    consumer.deliver(self, entry)
                    self.vhost.broker.release(self, message)
                else:
                    # _hand_over's and _track_unacked's delivery in line (an MQTT QoS 1
                    # subscriber's, a manual-ack consumer's; never a redelivery)
                    self.stats["deliver"] += 1
                    self._totals["deliver"] += 1
                    self.unacked += 1
                    self.unacked_bytes += len(message.body)
                    if message.stored and self.durable:
                        self.vhost.broker.note_delivered(self, message.id)
                    consumer.deliver(self, entry)
            finally:
                self._dispatching = False
                for watcher in self.demand_watchers:
                    watcher(self)
            return entry
        self.ready.append(entry)
        if self._limited:
            self._drop_head_over_limit()
        if expires_at is not None:
            if ttl == 0:
                # TTL 0: deliverable only to a consumer that can take it right now
                self._arriving = entry
                try:
                    self.dispatch()
                finally:
                    self._arriving = None
                self._expire_due()
                return entry
            self._schedule_expiry(expires_at)
        if consumers.members:
            self.dispatch()
        return entry

    def enqueue_paged(self, msg_id: int, size: int, redelivered: bool, count: int) -> None:
        """Recovery of a deep queue: an entry that stays in the store (``compact.py``) until
        it nears the head. Its queue TTL counts from now, as ``enqueue``'s does."""
        self._seq += 1
        ttl = self.message_ttl
        expires_at = None if ttl is None else self.clock.seconds() + ttl / 1000.0
        self.stats["publish"] += 1
        flags = TTL_UNKNOWN | (1 if redelivered else 0)
        self.ready.push_paged((msg_id, self._seq, size, expires_at, flags, count, 0, -1))
        self.vhost.broker.pager.note_row()
        if expires_at is not None:
            self._schedule_expiry(expires_at)

    def enqueue_paged_many(self, msg_ids: Sequence[int], sizes: Sequence[int]) -> None:
        """``enqueue_paged`` of many messages never delivered (a FIFO queue's recovery).
        Ids and sizes as the store recovered them: the journal's arrays go into the rows'
        arrays as one copy each (``CompactRun.extend``)."""
        if not msg_ids:
            return
        first = self._seq + 1
        self._seq += len(msg_ids)
        ttl = self.message_ttl
        expires_at = None if ttl is None else self.clock.seconds() + ttl / 1000.0
        self.stats["publish"] += len(msg_ids)
        self.ready.push_paged_many(msg_ids, first, sizes, expires_at)
        self.vhost.broker.pager.note_row(len(msg_ids))
        if expires_at is not None:
            self._schedule_expiry(expires_at)

    def learn_expiry(self, entry: QueueEntry, at: float) -> None:
        """A recovered entry's own TTL became known (read back from the store): it expires
        at ``at`` too (the queue's TTL may be sooner)."""
        if entry.expires_at is None or at < entry.expires_at:
            entry.expires_at = at
        self._message_ttls = True
        self._schedule_expiry(entry.expires_at)

    def _drop_head_over_limit(self) -> None:
        while self.ready and (
                (self.max_length is not None and len(self.ready) > self.max_length)
                or (self.max_length_bytes is not None
                    and self.ready.bytes > self.max_length_bytes)):
            self._dead_letter(self.ready.popleft(), "maxlen")

    # ---------------------------------------------------------------- delivery
    def check_consume(self, no_ack: bool, prefetch: int, global_prefetch: int,
                      arguments: dict[str, Any]) -> None:
        """Refuse a consumer before the front end confirms it (a classic queue takes any;
        queue types with rules of their own, streams, override this)."""

    def add_consumer(self, consumer: Consumer, connection: Any = None) -> None:
        if consumer.exclusive and self.consumers:
            raise AccessRefused(
                f"queue '{self.name}' in vhost '{self.vhost.name}' in exclusive use")
        for c in self.consumers:
            if c.exclusive:
                raise AccessRefused(
                    f"queue '{self.name}' in vhost '{self.vhost.name}' in exclusive use")
        self.consumers.add(consumer)
        self.had_consumer = True
        self._touch()
        self.dispatch()

    def remove_consumer(self, consumer: Consumer) -> None:
        if self.consumers.remove(consumer):
            if not self.consumers:
                self.unread.clear()   # the read-ahead's candidates, kept for consumers only
            self._touch()
            if not self.consumers and self.auto_delete and self.had_consumer and not self.deleted:
                self.vhost.delete_queue(self.name, reason="auto-delete")
            else:
                self.dispatch()

    def dispatch(self) -> None:
        """Deliver ready entries while some consumer has credit."""
        if self._dispatching or self.deleted:
            return
        self._dispatching = True
        try:
            if self.consumers.selective:
                self._dispatch_selective()
                return
            ready = self.ready
            consumers = self.consumers
            sole = consumers.sole
            while True:
                if sole is not None:
                    # one consumer: no round-robin cursor to keep, so no need to look
                    # before popping (an empty queue raises)
                    if not sole.has_credit():
                        break
                    consumer = sole
                else:
                    if not ready:
                        break
                    if consumers.selective:
                        # the last delivery claimed a message group (groups.py): from now
                        # on the entries are offered through accepts
                        self._dispatch_selective()
                        break
                    turn = consumers.next_with_credit()
                    if turn is None:
                        break
                    consumer = turn
                try:
                    entry = ready.popleft()
                except IndexError:
                    break
                # read back first: a recovered message's own TTL is known only then
                if entry.message.paged and not self._page_in(entry):
                    break
                if entry.expires_at is not None and self._expired(entry):
                    continue
                self._hand_over(consumer, entry)
        finally:
            self._dispatching = False
            at = self.read_ahead_at
            if at is not None and self.delivered() >= at:
                self.vhost.broker.pager.read_ahead(self)
            for watcher in self.demand_watchers:
                watcher(self)

    def _restore(self, row: Row) -> QueueEntry:
        """A paged row back as an entry whose body is still paged (``Pager.stub``), noted
        as a candidate of the read-ahead while consumers drain the queue (a queue read by
        basic.get alone never reads ahead: it would only keep delivered entries alive)."""
        entry = self.vhost.broker.pager.stub(row)
        if self.consumers:
            self.unread.append(entry)
        return entry

    def delivered(self) -> int:
        """Entries handed to consumers so far (the read-ahead counts its way by it)."""
        stats = self.stats
        return stats["deliver"] + stats["deliver_no_ack"]

    #: How far past the head a selective dispatch looks for entries some consumer accepts
    #: (ActiveMQ's maxPageSize plays this part): entries nobody accepts pile up at the head
    #: without making every dispatch walk the whole queue.
    SELECTIVE_WINDOW = 2000

    def _dispatch_selective(self) -> None:
        """Dispatch when some consumer is selective (``accepts``; see ``consumers.py``).

        Walks ready entries in order; each goes to the next consumer with credit that accepts
        it. Entries nobody accepts are set aside and put back in their places (they keep their
        ``seq``), so they wait for a consumer that wants them without blocking the rest.
        """
        ready = self.ready
        consumers = self.consumers
        if not ready or not consumers.any_credit():
            return
        skipped: list[QueueEntry] = []
        try:
            while len(skipped) < self.SELECTIVE_WINDOW:
                try:
                    entry = ready.popleft()   # an empty queue raises, unchanged
                except IndexError:
                    break
                # selectors and message groups read properties, and a recovered message's
                # own TTL is known only once read: a paged entry is read back first
                if entry.message.paged and not self._page_in(entry):
                    break
                if entry.expires_at is not None and self._expired(entry):
                    continue
                consumer, any_credit = consumers.next_accepting(self, entry)
                if consumer is None:
                    skipped.append(entry)
                    if not any_credit:
                        break
                    continue
                self._hand_over(consumer, entry)
        finally:
            if skipped:
                ready.requeue(skipped)

    def _hand_over(self, consumer: Consumer, entry: QueueEntry) -> None:
        # once per delivery: ``_count``'s counting done in line
        stats, totals = self.stats, self._totals
        if entry.message.id < self.possibly_delivered_below:
            self._possibly_delivered(entry)
        if entry.redelivered:
            stats["redeliver"] += 1
            totals["redeliver"] += 1
        if consumer.no_ack:
            stats["deliver_no_ack"] += 1
            totals["deliver_no_ack"] += 1
            consumer.deliver(self, entry)
            self.vhost.broker.release(self, entry.message)   # _settle, one call less
        else:
            stats["deliver"] += 1
            totals["deliver"] += 1
            self._track_unacked(entry)
            consumer.deliver(self, entry)

    def _possibly_delivered(self, entry: QueueEntry) -> None:
        """An entry that was in the queue at an unclean stop goes out as RabbitMQ 4's
        classic queue sends it (``possibly_delivered.py``): redelivered, and counted once
        unless it has a count of its own. A queue that counts every delivery (quorum, or with
        a delivery limit: RabbitMQ's quorum queues know what was out) keeps its count, so
        the guess never spends a delivery limit."""
        entry.redelivered = True
        if not entry.delivery_count and not self.counts_every_delivery:
            entry.delivery_count = 1

    def get_later(self, no_ack: bool) -> Deferred:
        """basic.get: a Deferred of the next live entry, or None when the queue is empty.

        Fired at once unless the head's body is paged out in the store: then it is read off
        the reactor thread and the get is answered once it is in, as RabbitMQ's channel waits
        for its queue's reply (never a get-empty while the queue holds messages). While the
        store cannot be read (the database is gone) the read is retried and the get keeps
        waiting; the entry keeps its place meanwhile, so a consumer attaching or another
        get coming meanwhile sees the queue as it is. Gets are answered in the order they
        came; cancelling the Deferred (the channel closed) withdraws one."""
        done: Deferred = Deferred(self._withdraw_get)
        self._getters.append((no_ack, done))
        if len(self._getters) == 1:
            self._serve_gets()
        return done

    def _withdraw_get(self, done: Deferred) -> None:
        for waiting in self._getters:
            if waiting[1] is done:
                self._getters.remove(waiting)   # in place: ``_serve_gets`` may be walking it
                return

    def _serve_gets(self) -> None:
        """Answer waiting gets in order while their entries can be taken now."""
        getters = self._getters
        while getters:
            no_ack, done = getters[0]
            entry = self._take(no_ack)
            if entry is _WAIT:
                return   # ``_take`` arranged for this to run again
            getters.popleft()
            done.callback(entry)

    def _take(self, no_ack: bool) -> QueueEntry | None | object:
        """The next live entry for a get (None: empty), or ``_WAIT`` while its body is read."""
        self._touch()
        while self.ready and not self.deleted:
            entry = self.ready.popleft()
            if entry.message.paged:
                pager = self.vhost.broker.pager
                state = pager.page_in(entry.message, self, entry)
                if state is PageIn.PENDING or state is PageIn.LATER:
                    self.ready.requeue([entry])
                    if state is PageIn.PENDING:
                        pager.when_read(entry.message).addCallback(self._get_read)
                    else:
                        self.clock.callLater(STORE_RETRY_S, self._serve_gets)
                    return _WAIT
                if state is PageIn.LOST:
                    self._settle(entry)
                    continue
            if entry.expires_at is not None and self._expired(entry):
                continue
            if entry.message.id < self.possibly_delivered_below:
                self._possibly_delivered(entry)
            if entry.redelivered:
                self._count("redeliver")
            if no_ack:
                self._count("get_no_ack")
                self._settle(entry)
            else:
                self._count("get")
                self._track_unacked(entry)
            return entry
        self._count("get_empty")
        return None

    def _get_read(self, read: bool) -> None:
        """The head's read for a waiting get is over: answer it, or retry after a failure."""
        if read:
            self._serve_gets()
        else:
            self.clock.callLater(STORE_RETRY_S, self._serve_gets)

    def _count(self, key: str, n: int = 1) -> None:
        """One operation on this queue, in its counters and the broker's totals."""
        self.stats[key] += n
        self._totals[key] += n

    def _expired(self, entry: QueueEntry) -> bool:
        """A popped entry past its TTL is dead-lettered (True). The TTL-0 message being
        enqueued right now (``_arriving``) is still deliverable to a consumer that can take it.
        """
        if entry is self._arriving or entry.expires_at > self.clock.seconds():
            return False
        self._dead_letter(entry, "expired")
        return True

    def _page_in(self, entry: QueueEntry) -> bool:
        """Bring a paged-out body back (``paging.py``) before it leaves for a consumer.

        False: not deliverable now. The entry was popped; while it is read off the reactor
        thread it goes back to its place and the pager dispatches the queue once the body is
        in; if the store cannot answer it goes back too and dispatch is retried in a second;
        if the store lost it, it is dropped (the pager logged it) and dispatch resumes at the
        end of the turn.
        """
        state = self.vhost.broker.pager.page_in(entry.message, self, entry)
        if state is PageIn.LOADED:
            return True
        if state is PageIn.PENDING:
            self.ready.requeue([entry])
            return False
        if state is PageIn.LATER:
            self.ready.requeue([entry])
            delay = 1.0
        else:
            self._settle(entry)
            delay = 0.0
        if self._dispatch_call is None or not self._dispatch_call.active():
            self._dispatch_call = self.clock.callLater(delay, self._dispatch_later)
        return False

    def _dispatch_later(self) -> None:
        self._dispatch_call = None
        self.dispatch()

    def _track_unacked(self, entry: QueueEntry) -> None:
        """Count it as unacked; a stored one is remembered as delivered (redelivered flag)."""
        self.unacked += 1
        message = entry.message
        self.unacked_bytes += len(message.body)
        if message.stored and self.durable:
            self.vhost.broker.note_delivered(self, message.id)

    # ---------------------------------------------------------------- settlement
    def ack(self, entries: list[QueueEntry]) -> None:
        self.unacked -= len(entries)
        broker = self.vhost.broker
        # what _settle does to each, in one call for the batch
        self.unacked_bytes -= broker.release_entries(self, entries)
        self._count("ack", len(entries))
        broker.after_settle(self)

    def requeue(self, entries: list[QueueEntry], failed: bool = True) -> None:
        """Back to their old positions, flagged redelivered (nack/reject requeue, channel close).

        Each return counts (RabbitMQ's quorum-queue ``delivery_count``, carried to consumers as
        ``x-delivery-count``): past ``delivery-limit`` the entry is dead-lettered with reason
        ``delivery_limit`` instead; with a back-off it is held before it is ready again.
        ``failed=False`` is a return that was no failed delivery (AMQP 1.0's released, or
        modified without delivery-failed): RabbitMQ 4 counts it in no delivery-count.
        """
        self.unacked -= len(entries)
        for e in entries:
            self.unacked_bytes -= len(e.message.body)
        if self.deleted:
            for e in entries:
                self._settle(e)
            return
        broker = self.vhost.broker
        limit = self.delivery_limit
        back_off = self.back_off
        stored = self.durable
        live = []
        if not failed:
            for e in entries:
                e.redelivered = True
            self._make_ready(entries)
            broker.after_settle(self)
            return
        for e in entries:
            e.redelivered = True
            e.delivery_count += 1
            if limit is not None and e.delivery_count > limit:
                self._dead_letter(e, "delivery_limit")
                continue
            if stored and e.message.stored:
                broker.note_returned(self, e.message.id, e.delivery_count)
            if back_off is not None:
                self.held.hold(e, back_off.delay_ms(e.delivery_count) / 1000.0)
            else:
                live.append(e)
        if live:
            self._make_ready(live)
        broker.after_settle(self)

    def dead_letter_over_limit(self, entries: list[QueueEntry]) -> None:
        """Recovered entries whose last return, counted at the restart, was one too many."""
        gone = {id(e) for e in entries}
        for e in self.ready.remove_where(lambda e: id(e) in gone):
            self._dead_letter(e, "delivery_limit")

    def _make_ready(self, entries: list[QueueEntry]) -> None:
        self.ready.requeue(entries)
        due = min((e.expires_at for e in entries if e.expires_at is not None), default=None)
        if due is not None:
            # they were not counted when the timer was last armed (they were out with a
            # consumer, or held)
            self._schedule_expiry(due)

    def _redeliver(self, entries: list[QueueEntry]) -> None:
        """Their back-off is over (or their dead-lettering waited for the store): deliverable
        again, in their old places, where a drop-head length limit is decided again (a
        reject-publish queue only refuses new messages, as at a policy change)."""
        if self.deleted:
            return
        self._make_ready(entries)
        if self._limited and self.overflow == "drop-head":
            self._drop_head_over_limit()
        self.dispatch()

    def reject(self, entries: list[QueueEntry]) -> None:
        """Rejected without requeue: dead-lettered when a DLX is set, else dropped."""
        self.unacked -= len(entries)
        for e in entries:
            self.unacked_bytes -= len(e.message.body)
            self._dead_letter(e, "rejected")
        self.vhost.broker.after_settle(self)

    def settle(self, entries: list[QueueEntry], *, ack: bool, requeue: bool) -> None:
        """A client's verdict on deliveries, as every protocol words it: acked, or else
        requeued or rejected (one place for what AMQP, STOMP and the console each decide)."""
        if ack:
            self.ack(entries)
        elif requeue:
            self.requeue(entries)
        else:
            self.reject(entries)

    def _settle(self, entry: QueueEntry) -> None:
        """The entry is done in this queue: release the message's reference."""
        self.vhost.broker.release(self, entry.message)

    def _dead_letter(self, entry: QueueEntry, reason: str) -> None:
        if self.dlx is not None and not self.deleted and (self._dying or entry.message.paged):
            # its body must be read back first (off the reactor thread), or others wait for
            # theirs ahead of it: it waits aside, counted in the queue, and is dead-lettered
            # in its turn; never dropped for a store that cannot answer now
            self._dying.append((entry, reason))
            if len(self._dying) == 1:
                self._retry_dying()
            return
        self._dead_letter_now(entry, reason)

    def _dead_letter_now(self, entry: QueueEntry, reason: str) -> None:
        if self.dlx is not None and not self.deleted:
            self.vhost.dead_letter(self, entry, reason)
        self._settle(entry)

    def _retry_dying(self) -> None:
        """Dead-letter the waiting entries in order while their bodies are in; the first
        still paged is read (with the next ones along) and the rest wait behind it."""
        self._dying_call = None
        dying = self._dying
        settled = False
        while dying:
            entry, reason = dying[0]
            if self.dlx is not None and not self.deleted and entry.message.paged:
                read = self.vhost.broker.pager.page_in(
                    entry.message, self, entry,
                    chain((e for e, _ in islice(dying, 1, None)), self.ready))
                if read is PageIn.PENDING or read is PageIn.LATER:
                    self._await_dying(entry, read)
                    break
                dying.popleft()
                if read is PageIn.LOST:
                    log.error("queue '%s': message %d %s but its paged-out body is no longer "
                              "stored: not dead-lettered", self.name, entry.message.id, reason)
                    self._settle(entry)
                    continue
            else:
                dying.popleft()
            settled = True
            self._dead_letter_now(entry, reason)
        if settled:
            self.vhost.broker.after_settle(self)

    def _await_dying(self, entry: QueueEntry, read: PageIn) -> None:
        """The next retry of the waiting dead-letterings: when this body is in, or a second
        after the store failed."""
        if self._dying_call is not None:
            return
        if read is PageIn.PENDING:
            self._dying_call = self.vhost.broker.pager.when_read(entry.message)
            self._dying_call.addCallback(self._dying_read)
        else:
            self._dying_call = self.clock.callLater(STORE_RETRY_S, self._retry_dying)

    def _dying_read(self, read: bool) -> None:
        self._dying_call = None
        if read:
            self._retry_dying()
        else:
            self._dying_call = self.clock.callLater(STORE_RETRY_S, self._retry_dying)

    # ---------------------------------------------------------------- TTL
    def _schedule_expiry(self, at: float) -> None:
        call = self._expiry_call
        if call is not None and call.active():
            if call.getTime() <= at:
                return
            call.cancel()
        delay = max(0.0, at - self.clock.seconds())
        self._expiry_call = self.clock.callLater(delay, self._expire_due)

    def _expire_due(self) -> None:
        """Drop every expired ready entry, head or not, then re-arm for the next one."""
        self._expiry_call = None
        if self.deleted:
            return
        if not self.ready:
            self._message_ttls = False
            return
        now = self.clock.seconds()
        head = self.ready.peek()
        if (head is not None and head.expires_at is not None and not self._message_ttls
                and isinstance(self.ready, ReadyFifo)):
            # one FIFO, queue TTL only: expiry order is queue order, so the work is O(expired)
            while head is not None and head.expires_at is not None and head.expires_at <= now:
                self._dead_letter(self.ready.popleft(), "expired")
                head = self.ready.peek()
            if head is None:
                return
            if head.expires_at is not None:
                self._schedule_expiry(head.expires_at)
                return
        # per-message TTLs or priorities: expired entries may sit anywhere, so scan them all
        for e in self.ready.remove_where(lambda e: e.expires_at is not None
                                         and e.expires_at <= now):
            self._dead_letter(e, "expired")
        if not self.ready:
            self._message_ttls = False
        nxt = self.ready.next_expiry()
        if nxt is not None:
            self._schedule_expiry(nxt)

    # ---------------------------------------------------------------- x-expires
    def _touch(self) -> None:
        """Any use re-arms the idle timer of a queue with ``x-expires``."""
        if self._idle_call is not None and self._idle_call.active():
            self._idle_call.cancel()
        self._idle_call = None
        if self.expires is not None and not self.consumers and not self.deleted:
            self._idle_call = self.clock.callLater(self.expires / 1000.0, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle_call = None
        if not self.consumers and not self.deleted:
            self.vhost.delete_queue(self.name, reason="expired")

    # ---------------------------------------------------------------- purge / delete
    def purge(self) -> int:
        gone, runs = self.ready.clear_split()
        self.unread.clear()
        gone += self.held.clear()
        broker = self.vhost.broker
        # the store's copy is all ready (none out, none being dead-lettered): one purge
        # record drops it
        whole = not self.unacked and not self._dying
        if whole:
            broker.store_purge(self)
        count = len(gone) + sum(run.paged for run in runs)   # before release takes them
        broker.release_many(self, gone)
        broker.release_rows(self, runs, store_purged=whole)
        return count

    def close(self) -> None:
        """The broker stops: a queue whose messages are in the store has nothing of its own
        to close (a stream closes its log)."""

    def abandon(self) -> None:
        """HA fencing: nothing of its own to let go unwritten (a stream lets go of its log's
        files)."""

    def on_deleted(self) -> int:
        """Called by the vhost: cancel consumers, drop ready entries, stop timers."""
        if self.admits is not None and not self.deleted:
            self.vhost.filtered_queues -= 1
        self.deleted = True
        for c in list(self.consumers):
            self.consumers.remove(c)
            c.cancelled(self)
        for call in (self._expiry_call, self._idle_call):
            if call is not None and call.active():
                call.cancel()
        gone, runs = self.ready.clear_split()
        # an empty FIFO that restores through the pager, not ``self._restore``: the queue's
        # bound method held by its own FIFO would leave every deleted queue a cycle
        self.ready = ReadyFifo(self.vhost.broker.pager.stub)
        self.unread.clear()
        gone += self.held.close()
        gone += [e for e, _ in self._dying]   # their bodies' reads come back to nothing
        self._dying.clear()
        broker = self.vhost.broker
        broker.store_purge(self)
        count = len(gone) + sum(run.paged for run in runs)   # before release takes them
        broker.release_many(self, gone)
        broker.release_rows(self, runs, store_purged=True)
        if self.page_file is not None:
            self.page_file.close()
        self._serve_gets()   # gets waiting for a read: the queue is gone, empty
        return count

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "vhost": self.vhost.name, "durable": self.durable,
                "auto_delete": self.auto_delete, "arguments": self.arguments}
