"""/api/overview, /api/nodes, connections, channels, consumers, health checks and the small
fixed endpoints (extensions, cluster-name, aliveness-test).

Connections, channels and consumers come from the front ends' own ``info()``,
``channel_infos()`` and ``consumer_infos()`` (optional: a front end without channels has
none); a management user sees only its own, monitoring and administrator see all.
"""

from __future__ import annotations

import os
import resource as _rusage
import shutil
import sys
from typing import Any

from ...broker.definitions import PRODUCT_VERSION, WARREN_VERSION
from ...model.message import Message, Properties
from ...broker.stats import with_rates
from ...broker.watermarks import DISK_FREE_LIMIT
from ...exchange.registry import EXCHANGE_TYPES
from ..api import Call, Route, as_str, forbidden, not_found
from .health import active_listeners

MANAGEMENT_VERSION = PRODUCT_VERSION


def listeners(call: Call) -> list[dict[str, Any]]:
    """Every listener this node runs (TLS and WebSocket ones too), RabbitMQ's names."""
    return [{"node": call.broker.node_name, "protocol": proto, "ip_address": call.config.bind,
             "port": port} for proto, port in active_listeners(call)]


def _connections(call: Call) -> list[Any]:
    return [c for c in list(call.broker.connections.values())
            if hasattr(c, "info") and call.owns(_safe_info(c))]


def _safe_info(conn: Any) -> dict[str, Any]:
    try:
        return conn.info()
    except Exception:       # a half-open connection may lack fields; show what is safe
        return {"name": getattr(conn, "name", repr(conn)), "user": "", "vhost": "",
                "state": "starting"}


def overview(call: Call) -> dict[str, Any]:
    b = call.broker
    vhs = call.visible_vhosts()
    queues = [q for vh in vhs for q in vh.queues.values()]
    ready = sum(q.message_count for q in queues)
    unacked = sum(q.unacked for q in queues)
    conns = _connections(call)
    channels = sum(len(getattr(c, "channel_infos", lambda: [])()) for c in conns)
    consumers = sum(q.consumer_count for q in queues)
    stats = call.site.stats
    depth_rates = stats.depth_rates(vh.name for vh in vhs) if stats is not None else {}
    return {
        "management_version": MANAGEMENT_VERSION, "rates_mode": "basic",
        "sample_retention_policies": {"global": [600, 3600, 28800, 86400],
                                      "basic": [600, 3600], "detailed": [600]},
        "exchange_types": [{"name": n, "description": "", "enabled": True}
                           for n in sorted(EXCHANGE_TYPES)],
        "product_version": WARREN_VERSION, "product_name": "warren",
        "rabbitmq_version": PRODUCT_VERSION,
        "cluster_name": call.site.cluster_name,
        "erlang_version": f"Python {sys.version.split()[0]}",
        "erlang_full_version": f"Python {sys.version}",
        "release_series_support_status": "supported",
        "disable_stats": False, "is_op_policy_updating_enabled": True,
        "enable_queue_totals": True,
        # monitoring and administrator see the broker's, other users their vhosts' (RabbitMQ)
        "message_stats": (stats.message_stats(None if call.sees_all else
                                              [vh.name for vh in vhs])
                          if stats is not None else {}),
        "churn_rates": {},
        "queue_totals": with_rates({"messages": ready + unacked, "messages_ready": ready,
                                    "messages_unacknowledged": unacked}, depth_rates),
        "object_totals": {"channels": channels, "connections": len(conns),
                          "consumers": consumers,
                          "exchanges": sum(len(vh.exchanges) for vh in vhs),
                          "queues": len(queues)},
        "statistics_db_event_queue": 0,
        "node": b.node_name,
        "listeners": listeners(call),
        "contexts": [{"node": b.node_name, "description": "RabbitMQ Management",
                      "path": "/", "port": str(call.config.http_port)}],
        "ha_role": getattr(b, "role", "standalone"),
    }


def node_info(call: Call) -> dict[str, Any]:
    b = call.broker
    usage = _rusage.getrusage(_rusage.RUSAGE_SELF)
    monitor = b.disk_monitor
    disk_free = monitor.free if monitor is not None else None
    if disk_free is None:
        try:
            disk_free = shutil.disk_usage(call.config.data_dir).free
        except OSError:
            disk_free = 0
    try:
        fd_used = len(os.listdir("/proc/self/fd"))
    except OSError:
        fd_used = 0
    return {
        "name": b.node_name, "type": "disc", "running": True, "being_drained": False,
        "os_pid": str(os.getpid()),
        "mem_used": usage.ru_maxrss * 1024, "mem_limit": b.memory_high,
        "mem_alarm": bool(b.blocked), "mem_calculation_strategy": "rss",
        "disk_free": disk_free,
        "disk_free_limit": monitor.limit if monitor is not None else DISK_FREE_LIMIT,
        "disk_free_alarm": bool(b.disk_alarm),
        "fd_used": fd_used, "fd_total": _rusage.getrlimit(_rusage.RLIMIT_NOFILE)[0],
        "sockets_used": len(b.connections), "proc_used": 1, "proc_total": 1,
        "uptime": int((b.clock.seconds() - b.started_at) * 1000),
        "run_queue": 0, "processors": os.cpu_count() or 1,
        "partitions": [], "applications": [], "contexts": [],
        "exchange_types": [{"name": n, "description": "", "enabled": True}
                           for n in sorted(EXCHANGE_TYPES)],
        "ha_role": getattr(b, "role", "standalone"),
    }


