"""Dead-lettering as RabbitMQ 4 does it: the death history, the keys a dead letter is routed
by, and cycle breaking.

The history is the broker's own (``Message.deaths``, RabbitMQ 4's ``deaths`` annotation),
one ``Death`` per (queue, reason), most recent first: a repeat of the same pair increments
its count, updates its last time and moves it to the front; its other fields stay those of
the first such death. An ``x-death`` header a 0-9-1 (or STOMP, MQTT) publisher sent is
read as the history the broker goes on from, as RabbitMQ 3.x does (``header_deaths``); an
AMQP 1.0 sender's ``x-opt-deaths`` is not trusted, as RabbitMQ 4 trusts none: the first
death starts a fresh history, which replaces that annotation. Cycle detection reads the
history (``mc:record_death`` and ``is_death_cycle``). Consumers see the history as their protocol
has it: ``x-death`` for 0-9-1, STOMP and MQTT (one table per death, its time the first, in
seconds: written here into the copy's headers), ``x-opt-deaths`` with both times in
milliseconds for AMQP 1.0 (``amqp1_message/mapping.py``).
``x-first-death-{reason,queue,exchange}`` are set by the message's first death;
``x-last-death-{reason,queue,exchange}`` follow the latest.

A dead letter is routed by the queue's dead-letter routing key if it has one, else by every
key the message was routed by: its routing key and its CC and BCC keys (``Message.cc``,
kept in its record; ``rabbit_dead_letter:publish``). A death records the routing key and the
CC keys, never the BCC ones. The copy loses its ``expiration`` so it does not expire again
on the way.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..model.message import Death, Message, QueueEntry

if TYPE_CHECKING:
    from .queue import Queue


def _routing_keys(message: Message) -> tuple[str, ...]:
    """The keys a death records: the routing key and the CC ones (0-9-1's header; an AMQP
    1.0 sender's x-cc list is that header too), never the BCC ones, which ``message.cc``
    holds too. A dead letter routed by its queue's dead-letter key has that key only. A
    message that has no ``cc`` (none, or recovered from a record older than the notes)
    takes its CC header's."""
    header = message.headers.get("CC")
    cc_header = [str(k.decode() if isinstance(k, bytes) else k)
                 for k in header] if isinstance(header, list) else []
    if message.cc is None:
        return (message.routing_key, *(cc_header if message.deaths is None else ()))
    return (message.routing_key, *(k for k in message.cc if k in cc_header))


def _x_death(death: Death) -> dict[str, Any]:
    """A death as the table of 0-9-1's ``x-death`` header (``mc_amqpl``'s order)."""
    table: dict[str, Any] = {}
    if death.ttl is not None:
        table["original-expiration"] = str(death.ttl)
    table.update({"count": death.count, "reason": death.reason, "queue": death.queue,
                  "time": datetime.fromtimestamp(death.first_time // 1000, tz=timezone.utc),
                  "exchange": death.exchange, "routing-keys": list(death.routing_keys)})
    return table


def header_deaths(header: Any) -> tuple[Death, ...] | None:
    """The history in an ``x-death`` header a 0-9-1, STOMP or MQTT publisher sent, as
    RabbitMQ 3.x reads it: a consumer that republishes a dead letter with the headers it got
    keeps its history, so the count of a repeated (queue, reason) goes on (retry loops count
    on it), and a cycle it closes is broken. RabbitMQ 4 stopped trusting the header; 3.10,
    3.12 and 3.13.3+ trust it, and 0-9-1 applications written against them rely on it. An
    AMQP 1.0 sender's ``x-opt-deaths`` is never read as history (RabbitMQ 4's rule, the only
    broker that has one for 1.0). Tables that do not name a queue and a reason are left out;
    None when there is no such table."""
    if not isinstance(header, list):
        return None
    deaths = []
    for table in header:
        if not isinstance(table, dict):
            continue
        queue, reason = _text(table.get("queue")), _text(table.get("reason"))
        if queue is None or reason is None:
            continue
        count = table.get("count")
        when = table.get("time")
        ms = int(when.timestamp() * 1000) if isinstance(when, datetime) else 0
        keys = table.get("routing-keys")
        ttl = _text(table.get("original-expiration"))
        deaths.append(Death(
            queue, reason, count if isinstance(count, int) and count > 0 else 1, ms, ms,
            _text(table.get("exchange")) or "",
            tuple(k for k in map(_text, keys) if k is not None)
            if isinstance(keys, list) else (),
            int(ttl) if ttl is not None and ttl.isdigit() else None))
    return tuple(deaths) or None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def dead_letter_copy(queue: "Queue", entry: QueueEntry, reason: str) -> Message:
    """The message to publish to the queue's DLX, with its death history updated."""
    msg = entry.message
    props = msg.properties.copy()
    now = int(time.time() * 1000)
    history = msg.deaths
    if history is None and msg.amqp1_sections is None:
        history = header_deaths(msg.headers.get("x-death"))
    deaths = list(history or ())
    for i, d in enumerate(deaths):
        if d.queue == queue.name and d.reason == reason:
            deaths.insert(0, replace(deaths.pop(i), count=d.count + 1, last_time=now))
            break
    else:
        ttl = props.expiration
        deaths.insert(0, Death(queue.name, reason, 1, now, now, msg.exchange,
                               _routing_keys(msg),
                               int(ttl) if ttl is not None and ttl.isdigit() else None))
    headers = dict(props.headers or {})
    headers.pop("BCC", None)
    headers["x-death"] = [_x_death(d) for d in deaths]
    if not history:
        # the message's first death: x-first-death-* stay those of the first one after
        headers["x-first-death-reason"] = reason
        headers["x-first-death-queue"] = queue.name
        headers["x-first-death-exchange"] = msg.exchange
    headers["x-last-death-reason"] = reason
    headers["x-last-death-queue"] = queue.name
    headers["x-last-death-exchange"] = msg.exchange
    props.headers = headers
    props.expiration = None
    if queue.dlx_routing_key is not None:
        rk, cc = queue.dlx_routing_key, None
    else:
        rk, cc = msg.routing_key, msg.cc
    copy = Message(queue.dlx, rk, msg.body, codec=msg.codec, props=props,
                   persistent=msg.persistent, priority=msg.priority, ttl=None)
    copy.amqp1_sections = msg.amqp1_sections
    copy.cc = cc
    copy.deaths = tuple(deaths)
    return copy


def is_cycle(message: Message, target: "Queue") -> bool:
    """True when delivering to ``target`` would close a dead-letter loop with no rejection.

    RabbitMQ drops such messages: a cycle of expiries or length drops would spin forever, while
    a cycle with a rejection in it is a client's decision and is allowed. The history is the
    one ``dead_letter_copy`` recorded (an AMQP 1.0 sender's annotation is not part of it).
    """
    for d in message.deaths or ():
        if d.reason == "rejected":
            return False
        if d.queue == target.name:
            return True
    return False
