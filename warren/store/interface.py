"""The one interface every message store implements (ActiveMQ's PersistenceAdapter shape).

The broker core talks to storage only through :class:`MessageStore`. A store knows nothing of
protocols or of :class:`warren.model.message.Message`: a message is an opaque ``record``
(bytes the core made with ``Message.to_record()``) under an integer id, and a queue is an opaque
string key (:func:`resource_key`: vhost and name joined by U+001F, a character PostgreSQL text
accepts and names never contain in practice, unlike NUL). That keeps the journal and the SQL store
interchangeable and lets one contract test suite run against both.

Write path (all calls come from the reactor thread and must not block on I/O for long):

- ``publish(msg_id, record, queue_keys)`` writes the message once and enqueues it in every
  listed durable queue (a message routed to many queues is stored once, refcounted).
- ``ack(queue_key, msg_ids)`` removes messages from one queue; when a message's last queue
  acks it, its record becomes garbage for the store to reclaim.
- ``put_definition(kind, key, value)`` upserts (``value`` a JSON-able dict) or deletes
  (``value is None``) a definition: kinds are ``vhost``, ``user``, ``permission``,
  ``exchange``, ``queue``, ``binding``, ``policy``, ``runtime_parameter`` (RabbitMQ's runtime
  parameters, see ``warren.broker.parameters``), ``parameter`` (a free-form key/value used by
  MQTT retained messages, durable subscriptions and the like).
- ``abandon()`` stops all writing at once, flushing nothing (HA fencing; see the method).
- ``sync()`` returns a Deferred that fires once every call made before it is durable (fsync'd or
  committed). Stores batch: all calls of one reactor turn share one fsync / one transaction
  (group commit), so publisher confirms stay cheap. The Deferred errbacks with
  :class:`StoreUnavailable` when the write failed (disk full, database gone); the core then
  nacks the publishers and blocks new persistent publishes until ``healthy`` is true again.

Read path:

- ``recover()`` is called once after ``open()`` and before any write; it returns everything
  live: definitions, and per queue the ordered message ids with their records. Recovery costs
  time proportional to live data, not to history. ``recover(body_size=f)`` is the lazy form
  the broker uses (deep queues, ``broker/compact.py``): records are not returned (except those
  of messages held by more than one queue), and each queue gets ``sizes``, ``f(record)`` of
  each message, so the broker keeps a few bytes per message and reads records back in
  batches as they near the head.
- ``read(msg_id)`` returns one record (used when bodies were paged out of memory);
  ``read_many(msg_ids)`` several, in one round trip where the store can.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from collections.abc import MutableSequence, Sequence
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail, succeed


class StoreError(Exception):
    """A store could not do what was asked; the message says why."""


class StoreUnavailable(StoreError):
    """The medium is gone or full (disk full, database unreachable); writes are not durable."""


DefinitionKey = tuple[str, str]  # (kind, key)
#: Measures a record for lazy recovery (the core passes ``Message.record_body_size``)
BodySize = Callable[[bytes | memoryview], int]

KEY_SEP = "\x1f"


def resource_key(*parts: str) -> str:
    """The store key of a named resource, e.g. ``resource_key(vhost, queue)``."""
    return KEY_SEP.join(parts)


def split_key(key: str) -> list[str]:
    return key.split(KEY_SEP)


@dataclass
class RecoveredQueue:
    """One durable queue's live messages, in queue order (oldest first)."""

    key: str
    # (the journal's ids and sizes are ``array("q")``s: a deep queue's paged rows take them
    # as they are, one copy each)
    msg_ids: MutableSequence[int] = field(default_factory=list)
    # with ``recover(body_size=...)``: the body size of each message, parallel to msg_ids
    sizes: Sequence[int] | None = None


@dataclass
class RecoveredState:
    """What ``recover()`` found: definitions by (kind, key), records by id, queues by key."""

    definitions: dict[DefinitionKey, dict[str, Any]] = field(default_factory=dict)
    records: dict[int, bytes] = field(default_factory=dict)
    queues: dict[str, RecoveredQueue] = field(default_factory=dict)
    # ids whose delivery was attempted before the stop may be marked redelivered by the core:
    # stores need not track deliveries; the core marks every recovered message redelivered
    # only if it had been delivered (see ``delivered``), else leaves the flag clear.
    delivered: set[tuple[str, int]] = field(default_factory=set)
    # (queue key, id) -> times the message came back to that queue (``set_delivery_counts``);
    # ``delivered`` then means "handed out again since", which the core counts as one more
    delivery_counts: dict[tuple[str, int], int] = field(default_factory=dict)
    max_msg_id: int = 0


