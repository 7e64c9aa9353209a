"""PUT /api/nodes/{name}/disk-free-limit and /api/nodes/{name}/memory-high-watermark.

rabbitmqctl changes a running node's free-disk limit and memory watermark
(``set_disk_free_limit``, ``set_vm_memory_high_watermark``) over Erlang distribution;
RabbitMQ's management API has no endpoint for them. ``warren ctl`` speaks HTTP only, so these
two carry the same settings: ``{"limit": bytes}`` or ``{"mem_relative": x}`` (times the RAM)
for the disk, ``{"absolute": bytes}`` or ``{"relative": x}`` (of the RAM) for memory. The
alarms follow at once; nothing is stored (as with rabbitmqctl, the configured values come back
with a restart).
"""

from __future__ import annotations

from typing import Any

from ...broker.watermarks import disk_free_limit, memory_watermark
from ..api import Call, Route, bad_request, not_found


def _number(body: dict[str, Any], keys: tuple[str, str]) -> tuple[str, float]:
    given = [k for k in keys if k in body]
    if len(given) != 1:
        raise bad_request(f"give one of {', '.join(keys)}")
    value = body[given[0]]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise bad_request(f"{given[0]} must be a number of at least 0")
    return given[0], value


def _node(call: Call) -> None:
    if call.params["name"] != call.broker.node_name:
        raise not_found()


def put_disk_free_limit(call: Call) -> None:
    _node(call)
    key, value = _number(call.obj(), ("limit", "mem_relative"))
    limit = (disk_free_limit(0, value) if key == "mem_relative" and value > 0
             else int(value) if key == "limit" else 0)
    monitor = call.broker.disk_monitor
    if monitor is None:
        raise bad_request("this broker watches no data directory")
    monitor.set_limit(limit)
    call.status = 204


def put_memory_high_watermark(call: Call) -> None:
    _node(call)
    key, value = _number(call.obj(), ("absolute", "relative"))
    high = int(value) if key == "absolute" else memory_watermark(0, value)
    if high <= 0:
        raise bad_request("the watermark must be above 0 bytes")
    call.broker.set_memory_watermark(high)
    call.status = 204


ROUTES = [
    Route("PUT", "/api/nodes/{name}/disk-free-limit", put_disk_free_limit, "administrator",
          True),
    Route("PUT", "/api/nodes/{name}/memory-high-watermark", put_memory_high_watermark,
          "administrator", True),
]
