"""In-memory message stores for the unit tests that run a Broker on a fake clock.

Just enough of :class:`~warren.store.interface.MessageStore` to hold records by id, with
switches a test needs: an unreachable store (``down``) and syncs that wait until the test
fires them (:class:`HeldSyncStore`), so what is written only after a sync can be seen.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

from warren.store.interface import MessageStore, RecoveredState, StoreError, StoreUnavailable

__all__ = ["HeldSyncStore", "MemoryStore"]


class MemoryStore(MessageStore):
    """Just enough of a store: records by id, reads counted, a switch to make it unreachable."""

    def __init__(self) -> None:
        self.records: dict[int, bytes] = {}
        self.holders: dict[int, set[str]] = {}   # msg_id -> keys of the queues holding it
        self.state = RecoveredState()   # what recover() gives
        self.reads = 0
        self.down = False

    def open(self) -> None: ...
    def recover(self, body_size=None) -> RecoveredState: return self.state
    def put_definition(self, kind, key, value) -> None: ...

    def publish(self, msg_id, record, queue_keys) -> None:
        self.records[msg_id] = record
        self.holders[msg_id] = set(queue_keys)

    def ack(self, queue_key, msg_ids) -> None:
        for msg_id in msg_ids:
            holders = self.holders.get(msg_id)
            if holders is None:
                continue
            holders.discard(queue_key)
            if not holders:
                del self.holders[msg_id]
                self.records.pop(msg_id, None)

    def purge_queue(self, queue_key) -> None:
        held = [msg_id for msg_id, holders in self.holders.items() if queue_key in holders]
        self.ack(queue_key, held)

    def sync(self): return succeed(None)
    def close(self) -> None: ...
    def abandon(self) -> None: ...

    def read(self, msg_id: int) -> bytes:
        if self.down:
            raise StoreUnavailable("down")
        self.reads += 1
        record = self.records.get(msg_id)
        if record is None:
            raise StoreError(f"message {msg_id} is not in the store")
        return record


class HeldSyncStore(MemoryStore):
    """A store whose syncs wait until the test fires them (``release``)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred] = []

    def sync(self) -> Deferred:
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def release(self) -> None:
        pending, self.pending = self.pending, []
        for d in pending:
            d.callback(None)
