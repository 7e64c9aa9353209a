"""Paging message bodies out to the store (RabbitMQ lazy-queue behaviour), bounded by a budget.

Why: a durable queue may hold millions of persistent messages; every one is already in the
store, so keeping each body in RAM as well only costs memory. The broker counts the bytes of
bodies it holds (``Broker.body_bytes``); once that passes ``paging_budget`` a paging pass runs
at the end of the reactor turn and drops bodies until the count is back under three quarters of
the budget (hysteresis, so passes are not made for every publish).

Which bodies may go (all must hold):

- the message is ``stored`` and its only holder (``refs == 1``) is a *durable* queue, so the
  store keeps the record exactly as long as the queue keeps the entry; a message shared with
  other queues, transient, or in a non-durable queue is never paged;
- the entry is *ready* (not out with a consumer) and not among the ``HEAD_KEEP`` oldest ready
  entries of its queue: those go to consumers next and would only be read straight back.

Which go first: queues with the most ready bytes first, and within a queue the newest entries
first (the ones furthest from delivery). A pass that cannot get under the target (what is left
is unpageable: heads, unacked, transient messages) is remembered, and no new pass starts until
the resident bytes grew by another quarter of the budget, so a full walk is never repeated
per publish.

A paged body is replaced by :class:`PagedBody`, an object that knows only the length: every
byte count (``ready.bytes``, ``max-length-bytes``, the management API's ``message_bytes``)
stays the message's logical size and is never touched by paging, while any attempt to use the
bytes themselves fails loudly. ``message.paged`` is True. :meth:`Pager.page_in` reads the record
back (``store.read_many``, with up to ``READ_AHEAD`` more paged entries from the head of the
same queue, so draining a paged queue costs one store round trip per batch) just before the
body is needed: hand-over to a consumer, a basic.get, dead-lettering, a move. A store that is
momentarily unreachable (database gone) leaves the entry where it was and the queue retries
later; a record the store no longer has (corruption) is logged and the entry is dropped, never
delivered empty.
"""

from __future__ import annotations

import logging
from enum import Enum
from itertools import islice
from typing import TYPE_CHECKING, Any, Iterator

from ..store.interface import StoreError, StoreUnavailable
from ..model.message import Message, QueueEntry

if TYPE_CHECKING:
    from .broker import Broker
    from .queue import Queue

log = logging.getLogger("warren.paging")

#: Default budget for resident message bodies before paging starts (``--paging-budget``).
DEFAULT_BUDGET = 256 * 1024 * 1024
#: The oldest ready entries of each queue keep their bodies: they are delivered next.
HEAD_KEEP = 256
#: Paged entries at the head of a queue read back with the one being delivered (one store call).
READ_AHEAD = 128
#: A pass stops once resident bodies are at or under this share of the budget.
LOW_SHARE = 0.75


class PageIn(Enum):
    """What :meth:`Pager.page_in` made of a paged-out message."""

    LOADED = "loaded"     # the body is back in memory
    LATER = "later"       # the store cannot answer now; leave the entry and retry
    LOST = "lost"         # the store no longer has the record; drop the entry


