"""AMQP 1.0 local transactions (spec part 4), as ActiveMQ serves them to Qpid JMS's
transacted sessions (RabbitMQ 4 has none).

A client attaches a link whose target is a ``coordinator`` and sends it ``declare`` (answered
``declared`` with a new transaction id) and ``discharge`` messages. In between, transfers and
dispositions carrying a ``transactional-state`` with that id are held: a message sent is
answered with the provisional outcome (accepted) at once but published only when the
transaction is discharged without ``fail``; a receiver's outcome for a delivery is applied then
too. A discharge with ``fail`` (rollback) drops the messages and gives the deliveries back to
their links, still unsettled, as if no outcome had been sent (a link that ended meanwhile has
them requeued). A transaction not discharged when its coordinator link or the connection ends
is rolled back. Unknown ids are ``amqp:transaction:unknown-id``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LinkError
from .links import CoordinatorLink, ReceivingLink, settle

#: the coordinator's capability: local transactions only
LOCAL_TRANSACTIONS = "amqp:local-transactions"


@dataclass
class Transaction:
    txn_id: bytes
    coordinator: CoordinatorLink
    publishes: list[tuple[Any, Any]] = field(default_factory=list)   # (exchange, Message)
    # (link, {delivery id: entry}, the outcome to apply)
    settles: list[tuple[ReceivingLink, dict[int, Any], Any]] = field(default_factory=list)


class Transactions:
    """One connection's open transactions, by id."""

    def __init__(self) -> None:
        self.open: dict[bytes, Transaction] = {}
        self._next = 0

    def declare(self, coordinator: CoordinatorLink) -> bytes:
        self._next += 1
        txn_id = self._next.to_bytes(4, "big")
        self.open[txn_id] = Transaction(txn_id, coordinator)
        return txn_id

    def get(self, txn_id: Any) -> Transaction:
        txn = self.open.get(bytes(txn_id)) if isinstance(txn_id, bytes) else None
        if txn is None:
            raise LinkError("amqp:transaction:unknown-id", f"unknown transaction id {txn_id!r}")
        return txn

    def discharge(self, txn_id: Any, fail: bool, publisher: Any) -> bool:
        """End a transaction: commit (publish, through ``publisher.publish``, and settle) or
        roll back. True when a message it published was written to the store (the answer
        waits for the sync)."""
        txn = self.get(txn_id)
        del self.open[txn.txn_id]
        if fail:
            rollback(txn)
            return False
        return commit(txn, publisher)

    def end_of(self, coordinator: CoordinatorLink | None) -> None:
        """Roll back what *coordinator* (None: any, the connection ended) left open."""
        for txn_id, txn in list(self.open.items()):
            if coordinator is None or txn.coordinator is coordinator:
                del self.open[txn_id]
                rollback(txn)


def commit(txn: Transaction, publisher: Any) -> bool:
    stored = False
    for exchange, message in txn.publishes:
        stored |= publisher.publish(exchange, message).stored
    for link, held, state in txn.settles:
        settle(link.queue, list(held.values()), state)
    return stored


def rollback(txn: Transaction) -> None:
    for link, held, _state in txn.settles:
        if link.dropped:
            link.queue.requeue(list(held.values()))
            link.queue.dispatch()
        else:
            link.unacked.update(held)
