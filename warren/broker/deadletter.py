"""Dead-lettering as RabbitMQ does it: the ``x-death`` history and cycle breaking.

``x-death`` is an array of tables, most recent first, one per (queue, reason) pair: ``count``,
``reason``, ``queue``, ``time``, ``exchange``, ``routing-keys`` and, when the message had a
per-message TTL, ``original-expiration``. A repeat of the same pair increments its count and
moves it to the front; its other fields stay those of the first such death.
``x-first-death-{reason,queue,exchange}`` are set once; ``x-last-death-{reason,queue,exchange}``
follow the latest. The dead-lettered copy loses its ``expiration`` so it does not expire again
on the way.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..model.message import Message, QueueEntry

if TYPE_CHECKING:
    from .queue import Queue


def _routing_keys(message: Message) -> list[str]:
    """The keys a death records: the routing key and the CC ones (0-9-1's header; an AMQP
    1.0 sender's x-cc list is that header too), never the BCC ones (RabbitMQ keeps those out
    of the history). ``message.cc`` is not read: it holds the BCC keys too, for routing."""
    keys = [message.routing_key]
    extra = message.headers.get("CC")
    if isinstance(extra, list):
        keys.extend(str(k.decode() if isinstance(k, bytes) else k) for k in extra)
    return keys


def dead_letter_copy(queue: "Queue", entry: QueueEntry, reason: str) -> Message:
    """The message to publish to the queue's DLX, with its x-death history updated."""
    msg = entry.message
    props = msg.properties.copy()
    headers = dict(props.headers or {})
    headers.pop("BCC", None)
    deaths: list[dict[str, Any]] = [dict(d) for d in headers.get("x-death") or []
                                    if isinstance(d, dict)]
    now = datetime.fromtimestamp(int(time.time()), tz=timezone.utc)
    found = None
    for i, d in enumerate(deaths):
        if _s(d.get("queue")) == queue.name and _s(d.get("reason")) == reason:
            found = deaths.pop(i)
            break
    if found is not None:
        # RabbitMQ increments the count of the existing entry and keeps its other fields
        # (time, exchange, routing-keys of the first such death)
        found["count"] = int(found.get("count", 0)) + 1
        death = found
    else:
        death = {"count": 1, "reason": reason, "queue": queue.name, "time": now,
                 "exchange": msg.exchange, "routing-keys": _routing_keys(msg)}
        if props.expiration is not None:
            death["original-expiration"] = props.expiration
    deaths.insert(0, death)
    headers["x-death"] = deaths
    headers.setdefault("x-first-death-reason", reason)
    headers.setdefault("x-first-death-queue", queue.name)
    headers.setdefault("x-first-death-exchange", msg.exchange)
    headers["x-last-death-reason"] = reason
    headers["x-last-death-queue"] = queue.name
    headers["x-last-death-exchange"] = msg.exchange
    props.headers = headers
    props.expiration = None
    rk = queue.dlx_routing_key if queue.dlx_routing_key is not None else msg.routing_key
    copy = Message(queue.dlx, rk, msg.body, codec=msg.codec, props=props,
                   persistent=msg.persistent, priority=msg.priority, ttl=None)
    copy.amqp1_sections = msg.amqp1_sections
    return copy


def is_cycle(message: Message, target: "Queue") -> bool:
    """True when delivering to ``target`` would close a dead-letter loop with no rejection.

    RabbitMQ drops such messages: a cycle of expiries or length drops would spin forever, while
    a cycle with a rejection in it is a client's decision and is allowed.
    """
    for d in message.headers.get("x-death") or []:
        if not isinstance(d, dict):
            continue
        if _s(d.get("reason")) == "rejected":
            return False
        if _s(d.get("queue")) == target.name:
            return True
    return False


def _s(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v
