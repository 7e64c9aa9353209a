"""The nodes a link's source or target names, made real for one connection.

A receiver reads one queue: one that exists (``/queues/Q``, ``/amq/queue/Q``), one declared
when missing (v1's ``/queue/Q``, bare and ActiveMQ names), or one of its own: a dynamic source
(proton's and Qpid JMS's request/reply: the answer's source names it ``/queues/amq.gen-...``),
or a v1 receiver from an exchange or topic (bound with the address's key; a durable
subscription's queue when the source asks for a durable node, ``subscriptions.py``). A sender
publishes to an exchange and key, or to a queue through the default exchange; a dynamic target
gets a queue of its own too, and a target with no address at all is the anonymous terminus
(ANONYMOUS-RELAY): each message names its node by ``to`` (``addresses.to_route``). A queue
made for a link is exclusive to the connection and deleted when that link ends (the spec's
delete-on-close lifetime, as RabbitMQ 4 and ActiveMQ do it), or with the connection.

Permissions are RabbitMQ's: configure to declare a queue, read to consume it, write on the
queue and read on the exchange (and the topic permission) to bind it; a publish is checked by
the core's publisher.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..broker.queue import Queue
from .addresses import Address, BadAddress, parse_address
from ..amqp1_message.codec import Composite
from . import subscriptions
from .errors import LinkError
from .owner import NodeOwner


#: the prefix of the names of queues the broker makes (as RabbitMQ's server-named queues)
GENERATED_PREFIX = "amq.gen-"


@dataclass
class Node:
    """What a terminus resolved to."""

    queue: Queue | None = None        # the queue read (receiver) or made (dynamic target)
    exchange: str = ""                # a sender's exchange ...
    key: str | None = None            # ... and key (None: the message's subject)
    own: Queue | None = None          # a queue made for this link: deleted with it
    address: str | None = None        # the address to answer with, when the broker chose it
    subscription: bool = False        # the queue is a durable subscription (subscriptions.py)
    source: Composite | None = None   # the source to answer with (a resumed subscription)
    anonymous: bool = False           # the anonymous terminus: routed by each message's to


@dataclass
class SourceNode(Node):
    """What a receiving link's source resolved to: always a queue to read."""

    queue: Queue = field(kw_only=True)


def address_of(terminus: Any) -> Address:
    try:
        return parse_address(getattr(terminus, "address", None),
                             getattr(terminus, "capabilities", None) or ())
    except BadAddress as e:
        raise LinkError("amqp:invalid-field", str(e)) from None


def _durable(terminus: Any) -> bool:
    """A terminus asks for a durable node with durability configuration (1) or
    unsettled-state (2); none (0, the default) is a transient one."""
    return bool(getattr(terminus, "durable", 0))


def source_node(conn: NodeOwner, source: Any, link_name: str = "",
                selector: str | None = None) -> SourceNode:
    """The queue a receiving link reads."""
    if source is None or (isinstance(source, Composite) and source.kind == "source"
                          and source.address is None and not source.dynamic):
        # ActiveMQ (for no source; an empty one too): the durable subscription of that name
        queue, answer = subscriptions.resumed(conn, link_name)
        _check(conn, "read", "queue", queue.name)
        return SourceNode(queue=queue, subscription=True, source=answer)
    _check_terminus(source, "source", "a receiving link")
    if source.dynamic:
        queue = own_queue(conn)
        return SourceNode(queue=queue, own=queue, address=queue_address(queue.name))
    address = address_of(source)
    if address.queue is not None:
        queue = _queue(conn, address, source)
        queue.check_access(conn)          # another connection's exclusive queue is locked
        _check(conn, "read", "queue", queue.name)
        return SourceNode(queue=queue)
    if not address.own_queue:
        raise LinkError("amqp:invalid-field",
                        f"address '{source.address}' is not a queue")
    vhost = conn.vhost
    exchange = vhost.exchange(address.exchange)
    key = address.key or ""
    _check(conn, "read", "exchange", exchange.name)
    conn.broker.check_topic(conn.user, vhost.name, exchange, "read", key)
    if _durable(source):
        queue, made = subscriptions.subscription(conn, link_name, source, selector)
        if made:
            _check(conn, "write", "queue", queue.name)
            vhost.bind(exchange.name, queue, key)
        _check(conn, "read", "queue", queue.name)
        return SourceNode(queue=queue, subscription=True)
    queue = own_queue(conn)
    _check(conn, "write", "queue", queue.name)
    vhost.bind(exchange.name, queue, key)
    return SourceNode(queue=queue, own=queue)


def target_node(conn: NodeOwner, target: Any) -> Node:
    """Where a sending link's messages go."""
    _check_terminus(target, "target", "a sending link")
    if target.dynamic:
        queue = own_queue(conn)
        return Node(queue=queue, key=queue.name, own=queue,
                    address=queue_address(queue.name))
    if target.address is None:
        # as RabbitMQ 4: nothing is checked until a message names its node
        return Node(anonymous=True)
    address = address_of(target)
    if address.queue is not None:
        return Node(queue=_queue(conn, address, target), key=address.queue)
    conn.publisher.exchange(address.exchange)
    return Node(exchange=address.exchange, key=address.key)


def _check_terminus(terminus: Any, kind: str, link: str) -> None:
    if not isinstance(terminus, Composite) or terminus.kind != kind:
        raise LinkError("amqp:invalid-field", f"{link} needs a {kind}")


def _queue(conn: NodeOwner, address: Address, terminus: Any) -> Queue:
    """The queue an address names: it must exist, or it is declared as the address says.
    Anyone may publish to an exclusive queue (as over 0-9-1); only its owner reads it."""
    vhost = conn.vhost
    name = address.queue
    assert name is not None
    queue = vhost.queues.get(name)
    if queue is None:
        if not address.declare:
            raise LinkError("amqp:not-found", f"no queue '{name}' in vhost '{vhost.name}'")
        _check(conn, "configure", "queue", name)
        durable = address.durable if address.durable is not None else _durable(terminus)
        return vhost.declare_queue(name, durable=durable, connection=conn)
    return queue


def own_queue(conn: NodeOwner) -> Queue:
    """A queue for one link: server-named, exclusive to the connection, not durable."""
    vhost = conn.vhost
    name = GENERATED_PREFIX + secrets.token_urlsafe(16)
    while name in vhost.queues:
        name = GENERATED_PREFIX + secrets.token_urlsafe(16)
    _check(conn, "configure", "queue", name)
    return vhost.declare_queue(name, durable=False, exclusive_owner=conn, auto_delete=True,
                               connection=conn, check_reserved=False)


def delete_own_queue(queue: Queue) -> None:
    """The link that made *queue* ended: so does the queue (unless it is gone already)."""
    vhost = queue.vhost
    if not queue.deleted and vhost.queues.get(queue.name) is queue:
        vhost.delete_queue(queue.name, reason="link closed")


def queue_address(name: str) -> str:
    """A queue's v2 address, as RabbitMQ 4 names a dynamic node."""
    return "/queues/" + quote(name, safe="")


def _check(conn: NodeOwner, kind: str, resource_kind: str, name: str) -> None:
    conn.broker.check(conn.user, conn.vhost.name, kind, resource_kind, name)