class PagedBody:
    """Stands in for a body that lives only in the store: has a length and nothing else."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        raise RuntimeError("message body is paged out: call Pager.page_in first")

    def __repr__(self) -> str:
        return f"PagedBody({self.size})"


class Pager:
    """Decides when and which bodies leave memory, and brings them back on demand."""

    def __init__(self, broker: "Broker", budget: int = DEFAULT_BUDGET,
                 head_keep: int = HEAD_KEEP) -> None:
        self.broker = broker
        self.budget = budget            # resident body bytes that start a pass; <= 0: never
        self.head_keep = head_keep
        self.paged_out = 0              # counters for metrics and tests
        self.paged_in = 0
        self._scheduled: Any = None     # the pending end-of-turn pass
        self._futile_at = -1            # resident bytes when a pass last could not get under

    # ---------------------------------------------------------------- when
    def note_growth(self) -> None:
        """Called when resident bodies grew (``Broker.track``): schedule a pass if over."""
        broker = self.broker
        resident = broker.body_bytes
        if (self.budget <= 0 or resident <= self.budget or self._scheduled is not None
                or broker.store is None):
            return
        if self._futile_at >= 0 and resident < self._futile_at + max(self.budget // 4, 65536):
            return
        self._scheduled = broker.clock.callLater(0, self.run)

    def run(self) -> int:
        """One paging pass (see the module docstring); returns how many bodies went."""
        self._scheduled = None
        broker = self.broker
        target = int(self.budget * LOW_SHARE)
        if broker.body_bytes <= target:
            self._futile_at = -1
            return 0
        queues = [q for vh in list(broker.vhosts.values()) for q in vh.queues.values()
                  if q.durable and not q.deleted and len(q.ready) > self.head_keep]
        queues.sort(key=lambda q: q.ready.bytes, reverse=True)
        count = 0
        for queue in queues:
            for entry in _pageable_newest_first(queue.ready, self.head_keep):
                message = entry.message
                if message.paged or not message.stored or message.refs != 1:
                    continue
                self._page_out(message)
                count += 1
                if broker.body_bytes <= target:
                    break
            if broker.body_bytes <= target:
                break
        self._futile_at = -1 if broker.body_bytes <= target else broker.body_bytes
        if count:
            self.paged_out += count
            log.debug("paged out %d message bodies; %d bytes of bodies resident", count,
                      broker.body_bytes)
            broker.after_settle(None)  # memory went down: the memory alarm may clear
        return count

    def _page_out(self, message: Message) -> None:
        size = len(message.body)
        message.body = PagedBody(size)
        message.paged = True
        self.broker.body_bytes -= size
        self.broker.memory_used -= size

    # ---------------------------------------------------------------- back in
    def page_in(self, message: Message, queue: "Queue | None" = None) -> PageIn:
        """Read a paged-out body back from the store (no-op for a resident one).

        With ``queue`` given, the next paged entries at the head of its ready list come back
        in the same store call (``READ_AHEAD``): a drained lazy queue then costs one store
        round trip per batch, not per message.
        """
        if not message.paged:
            return PageIn.LOADED
        wanted = [message]
        if queue is not None:
            for entry in islice(iter(queue.ready), READ_AHEAD):
                if entry.message.paged and entry.message is not message:
                    wanted.append(entry.message)
        try:
            records = self.broker.store.read_many([m.id for m in wanted])
        except StoreUnavailable as error:
            log.warning("message %d: body paged out and the store is unavailable (%s); "
                        "delivery retried later", message.id, error)
            return PageIn.LATER
        except StoreError as error:
            records = {}
            log.error("message %d: reading paged-out bodies failed (%s)", message.id, error)
        except Exception as error:  # a database driver's own errors: connection refused etc.
            log.warning("message %d: body paged out and reading it back failed (%s); "
                        "delivery retried later", message.id, error)
            return PageIn.LATER
        for m in wanted:
            record = records.get(m.id)
            if record is not None:
                self._load(m, record)
        if message.paged:
            log.error("message %d: body paged out but the store no longer has it; dropping it",
                      message.id)
            return PageIn.LOST
        return PageIn.LOADED

    def _load(self, message: Message, record: bytes) -> None:
        body = Message.from_record(record, message.codec, message.id).body
        message.body = body
        message.paged = False
        self.broker.body_bytes += len(body)
        self.broker.memory_used += len(body)
        self.paged_in += 1

    def stats(self) -> dict[str, float]:
        return {"paging_budget_bytes": float(self.budget),
                "paging_resident_body_bytes": float(self.broker.body_bytes),
                "paging_paged_out_total": float(self.paged_out),
                "paging_paged_in_total": float(self.paged_in)}


def _pageable_newest_first(ready: Any, head_keep: int) -> Iterator[QueueEntry]:
    """Ready entries newest first, leaving out the ``head_keep`` that are delivered first."""
    return ready.newest_first(keep_oldest=head_keep)
