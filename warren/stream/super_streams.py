"""Super streams (RabbitMQ 3.11's partitioned streams): one name, several partition streams.

A super stream is nothing new in the core, as in RabbitMQ (``rabbit_stream_manager``): a
durable ``direct`` exchange with the argument ``x-super-stream: true``, one stream queue per
partition, and a binding from the exchange to each partition whose argument
``x-stream-partition-order`` numbers it. So an AMQP publish to the exchange lands in the
partition its routing key is bound with, and the Stream protocol's ``partitions`` and ``route``
read the same bindings. This module holds what every way of making one shares (the Stream
protocol's ``create_super_stream``, ``warren ctl add_super_stream`` through the HTTP API,
which builds the same objects): RabbitMQ's checks with its texts, in its order, and the roll
back of what was made when a partition cannot be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..model.errors import BrokerError, NotFound, PreconditionFailed
from ..model.message import Message, Properties

if TYPE_CHECKING:
    from ..broker.vhost import VirtualHost

#: the exchange argument that marks a super stream, and the binding argument ordering it
SUPER_STREAM_ARGUMENT = "x-super-stream"
PARTITION_ORDER = "x-stream-partition-order"
#: RabbitMQ's ``max_super_stream_partitions`` default
MAX_PARTITIONS = 1000


class AlreadyExists(PreconditionFailed):
    """The exchange or a partition's queue is there already (the Stream protocol's
    STREAM_ALREADY_EXISTS, where other refusals are PRECONDITION_FAILED)."""


def correct_name(name: str) -> str | None:
    """``rabbit_stream_utils:enforce_correct_name``: CR and LF dropped; empty and ``amq.``
    names refused (None)."""
    name = name.replace("\n", "").replace("\r", "")
    if not name or name.startswith("amq."):
        return None
    return name


def check_manage(broker: Any, user: Any, vhost: str, name: str,
                 partitions: list[str]) -> None:
    """``check_super_stream_management_permitted``: configure the exchange and the streams
    (they are made), read the exchange and write the streams (the bindings); AccessRefused."""
    broker.check(user, vhost, "configure", "exchange", name)
    for partition in partitions:
        broker.check(user, vhost, "configure", "queue", partition)
    broker.check(user, vhost, "read", "exchange", name)
    for partition in partitions:
        broker.check(user, vhost, "write", "queue", partition)


def create(vhost: "VirtualHost", name: str, partitions: list[str], binding_keys: list[str],
           arguments: dict[str, Any]) -> None:
    """Make the exchange, the partition streams (``arguments``: their queue arguments) and the
    bindings; on a failure what was made goes again and the error is raised."""
    _validate(vhost, name, partitions, binding_keys)
    vhost.declare_exchange(name, "direct", durable=True,
                           arguments={SUPER_STREAM_ARGUMENT: True})
    made: list[str] = []
    try:
        for partition in partitions:
            vhost.declare_queue(partition, durable=True,
                                arguments={**arguments, "x-queue-type": "stream"})
            made.append(partition)
        for order, (partition, key) in enumerate(zip(partitions, binding_keys)):
            vhost.bind(name, vhost.queue(partition), key, {PARTITION_ORDER: order})
    except BrokerError:
        for partition in made:
            vhost.delete_queue(partition)
        vhost.delete_exchange(name)
        raise


def _validate(vhost: "VirtualHost", name: str, partitions: list[str],
              binding_keys: list[str]) -> None:
    """``validate_super_stream_creation``'s checks, in its order."""
    if len(partitions) != len(binding_keys):
        raise PreconditionFailed(
            "There must be the same number of partitions and binding keys")
    if len(set(partitions)) != len(partitions):
        raise PreconditionFailed(f"Duplicate partition names found {partitions}")
    bad = [p for p in partitions if correct_name(p) is None]
    if bad:
        raise PreconditionFailed(f"{bad} is not a correct partition names")
    if len(partitions) > MAX_PARTITIONS:
        raise PreconditionFailed(f"The partition number must not exceed {MAX_PARTITIONS}")
    limit = vhost.broker.limits.vhost_limits(vhost.name).get("max-queues")
    if isinstance(limit, int) and 0 <= limit < len(vhost.queues) + len(partitions):
        raise PreconditionFailed(
            f"Cannot declare super stream {name!r} with {len(partitions)} partition(s) "
            f"because queue limit {limit} in vhost '{vhost.name}' is reached")
    if correct_name(name) is None:
        raise PreconditionFailed(f"{name} is not a correct name for a super stream")
    if name in vhost.exchanges:
        raise AlreadyExists(f"there is already an exchange named {name}")
    for partition in partitions:
        if partition in vhost.queues:
            raise AlreadyExists(f"there is already a queue named {partition}")


def partitions(vhost: "VirtualHost", name: str) -> list[str]:
    """The partition streams, by ``x-stream-partition-order`` (unordered ones last); NotFound
    when there is no such exchange."""
    ex = vhost.exchanges.get(name)
    if ex is None or not name:
        raise NotFound(f"no exchange '{name}' in vhost '{vhost.name}'")
    bound = [b for b in ex.bindings if _is_stream(b.destination)]
    bound.sort(key=lambda b: (PARTITION_ORDER not in b.arguments,
                              _order(b.arguments.get(PARTITION_ORDER))))
    out: list[str] = []
    for b in bound:
        if b.destination.name not in out:
            out.append(b.destination.name)
    return out


def partition_index(vhost: "VirtualHost", name: str, stream: str) -> int:
    """Where ``stream`` is among the super stream's partitions, for single active consumer:
    its binding's ``x-stream-partition-order``, else the number after its last ``-``; -1 when
    it is no partition (``rabbit_stream_manager:partition_index``)."""
    ex = vhost.exchanges.get(name)
    if ex is None or not name:
        return -1
    bound = sorted((b for b in ex.bindings if _is_stream(b.destination)
                    and b.destination.name == stream),
                   key=lambda b: (PARTITION_ORDER not in b.arguments,
                                  _order(b.arguments.get(PARTITION_ORDER))))
    if not bound:
        return -1
    if PARTITION_ORDER in bound[0].arguments:
        return _order(bound[0].arguments[PARTITION_ORDER])
    head, dash, tail = stream.rpartition("-")
    return int(tail) if dash and tail.isascii() and tail.isdigit() else -1


def route(vhost: "VirtualHost", name: str, routing_key: str) -> list[str]:
    """The partition streams a message with ``routing_key`` goes to (empty: no route);
    NotFound when there is no such exchange."""
    ex = vhost.exchanges.get(name)
    if ex is None or not name:
        raise NotFound(f"no exchange '{name}' in vhost '{vhost.name}'")
    probe = Message(name, routing_key, b"", codec=vhost.broker.codec, props=Properties(),
                    persistent=False, priority=0, ttl=None)
    return [q.name for q in vhost.route(ex, probe) if _is_stream(q)]


def delete(vhost: "VirtualHost", name: str, streams: list[str]) -> None:
    """The exchange and the partitions ``streams`` (what ``partitions`` said, checked by the
    caller) go; what is gone already is passed over, as RabbitMQ logs and goes on."""
    if name in vhost.exchanges:
        vhost.delete_exchange(name)
    for stream in streams:
        if stream in vhost.queues:
            vhost.delete_queue(stream)


def _is_stream(destination: Any) -> bool:
    return destination.kind == "queue" and getattr(destination, "own_log", False)


def _order(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
