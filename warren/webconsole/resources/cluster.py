"""RabbitMQ 3.10 endpoints for features a single warren node has in a trivial form.

Tools written against RabbitMQ (rabbitmqadmin, the Kubernetes operator, monitoring scripts,
Terraform providers) call these and stop at a 404. Each answers what RabbitMQ answers for the
same state, and nothing warren cannot honour is accepted:

- ``/api/auth``: the console's login settings; warren has no OAuth 2 (UAA), so RabbitMQ's
  answer for that case. No login needed, as RabbitMQ.
- ``/api/feature-flags``: RabbitMQ's flags gate upgrades of a mixed-version cluster; warren has
  none, so the list is empty (and "every flag enabled" holds for tools that check that).
- ``/api/operator-policies`` (and its per-vhost forms): read-only, empty; warren has no
  operator policies, and refuses to set them (405) rather than store something it would not
  enforce. (Topic permissions and limits are real: ``topic_permissions.py``, ``limits.py``.)
- ``/api/nodes/{name}/memory``: RabbitMQ's breakdown keys; warren's accounting fills the ones
  it knows (message bodies as ``binary``, queue bookkeeping as ``queue_procs``, the rest of
  the process as ``other_proc``), the Erlang-only ones are 0; ``total`` is the RSS.
- ``/api/connections/username/{username}``: a user's connections, listed or closed (the user
  itself or an administrator; monitoring may list), as RabbitMQ's connection tracking.
- ``POST /api/vhosts/{vhost}/start/{node}`` and ``POST /api/rebalance/queues``: a vhost of a
  running warren is always running and one node has nothing to rebalance, so both are 204
  as on a healthy single RabbitMQ node; the errors are RabbitMQ's (unknown vhost or node).
"""

from __future__ import annotations

import os
from typing import Any

from ..api import ApiError, Call, Route, forbidden, not_found
from .overview import _safe_info as safe_info

#: rabbit_mgmt_wm_node_memory's keys, in its order
MEMORY_KEYS = ("connection_readers", "connection_writers", "connection_channels",
               "connection_other", "queue_procs", "queue_slave_procs", "quorum_queue_procs",
               "quorum_queue_dlx_procs", "stream_queue_procs",
               "stream_queue_replica_reader_procs", "stream_queue_coordinator_procs",
               "plugins", "other_proc", "metrics", "mgmt_db", "mnesia", "quorum_ets",
               "other_ets", "binary", "msg_index", "code", "atom", "other_system",
               "allocated_unused", "reserved_unallocated")


def auth(call: Call) -> dict[str, Any]:
    """The console's login settings: no OAuth 2 (RabbitMQ 3.10's answer when UAA is off)."""
    return {"enable_uaa": False, "uaa_client_id": "", "uaa_location": ""}


def empty_list(call: Call) -> list[Any]:
    """Nothing of this kind exists on a warren node."""
    return []


def vhost_empty_list(call: Call) -> list[Any]:
    """Nothing of this kind exists in the vhost."""
    call.vhost()
    return []


def no_object(call: Call) -> None:
    """No such object can exist."""
    call.vhost()
    raise not_found()


def node_memory(call: Call) -> dict[str, Any]:
    """RabbitMQ's memory breakdown of the node, filled from warren's accounting."""
    b = call.broker
    if call.params["name"] != b.node_name:
        raise not_found()
    rss = _rss()
    body = int(getattr(b, "body_bytes", 0))
    tracked = int(getattr(b, "memory_used", 0))
    memory: dict[str, Any] = dict.fromkeys(MEMORY_KEYS, 0)
    memory["binary"] = body
    memory["queue_procs"] = max(tracked - body, 0)
    memory["other_proc"] = max(rss - tracked, 0)
    memory["strategy"] = "rss"
    memory["total"] = {"erlang": rss, "rss": rss, "allocated": rss}
    return {"memory": memory}


def node_memory_relative(call: Call) -> dict[str, Any]:
    """The breakdown in percent of the total (RabbitMQ's ``total: 100`` first)."""
    memory = node_memory(call)["memory"]
    total = memory["total"]["rss"] or 1
    out: dict[str, Any] = {"total": 100}
    out.update((k, round(memory[k] * 100 / total)) for k in MEMORY_KEYS)
    return {"memory": out}


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def start_vhost(call: Call) -> None:
    """(Re)start a vhost on a node: a running warren's vhosts always run."""
    node, name = call.params["node"], call.params["vhost"]
    if node != call.broker.node_name:
        raise ApiError(400, "bad_request", f"Request to node {node} failed with nodedown")
    if name not in call.broker.vhosts:
        raise ApiError(400, "bad_request",
                       f'Request to node {node} failed with {{no_such_vhost,<<"{name}">>}}')
    call.status = 204


def _user_connections(call: Call, *, closing: bool) -> list[Any]:
    """The user's connections; the user itself or an administrator (monitoring may list)."""
    username = call.params["username"]
    allowed = call.is_admin or username == call.login.name or (
        not closing and call.sees_all)
    if not allowed:
        raise forbidden("User not authorised to access object")
    return [c for c in list(call.broker.connections.values())
            if hasattr(c, "info") and safe_info(c).get("user") == username]


def user_connections(call: Call) -> list[dict[str, Any]]:
    """The connections a user has open."""
    return [safe_info(c) for c in _user_connections(call, closing=False)]


def close_user_connections(call: Call) -> None:
    """Close every connection of a user (320 CONNECTION_FORCED, the X-Reason header's text)."""
    reason = call.request.getHeader("x-reason") or "Closed via management plugin"
    for conn in _user_connections(call, closing=True):
        conn.force_close(reason)
    call.status = 204


def rebalance_queues(call: Call) -> None:
    """Rebalance queue leaders across nodes: one node, nothing to move."""
    call.status = 204


ROUTES = [
    Route("GET", "/api/auth", auth, None),
    Route("GET", "/api/feature-flags", empty_list),
    Route("GET", "/api/operator-policies", empty_list, "policymaker"),
    Route("GET", "/api/operator-policies/{vhost}", vhost_empty_list, "policymaker"),
    Route("GET", "/api/operator-policies/{vhost}/{name}", no_object, "policymaker"),
    Route("GET", "/api/nodes/{name}/memory", node_memory, "monitoring"),
    Route("GET", "/api/nodes/{name}/memory/relative", node_memory_relative, "monitoring"),
    Route("POST", "/api/vhosts/{vhost}/start/{node}", start_vhost, "administrator", True),
    Route("POST", "/api/rebalance/queues", rebalance_queues, "administrator", True),
    Route("GET", "/api/connections/username/{username}", user_connections),
    Route("DELETE", "/api/connections/username/{username}", close_user_connections,
          mutates=True),
]
