"""/api/queues: list, declare, delete, purge, get (browse/consume), move; queue bindings.

Field names are RabbitMQ's ``rabbit_mgmt_format`` queue object. A queue's ``memory`` is an
estimate (message bytes held plus a fixed per-message overhead), since Python cannot measure
one object's share of the heap cheaply.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.defer import Deferred

from ...model.errors import NotFound
from ...broker.jsonvalue import jsonable
from ...broker.compact import ENTRY_BYTES
from ...model.message import OVERHEAD, Properties, QueueEntry
from ...broker.move import move_messages
from ...broker.queue import Queue
from ...broker.stats import queue_depths, with_deliver_get, with_rates
from ...broker.vhost import VirtualHost
from ...exchange.interface import Binding
from ...stream.queue import StreamQueue
from ..api import Call, Route, as_bool, as_int, as_str, as_table, bad_request, not_found
from .bindings import binding_info, in_listing_order

#: the counters RabbitMQ shows in a queue's message_stats
QUEUE_COUNTERS = ("publish", "deliver", "deliver_no_ack", "get", "get_no_ack", "get_empty",
                  "ack", "redeliver", "deliver_get")
ACKMODES = ("ack_requeue_true", "ack_requeue_false", "reject_requeue_true",
            "reject_requeue_false")


def queue_info(call: Call, vh: VirtualHost, q: Queue) -> dict[str, Any]:
    ready = q.message_count
    unacked = q.unacked
    ready_bytes = q.ready.bytes + q.held.bytes
    paged, paged_bytes = q.ready.paged, q.ready.paged_bytes   # rows (broker/compact.py)
    rates = call.site.stats.queue_rates(vh.name, q.name) if call.site.stats else {}
    message_stats = with_rates(with_deliver_get(q.stats), rates, QUEUE_COUNTERS)
    depths = with_rates(queue_depths(q), rates)
    owner = q.exclusive_owner
    consumers = list(q.consumers)
    exclusive_tag = next((c.tag for c in consumers if c.exclusive), None)
    info = {
        "name": q.name, "vhost": vh.name, "durable": q.durable, "auto_delete": q.auto_delete,
        "exclusive": owner is not None, "arguments": jsonable(q.arguments),
        "node": call.broker.node_name, "state": "running",
        "type": "stream" if q.own_log else "classic",
        "policy": getattr(q, "policy_name", None),
        "effective_policy_definition": jsonable(q.policy or {}),
        "owner_pid_details": ({"name": getattr(owner, "name", ""),
                               "peer_host": getattr(owner, "peer", ("", 0))[0],
                               "peer_port": getattr(owner, "peer", ("", 0))[1]}
                              if owner is not None else None),
        **depths,
        "message_bytes": ready_bytes + q.unacked_bytes, "message_bytes_ready": ready_bytes,
        "message_bytes_unacknowledged": q.unacked_bytes,
        "message_bytes_persistent": 0,
        "message_bytes_ram": ready_bytes + q.unacked_bytes - paged_bytes,
        "message_bytes_paged_out": paged_bytes,
        "messages_ram": ready + unacked - paged, "messages_ready_ram": ready - paged,
        "messages_unacknowledged_ram": unacked, "messages_paged_out": paged,
        "memory": ((ready + unacked - paged) * OVERHEAD + ready_bytes + q.unacked_bytes
                   - paged_bytes + paged * ENTRY_BYTES + 2048),
        "consumers": len(consumers), "consumer_capacity": 1.0 if consumers else 0.0,
        "consumer_utilisation": 1.0 if consumers else None,
        "exclusive_consumer_tag": exclusive_tag,
        "single_active_consumer_tag": (q.consumers.active.tag if q.consumers.single_active
                                       and q.consumers.active is not None else None),
        "head_message_timestamp": None, "idle_since": None,
        "message_stats": message_stats,
        # poison messages: the effective limit (as RabbitMQ shows a quorum queue's), and
        # warren's redelivery back-off with the returned messages it holds back right now
        "delivery_limit": q.delivery_limit,
        "redelivery_back_off": back_off_info(q.back_off),
        "messages_redelivery_held": len(q.held),
    }
    if isinstance(q, StreamQueue):
        # a stream: RabbitMQ's committed_offset, and where its log starts, how big it is
        # and where each consumer reads (the console's stream panel)
        stream = q.stream_info()
        info.update(committed_offset=stream["last_offset"], stream=stream,
                    message_bytes=stream["size_bytes"], message_bytes_ready=stream["size_bytes"])
    return info


def back_off_info(back_off: Any) -> dict[str, Any] | None:
    if back_off is None:
        return None
    return {"initial_delay": back_off.initial_ms, "multiplier": back_off.multiplier,
            "max_delay": back_off.max_ms}


def list_queues(call: Call) -> list[dict[str, Any]]:
    vhs = [call.vhost()] if "vhost" in call.params else call.visible_vhosts()
    return [queue_info(call, vh, q) for vh in vhs
            for q in sorted(vh.queues.values(), key=lambda q: q.name)]


def _queue(call: Call) -> tuple[VirtualHost, Queue]:
    vh = call.vhost()
    q = vh.queues.get(call.params["name"])
    if q is None:
        raise not_found()
    return vh, q


def get_queue(call: Call) -> dict[str, Any]:
    vh, q = _queue(call)
    return queue_info(call, vh, q)


def put_queue(call: Call) -> None:
    vh = call.vhost()
    name = call.params["name"]
    body = call.obj()
    durable = as_bool(body.get("durable"), "durable", True)
    auto_delete = as_bool(body.get("auto_delete"), "auto_delete", False)
    arguments = as_table(body.get("arguments"), "arguments")
    if as_bool(body.get("exclusive"), "exclusive", False):
        raise bad_request("exclusive queues cannot be declared over HTTP")
    if not name:
        raise bad_request("queue name must not be empty")
    call.check(vh.name, "configure", "queue", name)
    existed = name in vh.queues
    vh.declare_queue(name, durable=durable, auto_delete=auto_delete, arguments=arguments)
    call.status = 204 if existed else 201
    return None


def delete_queue(call: Call) -> None:
    vh, q = _queue(call)
    call.check(vh.name, "configure", "queue", q.name)
    vh.delete_queue(q.name, if_unused=as_bool(call.query.get("if-unused"), "if-unused", False),
                    if_empty=as_bool(call.query.get("if-empty"), "if-empty", False))
    call.status = 204


def purge_queue(call: Call) -> None:
    vh, q = _queue(call)
    call.check(vh.name, "read", "queue", q.name)
    q.purge()
    call.status = 204


def get_messages(call: Call) -> Deferred:
    """POST .../get: take up to ``count`` messages, then ack, requeue or reject them all."""
    vh, q = _queue(call)
    body = call.obj()
    count = as_int(body.get("count"), "count", 1, minimum=1)
    ackmode = as_str(body.get("ackmode"), "ackmode", "ack_requeue_true")
    if ackmode not in ACKMODES:
        raise bad_request(f"ackmode must be one of {', '.join(ACKMODES)}")
    encoding = as_str(body.get("encoding"), "encoding", "auto")
    if encoding not in ("auto", "base64"):
        raise bad_request("encoding must be auto or base64")
    truncate = body.get("truncate")
    truncate = as_int(truncate, "truncate", minimum=0) if truncate not in (None, "") else None
    call.check(vh.name, "read", "queue", q.name)
    q.check_access(None)           # another connection's exclusive queue: 405 locked
    entries: list[QueueEntry] = []
    remaining: list[int] = []
    done: Deferred = Deferred()

    def took(entry: QueueEntry | None) -> bool:
        """True: take another."""
        if entry is not None:
            entries.append(entry)
            remaining.append(q.message_count)   # basic.get-ok's message_count
            if len(entries) < count:
                return True
        done.callback(_got_messages(q, entries, remaining, ackmode, encoding, truncate))
        return False

    def go_on(entry: QueueEntry | None) -> None:
        if took(entry):
            more()

    def more() -> None:
        # one get at a time, in a loop while each is answered at once
        while True:
            got: list[QueueEntry | None] = []
            waiting = q.get_later(no_ack=False)
            waiting.addCallback(got.append)
            if not got:   # a paged-out body is being read off the reactor thread
                waiting.addCallback(lambda _: go_on(got[0]))
                return
            if not took(got[0]):
                return

    more()
    return done


def _got_messages(q: Any, entries: list[QueueEntry], remaining: list[int], ackmode: str,
                  encoding: str, truncate: int | None) -> list[dict[str, Any]]:
    """The answer to a get of the API, and the ackmode applied to what it took."""
    out = []
    for e, left in zip(entries, remaining):
        m = e.message
        payload = bytes(m.body)
        size = len(payload)
        if truncate is not None:
            payload = payload[:truncate]
        text, enc = _payload(payload, encoding)
        out.append({
            "payload_bytes": size, "redelivered": e.redelivered, "exchange": m.exchange,
            "routing_key": m.routing_key,
            "message_count": left,
            "properties": properties_json(m.properties), "payload": text,
            "payload_encoding": enc,
        })
    if entries:
        # ack_requeue_true and reject_requeue_true both put them back, as RabbitMQ does
        requeue = ackmode.endswith("requeue_true")
        q.settle(entries, ack=not requeue and ackmode.startswith("ack"), requeue=requeue)
        q.dispatch()
    return out


def _payload(payload: bytes, encoding: str) -> tuple[str, str]:
    if encoding == "auto":
        try:
            return payload.decode("utf-8"), "string"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(payload).decode("ascii"), "base64"


PROPERTY_FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
                   "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                   "type", "user_id", "app_id", "cluster_id")


def properties_json(p: Properties) -> dict[str, Any]:
    """Set properties only, as RabbitMQ shows them (headers as a JSON object)."""
    out: dict[str, Any] = {}
    for f in PROPERTY_FIELDS:
        v = getattr(p, f)
        if v is not None:
            out[f] = jsonable(v)
    return out


def move(call: Call) -> Any:
    vh, q = _queue(call)
    body = call.obj()
    dest_name = as_str(body.get("destination"), "destination")
    count = body.get("count")
    count = as_int(count, "count", minimum=0) if count is not None else None
    dest = vh.queues.get(dest_name)
    if dest is None:
        raise NotFound(f"no queue '{dest_name}' in vhost '{vh.name}'")
    call.check(vh.name, "read", "queue", q.name)
    call.check(vh.name, "write", "queue", dest.name)
    q.check_access(None)
    dest.check_access(None)
    moved = move_messages(q, dest, count)
    moved.addCallback(lambda n: call.broker.sync().addCallback(lambda _: {"moved": n}))
    return moved


def queue_bindings(call: Call) -> list[dict[str, Any]]:
    vh, q = _queue(call)
    out = [binding_info(vh, Binding("", q, q.name))]
    out.extend(in_listing_order(binding_info(vh, b) for b in q.bindings))
    return out


ROUTES = [
    Route("GET", "/api/queues", list_queues),
    Route("GET", "/api/queues/{vhost}", list_queues),
    Route("GET", "/api/queues/{vhost}/{name}", get_queue),
    Route("PUT", "/api/queues/{vhost}/{name}", put_queue, mutates=True),
    Route("DELETE", "/api/queues/{vhost}/{name}", delete_queue, mutates=True),
    Route("DELETE", "/api/queues/{vhost}/{name}/contents", purge_queue, mutates=True),
    Route("POST", "/api/queues/{vhost}/{name}/get", get_messages, mutates=True),
    Route("POST", "/api/queues/{vhost}/{name}/actions/move", move, mutates=True),
    Route("GET", "/api/queues/{vhost}/{name}/bindings", queue_bindings),
]
