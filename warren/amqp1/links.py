"""AMQP 1.0 sessions and their links: a sending client's link (we receive and publish) and a
receiving client's link (a core consumer of one queue, ``broker/consumers.py``), whose
deliveries the connection writes as transfers. A receiver with a JMS selector is a selective
consumer: the queue offers it only the messages it matches, the rest stay for others.

A receiver with the no-local filter knows its connection's messages by the note the
connection writes into each message it publishes while it has such a receiver (``local``:
``mapping.publisher_note``), as ActiveMQ knows them by their producer's connection: the
message carries it, so the receiver keeps nothing per message. Those are not delivered to
it: from a queue of its own (a topic's, a durable subscription's) they are dropped as
ActiveMQ's topic subscription never gets them; from a shared queue they stay for other
consumers (a selective consumer, as for a selector)."""

from __future__ import annotations

from typing import Any, Protocol

from ..broker.jms import entry_lookup
from ..broker.queue import Queue
from ..broker.selector import Selector
from ..amqp1_message.codec import Composite
from .errors import error
from ..amqp1_message.mapping import encode_delivery

class Session:
    def __init__(self, channel: int, remote_channel: int, next_incoming_id: int,
                 incoming_window: int, remote_incoming_window: int = 0xFFFFFFFF) -> None:
        self.channel = channel
        self.remote_channel = remote_channel
        self.next_outgoing_id = 0            # our delivery ids
        # our transfer frames (spec 2.5.6): the id of the next one, and how many more the
        # client takes before its next flow widens its incoming window (its begin's, then
        # each flow's next-incoming-id + incoming-window - our next transfer id)
        self.next_transfer_id = 0
        self.remote_incoming_window = remote_incoming_window
        # the client's transfer frames we take (spec 2.5.6): the id of the next one and how
        # many more it may send before we widen the window again
        self.next_incoming_id = next_incoming_id
        self.incoming_window = incoming_window
        self.links: dict[int, Any] = {}      # the client's handle -> link
        self.detaching: set[int] = set()     # handles we detached: their echo needs no reply
        # the frames of a multi-frame delivery the client's incoming window stopped: the
        # receiving link and the encoded frames still to send, sent first when the window
        # opens (RabbitMQ 4's session holds a delivery's rest as it does); None: none
        self.unsent: tuple[Any, list[bytes]] | None = None


class SendingLink:
    """The client sends into warren (we are the receiver). On the anonymous terminus
    (``anonymous``) each message names its own exchange and key by its ``to``."""

    def __init__(self, session: Session, handle: int, exchange: str, key: str | None,
                 own: Queue | None = None, anonymous: bool = False) -> None:
        self.session = session
        self.handle = handle
        self.exchange = exchange
        self.key = key
        self.own = own                       # a queue made for this link (dynamic target)
        self.anonymous = anonymous
        self.credit = 0
        self.delivery_count = 0
        self.partial: list[bytes] = []       # the frames of a multi-frame transfer
        self.partial_id: int | None = None
        self.partial_settled = False
        self.partial_state: Any = None       # its delivery state (transactional-state)
        self.partial_tag: Any = None         # its delivery tag (named by a relay's error)
        self.partial_size = 0


class CoordinatorLink(SendingLink):
    """The client's transaction controller (a target of type ``coordinator``): its transfers
    declare and discharge transactions (``transactions.py``) instead of publishing."""

    def __init__(self, session: Session, handle: int) -> None:
        super().__init__(session, handle, "", "")


class Transmitter(Protocol):
    """What a receiving link needs of its connection (``connection.Amqp1Connection``): to
    write its transfers and to end it. Named here so that this module does not import the
    connection that imports it."""

    closed: bool
    write_paused: bool                   # its socket is full: deliver nothing now

    def send_transfer(self, session: Session, handle: int, delivery_id: int, payload: bytes,
                      settled: bool) -> None: ...

    def detach(self, session: Session, handle: int, err: Composite | None) -> None: ...


class ReceivingLink:
    """The client receives from a queue (we are the sender): a core consumer."""

    exclusive = False
    priority = 0
    accepts: Any = None                      # set to match a selector (see __init__)

    def __init__(self, conn: Transmitter, session: Session, handle: int, queue: Any,
                 settled: bool, selector: Selector | None = None,
                 own: Queue | None = None, local: bytes | None = None,
                 subscription: bool = False) -> None:
        self.conn = conn
        self.session = session
        self.handle = handle
        self.queue = queue
        self.no_ack = settled
        self.tag = f"amqp1-{id(self):x}"
        self.arguments: dict[str, Any] = {}
        self.credit = 0
        self.delivery_count = 0
        self.unacked: dict[int, Any] = {}    # delivery id -> entry
        self.own = own                       # a queue made for this link: deleted with it
        self.dropped = False                 # the link ended (its unacked were requeued)
        self.subscription = subscription     # it reads a durable subscription's queue
        self.selector = selector
        # no-local: the note its connection's messages carry (publisher_note), or None
        self.local = local
        # no-local on a queue of its own: its connection's messages are dropped, not left
        self._drop_local = local is not None and (own is not None or subscription)
        if selector is not None or (local is not None and not self._drop_local):
            # a selective consumer (broker/consumers.py): offered only what it matches
            self.accepts = self._matches

    def _is_local(self, message: Any) -> bool:
        """Published on this receiver's connection (no-local)."""
        extra = message.amqp1_sections
        return extra is not None and self.local is not None and self.local in extra

    def _matches(self, queue: Any, entry: Any) -> bool:
        if not self._drop_local and self._is_local(entry.message):
            return False
        return self.selector is None or self.selector.matches(entry_lookup(entry))

    def has_credit(self) -> bool:
        conn = self.conn
        session = self.session
        return self.credit > 0 and session.remote_incoming_window > 0 \
            and session.unsent is None and not conn.closed and not conn.write_paused

    def deliver(self, queue: Any, entry: Any) -> None:
        if self._drop_local and self._is_local(entry.message):
            if not self.no_ack:
                queue.ack([entry])       # not for this receiver: gone from its own queue
            return
        self.credit -= 1
        self.delivery_count = (self.delivery_count + 1) & 0xFFFFFFFF
        session = self.session
        delivery_id = session.next_outgoing_id
        session.next_outgoing_id = (delivery_id + 1) & 0xFFFFFFFF
        if not self.no_ack:
            self.unacked[delivery_id] = entry
        payload = encode_delivery(entry.message, entry.redelivered, entry.delivery_count)
        self.conn.send_transfer(session, self.handle, delivery_id, payload, self.no_ack)

    def cancelled(self, queue: Any) -> None:
        self.conn.detach(self.session, self.handle,
                         error("amqp:resource-deleted", f"queue '{queue.name}' deleted"))


def settle(queue: Queue, entries: list[Any], state: Any) -> None:
    """Apply a receiver's outcome to entries it held: accepted acks; rejected, and modified
    with undeliverable-here, reject (dead-lettering); released and modified requeue. Only a
    modified with delivery-failed counts in the header's delivery-count (as a link that
    ends with the entries unsettled does): RabbitMQ 4.3's classic and quorum queues count
    failed deliveries, not releases (its ``requeue`` with ``DelFailed``)."""
    outcome = getattr(state, "kind", "accepted")
    if outcome == "accepted":
        queue.ack(entries)
    elif outcome == "rejected" or (outcome == "modified" and state.undeliverable_here):
        queue.reject(entries)
    else:
        queue.requeue(entries, failed=outcome == "modified" and bool(state.delivery_failed))
    queue.dispatch()