def list_nodes(call: Call) -> list[dict[str, Any]]:
    return [node_info(call)]


def get_node(call: Call) -> dict[str, Any]:
    if call.params["name"] != call.broker.node_name:
        raise not_found()
    return node_info(call)


def list_connections(call: Call) -> list[dict[str, Any]]:
    out = [_safe_info(c) for c in _connections(call)]
    if "vhost" in call.params:
        vh = call.vhost()
        out = [i for i in out if i.get("vhost") == vh.name]
    return out


def _connection(call: Call) -> Any:
    for c in _connections(call):
        if _safe_info(c).get("name") == call.params["name"]:
            return c
    raise not_found()


def get_connection(call: Call) -> dict[str, Any]:
    return _safe_info(_connection(call))


def close_connection(call: Call) -> None:
    """Administrators close any connection, other users only their own (as RabbitMQ since
    its fix of the management plugin's monitoring-tag rule)."""
    conn = _connection(call)
    if not call.is_admin and _safe_info(conn).get("user") != call.login.name:
        raise forbidden("User not authorised to access object")
    reason = call.request.getHeader("x-reason") or "Closed via management plugin"
    conn.force_close(reason)
    call.status = 204


def _channel_infos(call: Call, conn: Any) -> list[dict[str, Any]]:
    """A connection's channels; their counters (``message_stats``) with their rates."""
    out = list(getattr(conn, "channel_infos", lambda: [])())
    stats = call.site.stats
    for info in out:
        counts = info.get("message_stats")
        if counts is not None:
            rates = stats.channel_rates(info["name"]) if stats is not None else {}
            info["message_stats"] = with_rates(counts, rates)
    return out


def connection_channels(call: Call) -> list[dict[str, Any]]:
    return _channel_infos(call, _connection(call))


def list_channels(call: Call) -> list[dict[str, Any]]:
    out = [ch for c in _connections(call) for ch in _channel_infos(call, c)]
    if "vhost" in call.params:
        vh = call.vhost()
        out = [i for i in out if i.get("vhost") == vh.name]
    return out


def get_channel(call: Call) -> dict[str, Any]:
    for ch in list_channels(call):
        if ch.get("name") == call.params["name"]:
            return ch
    raise not_found()


def list_consumers(call: Call) -> list[dict[str, Any]]:
    out = [c for conn in _connections(call)
           for c in getattr(conn, "consumer_infos", lambda: [])()]
    if "vhost" in call.params:
        vh = call.vhost()
        out = [c for c in out if c.get("queue", {}).get("vhost") == vh.name]
    return out


def extensions(call: Call) -> list[Any]:
    return []


def get_cluster_name(call: Call) -> dict[str, Any]:
    return {"name": call.site.cluster_name}


def put_cluster_name(call: Call) -> None:
    call.site.cluster_name = as_str(call.obj().get("name"), "name")
    call.status = 204


def aliveness(call: Call) -> Any:
    """Declare ``aliveness-test`` in the vhost, publish to it and get the message back."""
    vh = call.vhost()
    call.check(vh.name, "configure", "queue", "aliveness-test")
    q = vh.declare_queue("aliveness-test", durable=False)
    msg = Message("", "aliveness-test", b"test_message", codec=call.broker.codec,
                  props=Properties())
    # the console publishes as the broker: the check above is the one RabbitMQ makes
    call.broker.publisher(vh, None).publish(vh.default_exchange, msg)
    return q.get_later(no_ack=True).addCallback(_aliveness_answer, call)


def _aliveness_answer(entry: Any, call: Call) -> dict[str, str]:
    if entry is None or bytes(entry.message.body) != b"test_message":
        call.status = 503
        return {"status": "failed", "reason": "aliveness test message not received"}
    return {"status": "ok"}


ROUTES = [
    Route("GET", "/api/overview", overview),
    Route("GET", "/api/nodes", list_nodes, "monitoring"),
    Route("GET", "/api/nodes/{name}", get_node, "monitoring"),
    Route("GET", "/api/connections", list_connections),
    Route("GET", "/api/vhosts/{vhost}/connections", list_connections),
    Route("GET", "/api/connections/{name}", get_connection),
    Route("DELETE", "/api/connections/{name}", close_connection, mutates=True),
    Route("GET", "/api/connections/{name}/channels", connection_channels),
    Route("GET", "/api/channels", list_channels),
    Route("GET", "/api/vhosts/{vhost}/channels", list_channels),
    Route("GET", "/api/channels/{name}", get_channel),
    Route("GET", "/api/consumers", list_consumers),
    Route("GET", "/api/consumers/{vhost}", list_consumers),
    Route("GET", "/api/extensions", extensions),
    Route("GET", "/api/cluster-name", get_cluster_name),
    Route("PUT", "/api/cluster-name", put_cluster_name, "administrator", True),
    Route("GET", "/api/aliveness-test/{vhost}", aliveness),
]