class MessageStore(abc.ABC):
    """Storage behind the broker core; see the module docstring for the contract."""

    @property
    def healthy(self) -> bool:
        """False while writes fail (disk full, database gone); the core blocks persistent
        publishers meanwhile."""
        return True

    @abc.abstractmethod
    def open(self) -> None:
        """Open files or connections; create or migrate the schema. Blocking is fine here."""

    @abc.abstractmethod
    def recover(self, body_size: BodySize | None = None) -> RecoveredState:
        """Return every live definition and message. Called once, before any write.

        With ``body_size`` (lazy recovery, see the module docstring) ``records`` holds only the
        messages held by more than one queue, and every queue has ``sizes``."""

    @abc.abstractmethod
    def put_definition(self, kind: str, key: str, value: dict[str, Any] | None) -> None:
        """Upsert (value is a dict) or delete (value is None) one definition."""

    @abc.abstractmethod
    def publish(self, msg_id: int, record: bytes, queue_keys: list[str]) -> None:
        """Store ``record`` once under ``msg_id`` and enqueue it in each of ``queue_keys``."""

    @abc.abstractmethod
    def ack(self, queue_key: str, msg_ids: list[int]) -> None:
        """Remove ``msg_ids`` from one queue; unreferenced records become garbage."""

    def mark_delivered(self, queue_key: str, msg_ids: list[int]) -> None:
        """Remember that these were handed to a consumer (for redelivered=true after restart).

        Optional: a store that does not track it makes every recovered message redelivered=false
        unless the core knows better. Lazy: need not be durable before anything else.
        """

    def set_delivery_counts(self, queue_key: str, counts: dict[int, int]) -> None:
        """Remember how often these came back to the queue (nack/reject with requeue, a
        consumer gone), and clear their delivered flags: the delivery limit and the
        ``x-delivery-count`` of persistent messages survive a restart. Lazy like
        ``mark_delivered``. Optional: a store without it restarts every count at zero (or one,
        for a message that was out with a consumer).
        """

    @abc.abstractmethod
    def purge_queue(self, queue_key: str) -> None:
        """Drop every message of one queue (queue.purge or queue.delete)."""

    @abc.abstractmethod
    def read(self, msg_id: int) -> bytes:
        """Return the record of a live message (bodies paged out of memory are read back)."""

    def read_many(self, msg_ids: list[int]) -> dict[int, bytes]:
        """Records of several live messages at once (paging reads ahead); ids the store does
        not have are left out. Stores with a round trip per read (SQL) override this."""
        out: dict[int, bytes] = {}
        for msg_id in msg_ids:
            try:
                out[msg_id] = self.read(msg_id)
            except StoreUnavailable:
                raise
            except StoreError:
                continue
        return out

    def read_many_later(self, msg_ids: list[int]) -> Deferred:
        """``read_many`` whose disk reads may run off the reactor thread: a Deferred of the
        records (paging's read-ahead, so a consumer draining a deep queue never holds the
        other clients for a disk read). A store without a reader thread reads at once."""
        try:
            return succeed(self.read_many(msg_ids))
        except Exception:
            return fail()

    @abc.abstractmethod
    def sync(self) -> Deferred:
        """A Deferred firing once everything written before this call is durable."""

    def flush(self) -> None:
        """Blocking: everything written so far is durable when this returns; raises
        :class:`StoreUnavailable` when that fails. For start-up (a record that must be on disk
        before any client is served) and tests. Optional: a store whose writes are durable
        at once has nothing to do."""

    @abc.abstractmethod
    def close(self) -> None:
        """Flush what is pending and release files/connections."""

    @abc.abstractmethod
    def abandon(self) -> None:
        """Let go of the medium without writing anything more: this node was fenced and
        another master owns the storage now (``ha/runner.py``).

        Pending writes are dropped (their ``sync()`` waiters fail), later writes are dropped,
        ``sync()`` fails with :class:`StoreError`, ``close()`` does nothing. Never blocks: the
        medium may be gone, so threads are stopped in the background. A write already handed
        to the disk or database may still land; it was confirmed to no client.
        """

    def stats(self) -> dict[str, float]:
        """Figures for /metrics (bytes on disk, fsync latency...). Optional."""
        return {}
